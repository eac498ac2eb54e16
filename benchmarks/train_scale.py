"""Training cost against catalogue size: seconds per step at 2,000, 20,000 and 200,000 items.

    python benchmarks/train_scale.py --out benchmarks/results/train_scale.json

The same `Recommender` (image + text towers, the recommender run's ``base``
encoders) and the same batch at every catalogue size. A training step runs the
item tower on the batch's targets, ``--history-items`` K of its history items
(``history_content=K``) and ``--negatives`` sampled items, whose content
``data.interactions(..., content=True)`` would gather in tf.data; here
it is generated on the fly (random 32×32 images, random descriptions), so that
the catalogue is never held in memory and the numbers show the model. The item
table ([N, D], what the user tower reads histories from and what retrieval
ranks) is refreshed at every epoch's start: its cost, which does grow with N,
is reported apart (``refresh_seconds``, once per epoch). The refresh reads the
catalogue in batches of ``--catalogue-batch`` items (1,024, `refresh_item_embeddings`'
default) at every size, so that its working memory is the same at every size.

Each size runs in a fresh process (peak resident memory is per process).
Writes ``{"rows": [{"items": N, "seconds_per_step": s, "peak_rss_gib": m,
"refresh_seconds": r}, ...]}``; the issue's target: the step at 200,000 items
within 1.2× the step at 2,000.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import print_table, write_json  # noqa: E402

WORDS = "red green blue yellow star heart circle square big small dotted striped plain".split()
TARGET_RATIO = 1.2


def one_size(
    num_items, batch_size, history, steps, negatives, history_items, catalogue_batch, seed=0
) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from mmrec.data.pipeline import history_items as pick_history_items
    from mmrec.layers import MultimodalItemEncoder, TextTokenizer
    from mmrec.models.recommender import Recommender
    from mmrec.training.kinds.recommender import BASE

    keras.utils.set_random_seed(seed)
    tokenizer = TextTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *WORDS], sequence_length=24)
    config = {m: dict(c) for m, c in BASE["encoder_config"].items() if m in ("image", "text")}
    config["text"]["vocabulary_size"] = tokenizer.vocabulary_size()
    encoder = MultimodalItemEncoder(
        modalities=("image", "text"), embedding_dim=BASE["embedding_dim"], encoder_config=config
    )
    spec = {
        "image": {"shape": [32, 32, 3], "dtype": "uint8"},
        "text": {"shape": [], "dtype": "string"},
    }
    words = tf.constant(WORDS)

    def content(ids):
        count = tf.shape(ids)[0]
        images = tf.random.uniform([count, 32, 32, 3], maxval=256, dtype=tf.int32)
        picks = tf.random.uniform([count, 8], maxval=len(WORDS), dtype=tf.int32)
        texts = tf.strings.reduce_join(tf.gather(words, picks), axis=1, separator=" ")
        return {"item_id": ids, "image": tf.cast(images, tf.uint8), "text": texts}

    def batch(step):
        target = tf.random.uniform([batch_size], maxval=num_items, dtype=tf.int32)
        histories = tf.random.uniform([batch_size, history], maxval=num_items, dtype=tf.int32)
        out = {
            "history": histories,
            "target": target,
            **{k: v for k, v in content(target).items() if k != "item_id"},
        }
        if history_items:
            seed = [0, tf.cast(step, tf.int32)]
            ids, out["history_index"] = pick_history_items(histories, history_items, seed)
            out["history_items"] = content(ids)
        if negatives:
            out["negatives"] = content(
                tf.random.uniform([negatives], maxval=num_items, dtype=tf.int32)
            )
        return out

    train = tf.data.Dataset.range(steps).map(batch).prefetch(2)
    # Batches of the same size at every N (the last one smaller), so that the refresh's
    # working memory -- one batch through the tower -- is the same at every size.
    catalogue = tf.data.Dataset.range(0, num_items, catalogue_batch).map(
        lambda start: content(
            tf.range(
                tf.cast(start, tf.int32),
                tf.minimum(tf.cast(start, tf.int32) + catalogue_batch, num_items),
            )
        )
    )
    rec = Recommender(
        num_items=num_items,
        item_encoder=encoder,
        content_spec=spec,
        tokenizer=tokenizer,
        max_history=history,
        embedding_dim=BASE["embedding_dim"],
    )
    rec.use_catalogue(catalogue)
    rec.compile(keras.optimizers.Adam(BASE["learning_rate"]))

    class StepTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_begin(self, step, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, step, logs=None):
            self.times.append(time.perf_counter() - self.start)

    start = time.perf_counter()
    rec.refresh_item_embeddings()
    refresh = time.perf_counter() - start
    timer = StepTimes()
    rec.fit(train, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    times = np.array(timer.times[3:])  # the first steps trace and warm up
    return {
        "items": num_items,
        "seconds_per_step": round(float(np.median(times)), 4),
        "p90_seconds_per_step": round(float(np.percentile(times, 90)), 4),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "refresh_seconds": round(refresh, 1),
        "table_mib": round(num_items * BASE["embedding_dim"] * 4 / 2**20, 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,200000")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--negatives", type=int, default=0)
    parser.add_argument(
        "--history-items", type=int, default=512, help="history items through the tower per step"
    )
    parser.add_argument(
        "--catalogue-batch", type=int, default=1024, help="items per batch of a table refresh"
    )
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="benchmarks/results/train_scale.json")
    args = parser.parse_args(argv)
    if args.one is not None:
        row = one_size(
            args.one,
            args.batch_size,
            args.history,
            args.steps,
            args.negatives,
            args.history_items,
            args.catalogue_batch,
        )
        print("ROW " + json.dumps(row))
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        command = [sys.executable, __file__, "--one", str(size)]
        flags = ("batch_size", "history", "steps", "negatives", "history_items", "catalogue_batch")
        for flag in flags:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(output.split("ROW ", 1)[1]))
        print(f"{size:,} items: {rows[-1]['seconds_per_step']} s/step", flush=True)
    ratio = rows[-1]["seconds_per_step"] / rows[0]["seconds_per_step"]
    print(
        f"\nTraining step, batch {args.batch_size}, history {args.history}, image + text towers, "
        f"{args.history_items} history items through the tower, {args.negatives} sampled "
        f"negatives (median of {args.steps - 3} steps)\n"
    )
    print_table(rows, list(rows[0]))
    print(
        f"\nstep at {rows[-1]['items']:,} items / step at {rows[0]['items']:,}: {ratio:.2f} "
        f"(target <= {TARGET_RATIO})"
    )
    write_json(args.out, {"rows": rows, "ratio": round(ratio, 3), "args": vars(args)})


if __name__ == "__main__":
    main()
