"""What the commands load: a trained model (a run folder or a ``.keras`` file) and its dataset."""

from __future__ import annotations

import os

from mmrec.errors import UsageError, usage_errors


def load_model(path: str, classes):
    """`mmrec.training.load_run_model`, its errors (nothing there, a wrong class) as usage errors.

    ``classes``: the class, or tuple of classes, the model must be an instance of.
    """
    if os.path.isfile(path) and not path.endswith(".keras"):
        raise UsageError(f"Expected a run folder or a .keras file. Received: '{path}'")
    from mmrec.training import load_run_model

    with usage_errors():
        return load_run_model(path, classes)


def run_dataset(path: str) -> str | None:
    """The dataset folder a run was trained on (its ``config.json`` says), or None."""
    from mmrec.training.runs import read_json

    config = read_json(os.path.join(path, "config.json")) if os.path.isdir(path) else None
    return (config or {}).get("data")
