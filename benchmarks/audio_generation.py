"""Quality of conditional audio generation (the shapes benchmark's sounds), judged independently.

    nice python benchmarks/audio_generation.py --data tf_records/shapes \
        --condition attributes --minutes 20
    nice python benchmarks/audio_generation.py --data tf_records/shapes \
        --condition user --minutes 20 [--recommender PATH.keras]

Trains one `ConditionalAudioGenerator` with ``model.fit`` on
``data.generation_pairs("train")`` for a CPU budget (``--minutes``, training only),
then scores it with `mmrec.evaluation.audio.evaluate_audio_generation`:

* the judge (`AudioJudge`, the modality benchmark's audio classifier, trained on
  the real sounds of the items with ``item_id % 5 != 0``; cached in ``--out-dir``
  and reused) reports its held-out accuracy;
* conditional accuracy: the judge reads the requested attributes in sounds
  generated for the held-out items' attributes (users: attributes sampled from
  the test users' predicted preferences, and the personalisation hit-rates);
* ``fd_judge``: an FAD-style Fréchet distance on our judge's features (not FAD:
  no VGGish) between sounds generated for one half of the catalogue and the real
  sounds of the other half, next to the real-vs-real reference (the two halves'
  real sounds) and to real sounds sent through the model's spectrogram and
  Griffin-Lim (what a perfect spectrogram generator would reach);
* diversity among sounds of one condition, next to real items alike.

The user encoder (``--condition user``) is the frozen user tower of
``--recommender PATH.keras``, or the quick stand-in of
``benchmarks/generation_quality.py``. Writes ``<out-dir>/audio_<condition>.json``,
the model's ``.keras``, and sample sounds ``audio_<condition>.wav`` with their
spectrograms ``audio_<condition>.png`` (rows: the fixed grid conditions, columns:
seeds). Creates the dataset at ``--data`` if missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
from _common import print_table, write_json  # noqa: E402
from generation_quality import dataset_fingerprint  # noqa: E402
from text_generation import user_encoder_for  # noqa: E402

import mmrec  # noqa: E402
from mmrec.evaluation.audio import (  # noqa: E402
    audio_held_out_accuracy,
    evaluate_audio_generation,
    train_audio_judge,
)
from mmrec.models import ConditionalAudioGenerator  # noqa: E402
from mmrec.training import TimeLimit, load_run_model  # noqa: E402
from mmrec.training.callbacks import spectrogram_grid, write_sounds  # noqa: E402
from mmrec.training.samples import grid_conditions  # noqa: E402

# The targets (shapes, attribute-conditioned, <= 20 CPU-minutes).
ACCURACY_TARGETS = {("attributes", "shape"): 0.9, ("attributes", "colour"): 0.9}
FD_RATIO_TARGETS = {"attributes": 2.0}  # fd_judge <= 2 × the real-vs-real reference
# The modality benchmark's audio targets: what the judge must hear in real held-out sounds.
JUDGE_TARGETS = {"shape": 0.95, "colour": 0.95}
HIT_RATE_FRACTION = 0.7  # user: hit-rate >= 0.7 × the users' own held-out items' (as images)
SAMPLES_PER_CONDITION = 4


def load_or_train_judge(data, out_dir, epochs, seed):
    """The audio judge for this dataset's items, from ``out_dir`` if one was trained before."""
    name = f"audio_judge_{dataset_fingerprint(data)}_e{epochs}_s{seed}"
    path = os.path.join(out_dir, f"{name}.keras")
    meta_path = os.path.join(out_dir, f"{name}.json")
    if os.path.exists(path) and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        judge = load_run_model(path)
        meta["held_out_accuracy"] = audio_held_out_accuracy(judge, data)
        print(f"audio judge: loaded {path} (trained in {meta['seconds']} s)")
        return judge, meta
    start = time.perf_counter()
    judge, accuracy = train_audio_judge(data, epochs=epochs, seed=seed)
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
    print(f"audio judge: trained in {meta['seconds']} s, saved {path}")
    return judge, meta


def run(args):
    if not os.path.exists(os.path.join(args.data, "dataset.json")):
        mmrec.data.write_shapes(args.data)
    data = mmrec.data.load(args.data)
    judge, judge_meta = load_or_train_judge(data, args.out_dir, args.judge_epochs, args.seed)
    print(f"audio judge held-out accuracy: {judge_meta['held_out_accuracy']}")

    keras.utils.set_random_seed(args.seed)
    user_encoder, user_encoder_meta = user_encoder_for(args, data)
    model = ConditionalAudioGenerator.from_dataset(
        data, condition=args.condition, user_encoder=user_encoder, seed=args.seed
    )
    model.compile()
    train = data.generation_pairs(
        "train", batch_size=args.batch_size, repeat=True, drop_remainder=True, seed=args.seed
    )
    budget = TimeLimit(args.minutes)
    start = time.perf_counter()
    history = model.fit(
        train,
        epochs=100_000,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=[budget],
        verbose=2 if args.verbose else 0,
    )
    train_seconds = time.perf_counter() - start
    name = f"audio_{args.condition}" + ("" if data.info.name == "shapes" else f"_{data.info.name}")
    model.save(os.path.join(args.out_dir, f"{name}.keras"))

    start = time.perf_counter()
    evaluation = evaluate_audio_generation(model, data, judge, seed=args.seed)
    eval_seconds = round(time.perf_counter() - start, 1)
    sounds = model.generate(grid_conditions(data, model), num=SAMPLES_PER_CONDITION, seed=args.seed)
    samples = write_sounds(
        os.path.join(args.out_dir, name),
        sounds,
        model.sample_rate,
        spectrogram_grid(model, sounds),
    )
    return name, {
        "benchmark": "audio_generation",
        "data": args.data,
        "dataset_name": data.info.name,
        "condition": args.condition,
        "minutes_budget": args.minutes,
        "train_seconds": round(train_seconds, 1),
        "train_steps": budget.steps,
        "batch_size": args.batch_size,
        "parameters": model.count_params(),
        "last_epoch_metrics": {k: round(float(v[-1]), 4) for k, v in history.history.items()},
        "judge": judge_meta,
        "user_encoder": user_encoder_meta,
        "evaluation": evaluation,
        "eval_seconds": eval_seconds,
        "samples": samples,
    }


def _row(metric, value, target=None, met=None):
    return {
        "metric": metric,
        "value": f"{value:.3f}" if isinstance(value, float) else str(value),
        "target": "" if target is None else target,
        "met": "" if met is None else ("yes" if met else "NO"),
    }


def rows_for(report):
    condition, evaluation = report["condition"], report["evaluation"]
    rows = [
        _row("train seconds", report["train_seconds"]),
        _row("train steps", report["train_steps"]),
    ]
    for attribute, accuracy in report["judge"]["held_out_accuracy"].items():
        target = JUDGE_TARGETS.get(attribute)
        rows.append(
            _row(
                f"audio judge held-out accuracy: {attribute}",
                accuracy,
                None if target is None else f">= {target}",
                None if target is None else accuracy >= target,
            )
        )
    for attribute, accuracy in evaluation["conditional_accuracy"].items():
        target = ACCURACY_TARGETS.get((condition, attribute))
        rows.append(
            _row(
                f"conditional accuracy: {attribute}",
                accuracy,
                None if target is None else f">= {target}",
                None if target is None else accuracy >= target,
            )
        )
    reference = evaluation["griffin_lim_reference"]
    for attribute, accuracy in reference["conditional_accuracy"].items():
        rows.append(_row(f"real sounds via Griffin-Lim, judged: {attribute}", accuracy))
    ratio = evaluation["fd_judge_ratio"]
    fd_target = FD_RATIO_TARGETS.get(condition)
    rows += [
        _row("fd_judge (FAD-style, our judge's features)", evaluation["fd_judge"]),
        _row("fd_judge, real vs real", evaluation["fd_judge_real_reference"]),
        _row("fd_judge, real via Griffin-Lim vs real", reference["fd_judge"]),
        _row(
            "fd_judge / real vs real",
            ratio,
            None if fd_target is None else f"<= {fd_target}",
            None if fd_target is None else ratio <= fd_target,
        ),
        _row(
            f"diversity (real items alike: {evaluation['diversity_real_reference']:.3f})",
            evaluation["diversity"],
        ),
    ]
    if "hit_rate" in evaluation:
        own = evaluation["hit_rate_held_out_items"]
        rows += [
            _row("hit-rate: generated sounds", evaluation["hit_rate"],
                 f">= {HIT_RATE_FRACTION} × {own:.3f}",
                 evaluation["hit_rate"] >= HIT_RATE_FRACTION * own),
            _row("hit-rate: users' own held-out items", own),
            _row("hit-rate: random items", evaluation["hit_rate_random_items"]),
        ]  # fmt: skip
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--condition", default="attributes", choices=("attributes", "user"))
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget (CPU)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--judge-epochs", type=int, default=20)
    parser.add_argument("--recommender", help="a saved Recommender (.keras) for --condition user")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="benchmarks/results")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    name, report = run(args)
    print()
    print_table(rows_for(report), ["metric", "value", "target", "met"])
    write_json(os.path.join(args.out_dir, f"{name}.json"), report)


if __name__ == "__main__":
    main()
