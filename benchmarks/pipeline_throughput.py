"""Decoded examples per second of mmrec's tf.data pipelines (batch 64 by default).

    python benchmarks/pipeline_throughput.py --data tf_records/shapes

Creates the shapes benchmark at --data if it is missing. Each pipeline is run once
to warm up, then timed over --epochs full passes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import print_table, write_json  # noqa: E402

import mmrec  # noqa: E402


def _time(make_dataset, epochs: int) -> tuple[float, int]:
    for _ in make_dataset():  # warm-up: traces the functions, fills the OS cache
        pass
    start, examples = time.perf_counter(), 0
    for _ in range(epochs):
        for batch in make_dataset():
            examples += int(next(iter(batch.values())).shape[0])
    return time.perf_counter() - start, examples


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/pipeline_throughput.json")
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.data, "dataset.json")):
        mmrec.data.write_shapes(args.data)

    start = time.perf_counter()
    data = mmrec.data.load(args.data)
    data.catalogue()
    catalogue_seconds = time.perf_counter() - start

    b = args.batch_size
    pipelines = {
        "items (PNG+WAV+text decode)": lambda: data.items(b, shuffle=True),
        "interactions train": lambda: data.interactions("train", b),
        "generation pairs train": lambda: data.generation_pairs("train", b),
    }
    rows = []
    for name, make in pipelines.items():
        seconds, examples = _time(make, args.epochs)
        rows.append(
            {
                "pipeline": name,
                "batch": b,
                "examples": examples,
                "seconds": f"{seconds:.2f}",
                "examples/s": f"{examples / seconds:,.0f}",
            }
        )
    print(
        f"dataset {data.path}: {data.info.num_items} items; catalogue load+decode "
        f"{catalogue_seconds:.2f} s (checksums included)\n"
    )
    print_table(rows, ["pipeline", "batch", "examples", "seconds", "examples/s"])
    write_json(args.out, {"catalogue_seconds": catalogue_seconds, "rows": rows})


if __name__ == "__main__":
    main()
