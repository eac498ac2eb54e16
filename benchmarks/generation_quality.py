"""Quality of conditional generation (shapes or Fashion-MNIST), measured by an independent judge.

    nice python benchmarks/generation_quality.py --data tf_records/shapes \
        --model gan --condition attributes --minutes 20
    nice python benchmarks/generation_quality.py --data tf_records/fashion \
        --model vae --condition attributes --minutes 15 --out-dir benchmarks/results/fashion

One command trains one generator (``--model gan|vae``, ``--condition
attributes|text|user``) for a fixed CPU budget (``--minutes``, training only)
with ``model.fit`` on ``data.generation_pairs("train")``, then scores it with
`mmrec.evaluation.generation`:

* the judge (`AttributeJudge`, trained on real items with ``item_id % 5 != 0``;
  cached in ``--out-dir`` and reused) reports its held-out accuracy;
* attributes / text: conditional accuracy on the held-out items' conditions,
  FCD/KCD against the real held-out images, diversity;
* user: personalisation hit-rate of generated images next to the users' own
  held-out (test) items and random items, at temperature 1 and 0.5. The user
  encoder is the frozen user tower of a trained `Recommender` given with
  ``--recommender PATH.keras`` (e.g. the multimodal model saved by
  ``benchmarks/recommender_quality.py``); without it, a quick stand-in: an
  ID-only two-tower's user tower (item-id embeddings, mean over the history,
  full softmax over the catalogue on next-item prediction, trained here in
  about a minute), frozen;
* vae: validation reconstruction, KL and negative ELBO (nats per image).

Writes ``<out-dir>/generation_<model>_<condition>.json``, a final sample grid
``<out-dir>/generation_<model>_<condition>.png`` and per-epoch grids in
``<out-dir>/generation_<model>_<condition>/`` (and TensorBoard images in its
``logs/``). Creates the dataset at ``--data`` if missing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import print_table, write_json  # noqa: E402
from keras import ops  # noqa: E402

import mmrec  # noqa: E402
from mmrec.evaluation.generation import (  # noqa: E402
    evaluate_generation,
    judge_split,
    train_judge,
)
from mmrec.layers import UserEncoder  # noqa: E402
from mmrec.models import ConditionalGAN, ConditionalVAE  # noqa: E402
from mmrec.models.conditioning import get_conditioning  # noqa: E402
from mmrec.training import SampleGrid, TimeLimit, write_png  # noqa: E402
from mmrec.training.samples import grid_conditions as default_grid_conditions  # noqa: E402

TARGETS = {"shape": 0.90, "colour": 0.90}  # the conditional-accuracy targets (cGAN)
JUDGE_TARGET = 0.98
HIT_RATE_FRACTION = 0.7  # user cGAN: hit-rate >= 0.7 × the users' own held-out items'


# --- the judge ------------------------------------------------------------------------------


def dataset_fingerprint(data) -> str:
    shards = json.dumps(
        {k: [s.sha256 for s in v] for k, v in sorted(data.info.shards.items()) if k == "items"}
    )
    return hashlib.sha256(shards.encode()).hexdigest()[:16]


def load_or_train_judge(data, out_dir, epochs, seed):
    """The judge for this dataset's items, from ``out_dir`` if one was trained before."""
    path = os.path.join(out_dir, f"judge_{dataset_fingerprint(data)}_e{epochs}_s{seed}.keras")
    meta_path = path.replace(".keras", ".json")
    if os.path.exists(path) and os.path.exists(meta_path):
        judge = keras.saving.load_model(path)
        with open(meta_path) as f:
            meta = json.load(f)
        print(f"judge: loaded {path} (trained in {meta['seconds']} s)")
        return judge, meta
    start = time.perf_counter()
    judge, accuracy = train_judge(data, epochs=epochs, seed=seed)
    meta = {
        "held_out_accuracy": accuracy,
        "epochs": epochs,
        "seconds": round(time.perf_counter() - start, 1),
        "path": path,
    }
    os.makedirs(out_dir, exist_ok=True)
    judge.save(path)
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=2)
    print(f"judge: trained in {meta['seconds']} s, saved {path}")
    return judge, meta


# --- a stand-in for the recommender's user encoder ------------------------------------------


class _NextItem(keras.Model):
    """User embedding · item-id embeddings → logits over the whole catalogue."""

    def __init__(self, user_encoder, items, **kwargs):
        super().__init__(**kwargs)
        self.user_encoder = user_encoder
        self.items = items

    def call(self, inputs, training=False):
        user = self.user_encoder(inputs, training=training)
        return ops.matmul(user, ops.transpose(ops.cast(self.items.embeddings, user.dtype)))


def train_stand_in_user_encoder(data, embedding_dim=32, epochs=8, seed=0):
    """An ID-only two-tower's user tower: ``{"history"}`` → mean of item-id embeddings.

    Trained on next-item prediction (full softmax over the catalogue) on the train
    split, then frozen. Returns ``(user_encoder, {"recall@10": valid recall})``.
    """
    keras.utils.set_random_seed(seed)
    num_items = data.metadata.num_items
    history = keras.Input(shape=(None,), dtype="int32", name="history")
    items = keras.layers.Embedding(num_items, embedding_dim, name="item_embedding")
    pooled = UserEncoder(pooling="mean", name="user_pooling")(
        items(ops.maximum(history, 0)), item_ids=history
    )
    user_encoder = keras.Model({"history": history}, pooled, name="user_encoder")
    model = _NextItem(user_encoder, items, name="next_item")
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=10, name="recall@10")],
    )

    def pairs(split):
        ds = data.interactions(split, batch_size=256)
        return ds.map(lambda b: ({"history": b["history"]}, b["target"]))

    model.fit(pairs("train"), epochs=epochs, verbose=0)
    recall = model.evaluate(pairs("valid"), return_dict=True, verbose=0)["recall@10"]
    user_encoder.trainable = False
    return user_encoder, {"valid_recall@10": round(float(recall), 4), "epochs": epochs}


# --- fixed conditions for the sample grids ----------------------------------------------------


def grid_conditions(data, condition):
    """The library's fixed grid conditions, as the conditioning picks them (for attributes:
    one row per class of the first attribute — every shape, or every Fashion-MNIST category)."""
    return default_grid_conditions(data, condition, rows=None)


# --- a learning curve (monitoring only: the reported model is the last one) ----------------------


class JudgeCurve(keras.callbacks.Callback):
    """Every ``every`` epochs: the judge's conditional accuracy on a fixed set of conditions."""

    def __init__(self, data, judge, every, num=256):
        super().__init__()
        catalogue = data.catalogue()
        _, held_out = judge_split(catalogue.num_items)
        self.ids = held_out[:num]
        self.labels = {n: v[self.ids] for n, v in catalogue.labels.items()}
        self.texts = [t.decode() for t in catalogue.texts.numpy()[self.ids]]
        self.judge, self.every = judge, every
        self.points, self._start, self._steps = [], None, 0

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        model = self.model
        # Attribute and user models take the items' labels (their attribute networks);
        # the others (text) the items' own descriptions.
        conditions = self.labels if model.conditioning.takes_labels else self.texts
        images = model.generate(conditions, num=1, seed=99)[:, 0]
        accuracy = self.judge.accuracy(images, self.labels)
        point = {
            "steps": self._steps,
            "seconds": round(time.perf_counter() - self._start, 1),
            **{k: round(v, 4) for k, v in accuracy.items()},
        }
        self.points.append(point)
        print(f"judge curve: {point}", flush=True)


# --- the run ----------------------------------------------------------------------------------


def run(args):
    data = mmrec.data.load(args.data)
    out_dir = args.out_dir
    name = f"generation_{args.model}_{args.condition}"
    judge, judge_meta = load_or_train_judge(data, out_dir, args.judge_epochs, args.seed)

    keras.utils.set_random_seed(args.seed)
    user_encoder, user_encoder_meta = None, None
    needs_user_encoder = get_conditioning(args.condition).requires_user_encoder
    if needs_user_encoder and args.recommender:
        recommender = keras.saving.load_model(args.recommender)
        user_encoder = recommender.build_user_encoder()
        user_encoder_meta = {"recommender": args.recommender, "frozen": True}
        print(f"user encoder: the frozen user tower of {args.recommender}")
    elif needs_user_encoder:
        start = time.perf_counter()
        user_encoder, user_encoder_meta = train_stand_in_user_encoder(data, seed=args.seed)
        user_encoder_meta["seconds"] = round(time.perf_counter() - start, 1)
        print(f"stand-in user encoder: {user_encoder_meta}")

    if args.model == "gan":
        model = ConditionalGAN.from_dataset(
            data,
            condition=args.condition,
            user_encoder=user_encoder,
            discriminator_filters=args.discriminator_filters,
            seed=args.seed,
        )
        d_optimizer = None  # the model's default
        if args.d_learning_rate is not None:
            d_optimizer = keras.optimizers.Adam(args.d_learning_rate, beta_1=0.5)
        model.compile(d_optimizer=d_optimizer)
    else:
        model = ConditionalVAE.from_dataset(
            data,
            condition=args.condition,
            user_encoder=user_encoder,
            beta=args.beta,
            seed=args.seed,
        )
        model.compile()
    train = data.generation_pairs(
        "train", batch_size=args.batch_size, repeat=True, drop_remainder=True, seed=args.seed
    )
    samples = os.path.join(out_dir, name)
    shutil.rmtree(samples, ignore_errors=True)  # no stale grids from an earlier, longer run
    grid = SampleGrid(
        grid_conditions(data, args.condition),
        directory=samples,
        num=8,
        log_dir=os.path.join(samples, "logs"),
        seed=1234,
    )
    budget = TimeLimit(args.minutes)
    curve = JudgeCurve(data, judge, every=args.curve_every)
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=100_000,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=[budget, grid, curve],
        verbose=2 if args.verbose else 0,
    )
    train_seconds = time.perf_counter() - start
    final = grid.grid()
    write_png(os.path.join(out_dir, f"{name}.png"), final)
    model.save(os.path.join(out_dir, f"{name}.keras"))

    report = {
        "benchmark": "generation_quality",
        "data": args.data,
        "dataset_name": data.info.name,
        "model": args.model,
        "condition": args.condition,
        "minutes_budget": args.minutes,
        "train_seconds": round(train_seconds, 1),
        "train_steps": budget.steps,
        "batch_size": args.batch_size,
        "last_epoch_metrics": {k: round(float(v[-1]), 4) for k, v in history.history.items()},
        "judge": judge_meta,
        "user_encoder": user_encoder_meta,
        "sample_grid": os.path.join(out_dir, f"{name}.png"),
        "epoch_grids": grid.paths,
        "judge_curve": curve.points,
        "model_path": os.path.join(out_dir, f"{name}.keras"),
        "options": {
            "discriminator_filters": args.discriminator_filters,
            "d_learning_rate": args.d_learning_rate,
            "beta": args.beta,
        },
    }
    if args.model == "vae":
        valid = data.generation_pairs("valid", batch_size=256)
        metrics = model.evaluate(valid, return_dict=True, verbose=0)
        pixels = data.metadata.image_size**2 * 3
        report["valid"] = {k: round(float(v), 2) for k, v in metrics.items()}
        report["valid"]["bits_per_dim"] = round(metrics["neg_elbo"] / (pixels * np.log(2)), 4)
        report["likelihood"] = "discretised logistic, learned per-channel scale (nats per image)"
    start = time.perf_counter()
    report["generation"] = evaluate_generation(
        model, data, judge, seed=args.seed, temperature=args.temperature
    )
    if model.preference_model is not None and args.temperature != 0.5:
        report["generation_temperature_0.5"] = evaluate_generation(
            model, data, judge, seed=args.seed, temperature=0.5
        )
    report["eval_seconds"] = round(time.perf_counter() - start, 1)
    return report


def rows_for(report):
    rows = []
    # The targets are for shapes; other datasets report the numbers only.
    shapes = report.get("dataset_name", "shapes") == "shapes"
    judge = report["judge"]["held_out_accuracy"]
    for attribute, accuracy in judge.items():
        target = JUDGE_TARGET if shapes else None
        rows.append(
            {
                "metric": f"judge held-out accuracy: {attribute}",
                "value": f"{accuracy:.3f}",
                "target": "" if target is None else f">= {target}",
                "met": "" if target is None else ("yes" if accuracy >= target else "NO"),
            }
        )
    for key in [k for k in report if k.startswith("generation")]:
        gen = report[key]
        suffix = "" if key == "generation" else f" (T={gen.get('temperature')})"
        for attribute, accuracy in gen["conditional_accuracy"].items():
            target = TARGETS.get(attribute) if report["model"] == "gan" else None
            if report["condition"] == "user" or not shapes:
                target = None
            rows.append(
                {
                    "metric": f"conditional accuracy: {attribute}{suffix}",
                    "value": f"{accuracy:.3f}",
                    "target": "" if target is None else f">= {target}",
                    "met": "" if target is None else ("yes" if accuracy >= target else "NO"),
                }
            )
        if "hit_rate" in gen:
            needed = HIT_RATE_FRACTION * gen["hit_rate_held_out_items"]
            rows.append(
                {
                    "metric": f"personalisation hit-rate{suffix}",
                    "value": f"{gen['hit_rate']:.3f}",
                    "target": f">= {needed:.3f}" if report["model"] == "gan" else "",
                    "met": ("yes" if gen["hit_rate"] >= needed else "NO")
                    if report["model"] == "gan"
                    else "",
                }
            )
            for k in ("hit_rate_held_out_items", "hit_rate_held_out_items_true_labels"):
                rows.append(
                    {"metric": k + suffix, "value": f"{gen[k]:.3f}", "target": "", "met": ""}
                )
            for k in ("hit_rate_random_items", "hit_rate_sampled_attributes"):
                rows.append(
                    {"metric": k + suffix, "value": f"{gen[k]:.3f}", "target": "", "met": ""}
                )
        for k in ("fcd", "fcd_real_reference", "kcd", "diversity", "diversity_real_reference"):
            rows.append({"metric": k + suffix, "value": f"{gen[k]:.3f}", "target": "", "met": ""})
    if "valid" in report:
        for k in ("reconstruction", "kl", "neg_elbo", "bits_per_dim"):
            rows.append(
                {"metric": f"valid {k}", "value": f"{report['valid'][k]}", "target": "", "met": ""}
            )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--model", choices=("gan", "vae"), default="gan")
    parser.add_argument("--condition", choices=("attributes", "text", "user"), default="attributes")
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps-per-epoch", type=int, default=300)
    parser.add_argument("--judge-epochs", type=int, default=60)
    parser.add_argument("--temperature", type=float, default=1.0, help="user: preference sampling")
    parser.add_argument(
        "--recommender",
        default=None,
        help="user: a saved Recommender (.keras) whose frozen user tower conditions the model "
        "(default: a stand-in ID-only tower trained here in about a minute)",
    )
    parser.add_argument("--out-dir", default="benchmarks/results")
    parser.add_argument("--curve-every", type=int, default=3, help="epochs between judge points")
    parser.add_argument(
        "--discriminator-filters", type=int, nargs="+", default=None, help="gan: D widths"
    )
    parser.add_argument("--beta", type=float, default=1.0, help="vae: weight of the KL term")
    parser.add_argument(
        "--d-learning-rate", type=float, default=None, help="gan: D Adam lr (default: 4e-4)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.data, "dataset.json")):
        mmrec.data.write_shapes(args.data)

    start = time.perf_counter()
    report = run(args)
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    print()
    print_table(rows_for(report), ["metric", "value", "target", "met"])
    print(
        f"\ntrained {report['train_steps']} steps in {report['train_seconds']} s; "
        f"sample grid: {report['sample_grid']}"
    )
    write_json(os.path.join(args.out_dir, f"generation_{args.model}_{args.condition}.json"), report)


if __name__ == "__main__":
    main()
