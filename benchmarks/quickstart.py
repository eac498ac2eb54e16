"""Wall time and peak memory of `mmrec quickstart`, end to end, as a user runs it.

    python benchmarks/quickstart.py

Runs ``mmrec quickstart`` in a subprocess into a scratch folder — the shapes
benchmark is synthesised there too (unless ``--data`` points at an existing
one), so the time covers README's first command after ``pip install``. The
resident memory of the whole process tree (the exports' validation runs in
child processes) is sampled every 0.2 s. Prints one benchmark line, the time
per step and the quickstart's summary; writes ``benchmarks/results/quickstart.json``.
The target (DESIGN.md): at most 10 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import print_table, write_json  # noqa: E402

BUDGET_SECONDS = 600


def tree_rss(pid) -> int:
    """Resident bytes of a process and its descendants (0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run(command, env):
    """(exit status, wall seconds, peak tree RSS bytes, output) of ``command``."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_rss(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = []
    for line in process.stdout:  # show progress as it happens
        print(line, end="", flush=True)
        lines.append(line)
    status = process.wait()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return status, seconds, peak[0], "".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=None, help="an existing dataset (default: synthesise a fresh one)"
    )
    parser.add_argument("--out", default="benchmarks/results/quickstart.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)

    scratch = tempfile.mkdtemp(prefix="mmrec-quickstart-")
    data = args.data or os.path.join(scratch, "tf_records", "shapes")
    runs, exports = os.path.join(scratch, "runs"), os.path.join(scratch, "savedmodels")
    command = [sys.executable, "-m", "mmrec.cli", "quickstart", "--data", data]
    command += ["--out", runs, "--export-dir", exports]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    try:
        status, seconds, peak, output = run(command, env)
        if status != 0:
            raise SystemExit(f"mmrec quickstart failed with status {status}")
        with open(os.path.join(runs, "summary.json")) as f:
            summary = json.load(f)
        text_export = summary["exports"].get("text")
        exported_text = exported_text_check(text_export, data) if text_export else None
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    print()
    print(
        f"benchmark quickstart: {seconds / 60:.1f} min wall ({seconds:.0f} s; target <= "
        f"{BUDGET_SECONDS // 60} min), peak memory {peak / 2**30:.2f} GiB (process tree), "
        f"{os.cpu_count()} CPU cores, data {'given' if args.data else 'synthesised'}"
    )
    rows = [{"step": k, "seconds": v} for k, v in summary["step_seconds"].items()]
    print_table(rows, ["step", "seconds"])
    start = output.find("Recommendation (full-catalogue ranking")
    if start >= 0:
        print()
        print(output[start : output.find("Where everything is:")].rstrip())
    write_json(
        args.out,
        {
            "benchmark": "quickstart",
            "command": "mmrec quickstart" + ("" if args.data else " (fresh data)"),
            "wall_seconds": round(seconds, 1),
            "peak_rss_bytes": peak,
            "within_budget": seconds <= BUDGET_SECONDS,
            "step_seconds": summary["step_seconds"],
            "ranking": summary["ranking"],
            "judge": summary["judge"],
            "gan": summary["gan"],
            "vae": summary["vae"],
            "text": summary.get("text"),
            "exported_text": exported_text,
        },
    )
    if exported_text:
        count, accuracy = exported_text["texts"], exported_text["accuracy"]
        print(
            f"\nexported text model, {count} descriptions for test users: the text judge "
            f"reads the sampled attributes {accuracy}"
        )


def exported_text_check(path, data_path, users=200) -> dict:
    """The exported text model (its ``generate_text`` signature, loaded as TF Serving would):
    one description for each of ``users`` test users; the share in which an independent
    `TextJudge` reads the attributes the signature sampled (``label_<attribute>``)."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the signature's ops)

    import mmrec
    from mmrec.evaluation.text import train_text_judge

    data = mmrec.data.load(data_path)
    batch = next(iter(data.interactions("test", batch_size=users, shuffle=False)))
    histories = batch["history"].numpy()
    signature = tf.saved_model.load(path).signatures["generate_text"]
    out = signature(
        history=tf.constant(histories, tf.int32),
        seed=tf.range(len(histories), dtype=tf.int32),
    )
    texts = [t.decode("utf-8") for t in out["text"].numpy()]
    read = train_text_judge(data).predict_attributes(texts)
    accuracy = {
        name: float(np.mean(read[name] == out[f"label_{name}"].numpy()))
        for name in read
        if f"label_{name}" in out
    }
    return {"export": path, "texts": len(texts), "accuracy": accuracy}


if __name__ == "__main__":
    main()
