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
        item_export = summary["exports"].get("item")
        exported_item = (
            exported_item_check(item_export, data, summary["runs"]["item"]) if item_export else None
        )
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
            "text": summary.get("text"),
            "audio": summary.get("audio"),
            "item": summary.get("item"),
            "exported_text": exported_text,
            "exported_item": exported_item,
        },
    )
    if exported_item:
        own = exported_item["hit_rate_held_out_items"]
        print(
            f"\nexported item generator, {exported_item['items']} items for test users: colour "
            f"consistency {exported_item.get('consistency_colour')}, hit-rate "
            f"{exported_item['hit_rate_image']:.3f} vs {own} for their own held-out items"
        )
    if exported_text:
        count, accuracy = exported_text["texts"], exported_text["accuracy"]
        print(
            f"\nexported text model, {count} descriptions for test users: the text judge "
            f"reads the sampled attributes {accuracy}"
        )


def exported_item_check(path, data_path, item_folder, users=200) -> dict:
    """The exported item generator (``generate_item``, loaded as TF Serving would): one item
    for each of ``users`` test users, its PNG, text and WAV decoded and read by the item
    folder's judges: colour consistency across the three, agreement with the sampled
    attributes, and the image hit-rate next to the users' own held-out items'."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (the signature's ops)

    import mmrec
    from mmrec.evaluation.items import consistency_report, held_out_users, judge_items
    from mmrec.evaluation.personalisation import preference_hits
    from mmrec.training.items import load_item_judges, readable_attributes

    data = mmrec.data.load(data_path)
    user_ids, histories, _ = held_out_users(data, users)
    signature = tf.saved_model.load(path).signatures["generate_item"]
    out = signature(
        history=tf.constant(histories, tf.int32), seed=tf.range(len(histories), dtype=tf.int32)
    )
    items = {
        "image": np.stack([tf.io.decode_png(p).numpy() for p in out["image_png_bytes"]]),
        "text": [t.decode("utf-8") for t in out["text"].numpy()],
        "audio": np.stack(
            [tf.audio.decode_wav(w).audio.numpy()[:, 0] for w in out["audio_wav_bytes"]]
        ),
    }
    sampled = {n: out[f"label_{n}"].numpy() for n in data.info.attributes}
    judges = load_item_judges(item_folder)
    verdicts = judge_items(items, judges, readable_attributes(data, judges))
    strong = list(data.info.strong_preferences)
    report = consistency_report(verdicts, sampled, strong)
    hits = preference_hits(verdicts["image"], user_ids, data.users(), strong)
    with open(os.path.join(item_folder, "metrics.json")) as f:
        own = json.load(f).get("hit_rate_held_out_items")
    return {
        "export": path,
        "items": len(user_ids),
        **{k: v for k, v in report.items() if k.startswith(("consistency", "accuracy", "all"))},
        "hit_rate_image": float(np.mean(hits)),
        "hit_rate_held_out_items": own,
    }


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
