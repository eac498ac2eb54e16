"""Helpers shared by the benchmark scripts: a table printer and a JSON writer."""

from __future__ import annotations

import json
import os
import platform


def machine() -> dict:
    """Where a benchmark ran: CPUs, platform and the Keras backend with its accelerators."""
    import keras

    info = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
    }
    if info["backend"] == "jax":
        import jax

        info.update(
            jax=jax.__version__, gpus=len([d for d in jax.devices() if d.platform == "gpu"])
        )
    else:
        import tensorflow as tf

        info.update(tensorflow=tf.__version__, gpus=len(tf.config.list_physical_devices("GPU")))
    return info


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"machine": machine(), **payload}, f, indent=2)
    print(f"\nwrote {path}")
