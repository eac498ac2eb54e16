"""Quality of conditional text generation (shapes or Fashion-MNIST), judged independently.

One command per row of docs/text_generation.md's table (``B=benchmarks/text_generation.py``):

    nice python $B --data tf_records/shapes --condition attributes --minutes 10
    nice python $B --data tf_records/shapes --condition item --minutes 10
    nice python $B --data tf_records/fashion --condition item --minutes 10
    nice python $B --data tf_records/fashion60k --condition item --minutes 12 \
        --pretrain-encoder 20 --unseen-held-out    # a frozen, classifier-pretrained encoder
    nice python $B --data tf_records/fashion60k --condition item --sampler greedy \
        --model benchmarks/results/text_item_fashion-mnist_pretrained_encoder.keras
    nice python $B --data tf_records/shapes --condition user --minutes 10
    nice python $B --data tf_records/shapes --condition explanation --minutes 10
    nice python $B --data tf_records/shapes --condition attributes \
        --preset ./gpt2 --lora-rank 4 --minutes 10    # a pretrained keras-hub LM (local preset)

Each trains one `ConditionalTextGenerator` with ``model.fit`` on
``data.generation_pairs("train")`` for a CPU budget (``--minutes``, training only),
then scores it with `mmrec.evaluation.text_report.evaluate_text_model`: the text
judge (`TextJudge`, trained on the real descriptions of the items with
``item_id % 5 != 0``; its held-out accuracy is reported) reads the requested
attributes in the generated texts; perplexity on the test pairs next to unigram and
bigram baselines; distinct-1/2 and self-BLEU next to the real descriptions';
personalisation hit-rates (user); faithfulness (explanation). The user encoder
(``--condition user``) is the frozen user tower of ``--recommender PATH.keras``, or
the quick stand-in of ``benchmarks/generation_quality.py``. With ``--pretrain-encoder
EPOCHS`` (``--condition item``) the captioner reads a frozen item encoder first trained
as an attribute classifier on the judge's training items (`pretrain_item_encoder`; its
held-out accuracy is reported beside the captions'); ``--sampler`` overrides the
generator's sampler (also for ``--model``); ``--unseen-held-out`` leaves the judged
items' pairs out of the generator's training, so that captions are of unseen items.

Writes ``<out-dir>/text_<condition>[_<dataset>].json`` and the model's ``.keras``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
from _common import print_table, write_json  # noqa: E402

import mmrec  # noqa: E402
from mmrec.evaluation.generation import judge_split  # noqa: E402
from mmrec.evaluation.text import text_judge_held_out_accuracy, train_text_judge  # noqa: E402
from mmrec.evaluation.text_report import evaluate_text_model  # noqa: E402
from mmrec.models import ConditionalTextGenerator, pretrain_item_encoder  # noqa: E402
from mmrec.models.conditioning import conditioning_names, get_conditioning  # noqa: E402
from mmrec.training import TimeLimit, load_run_model  # noqa: E402

JUDGE_TARGET = 0.98
# The targets, by (dataset, condition): attribute → conditional accuracy.
ACCURACY_TARGETS = {
    ("shapes", "attributes"): {"shape": 0.98, "colour": 0.98},
    ("shapes", "item"): {"shape": 0.95, "colour": 0.95},
    ("fashion-mnist", "item"): {"category": 0.9},
}
# The rows whose language itself has targets (perplexity, distinct-2): attribute descriptions.
LANGUAGE_TARGETS = {("shapes", "attributes")}
PERPLEXITY_RATIO = 0.5  # model perplexity <= 0.5 × the bigram baseline's
DISTINCT_2_TOLERANCE = 0.2  # distinct-2 within 20% of the real descriptions'
HIT_RATE_FRACTION = 0.9  # user: hit-rate >= 0.9 × the users' own held-out items'
FAITHFULNESS = 0.95  # explanations


def user_encoder_for(args, data):
    if not get_conditioning(args.condition).requires_user_encoder:
        return None, None
    if args.recommender:
        recommender = keras.saving.load_model(args.recommender)
        return recommender.build_user_encoder(), {"recommender": args.recommender}
    from generation_quality import train_stand_in_user_encoder

    start = time.perf_counter()
    encoder, meta = train_stand_in_user_encoder(data, seed=args.seed)
    meta["seconds"] = round(time.perf_counter() - start, 1)
    return encoder, meta


def run(args):
    data = mmrec.data.load(args.data)
    start = time.perf_counter()
    judge = train_text_judge(data, epochs=args.judge_epochs, seed=args.seed)
    judge_meta = {
        "held_out_accuracy": text_judge_held_out_accuracy(judge, data),
        "epochs": args.judge_epochs,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(f"text judge: {judge_meta}")

    keras.utils.set_random_seed(args.seed)
    name = f"text_{args.condition}" + ("" if data.info.name == "shapes" else f"_{data.info.name}")
    if args.preset:
        name += "_pretrained"
    if args.pretrain_encoder:
        name += "_pretrained_encoder"
    encoder_meta = None
    if args.model:  # evaluate a saved model again (e.g. at another --temperature)
        model = load_run_model(args.model, ConditionalTextGenerator)
        user_encoder_meta, budget, train_seconds, last = None, None, None, {}
    else:
        encoder, encoder_meta = pretrained_encoder(args, data)
        model, user_encoder_meta, budget, train_seconds, last = train_model(args, data, encoder)
        model.save(os.path.join(args.out_dir, f"{name}.keras"))
    if args.sampler:
        model.sampler = args.sampler
        name += f"_{args.sampler}"
    if args.temperature != 1.0:
        name += f"_t{args.temperature:g}"
    start = time.perf_counter()
    evaluation = evaluate_text_model(
        model, data, judge, seed=args.seed, temperature=args.temperature
    )
    eval_seconds = round(time.perf_counter() - start, 1)
    latency = serving_latency(model, data, args.latency_repeats) if args.latency_repeats else None
    return name, {
        "benchmark": "text_generation",
        "data": args.data,
        "dataset_name": data.info.name,
        "condition": args.condition,
        "preset": args.preset,
        "lora_rank": args.lora_rank,
        "minutes_budget": args.minutes,
        "model": args.model,
        "temperature": args.temperature,
        "train_seconds": None if train_seconds is None else round(train_seconds, 1),
        "train_steps": None if budget is None else budget.steps,
        "batch_size": args.batch_size,
        "parameters": model.count_params(),
        "trainable_parameters": sum(int(w.numpy().size) for w in model.trainable_weights),
        "last_epoch_metrics": last,
        "sampler": model.sampler,
        "unseen_held_out": args.unseen_held_out,
        "judge": judge_meta,
        "user_encoder": user_encoder_meta,
        "pretrained_item_encoder": encoder_meta,
        "evaluation": evaluation,
        "eval_seconds": eval_seconds,
        "latency": latency,
    }


def pretrained_encoder(args, data):
    """``--pretrain-encoder``: ``(item encoder, report)`` or ``(None, None)``."""
    if not args.pretrain_encoder:
        return None, None
    if not get_conditioning(args.condition).pretrains_encoder:
        raise SystemExit("--pretrain-encoder is for --condition item (captioning)")
    start = time.perf_counter()
    encoder, meta = pretrain_item_encoder(
        data, epochs=args.pretrain_encoder, verbose=2 if args.verbose else 0
    )
    meta["seconds"] = round(time.perf_counter() - start, 1)
    print(f"pretrained item encoder: {meta}")
    return encoder, meta


def train_model(args, data, item_encoder=None):
    """A new generator trained for ``--minutes``: ``(model, user encoder meta, budget, seconds,
    last epoch's metrics)``."""
    user_encoder, user_encoder_meta = user_encoder_for(args, data)
    model = ConditionalTextGenerator.from_dataset(
        data,
        condition=args.condition,
        user_encoder=user_encoder,
        preset=args.preset,
        lora_rank=args.lora_rank,
        seed=args.seed,
        **({"item_encoder": item_encoder} if item_encoder is not None else {}),
        **({"sampler": args.sampler} if args.sampler else {}),
    )
    model.compile()
    held_out = judge_split(data.info.num_items)[1] if args.unseen_held_out else None
    train = data.generation_pairs(
        "train",
        batch_size=args.batch_size,
        repeat=True,
        drop_remainder=True,
        seed=args.seed,
        exclude_targets=held_out,
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
    seconds = time.perf_counter() - start
    last = {k: round(float(v[-1]), 4) for k, v in history.history.items()}
    return model, user_encoder_meta, budget, seconds, last


def serving_latency(model, data, repeats) -> dict:
    """Batch-1 latency of one description: ``model.generate`` and the exported ``generate_text``
    signature in-process, then through `mmrec serve` over REST (one client, keep-alive)."""
    import json
    import shutil
    import signal
    import tempfile

    import numpy as np
    import tensorflow as tf
    from serving_latency import _percentiles, _Rest, _start_server, _timed

    from mmrec.export import export_saved_model
    from mmrec.training.samples import grid_conditions

    base = tempfile.mkdtemp(prefix="mmrec-text-latency-")
    try:
        signature = tf.saved_model.load(export_saved_model(model, base, name="text")).signatures
        generate_text = signature["generate_text"]
        example = {k: v[:1] for k, v in model.conditioning.example_inputs().items()}
        request = {**example, "seed": np.array([0], "int32")}
        tensors = {k: tf.constant(v, generate_text.structured_input_signature[1][k].dtype)
                   for k, v in request.items()}  # fmt: skip
        condition = grid_conditions(data, model, 1)
        timings = {
            "model.generate (in-process)": _timed(
                lambda: model.generate(condition, num=1, seed=0), repeats
            ),
            "generate_text signature (in-process)": _timed(
                lambda: generate_text(**tensors), repeats
            ),
        }
        body = json.dumps({"signature_name": "generate_text",
                           "inputs": {k: v.tolist() for k, v in request.items()}})  # fmt: skip
        process, ready = _start_server(base)
        try:
            rest = _Rest(ready["rest"], "/v1/models/text:predict")
            timings["REST via mmrec serve, 1 client"] = _timed(lambda: rest(body), repeats)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return {"batch_size": 1, "repeats": repeats, **{k: _percentiles(v) for k, v in timings.items()}}


def _row(metric, value, target=None, met=None):
    return {
        "metric": metric,
        "value": f"{value:.3f}" if isinstance(value, float) else str(value),
        "target": "" if target is None else target,
        "met": "" if met is None else ("yes" if met else "NO"),
    }


def rows_for(report):
    dataset, condition = report["dataset_name"], report["condition"]
    evaluation = report["evaluation"]
    rows = [_row("train seconds", report["train_seconds"])]
    for attribute, accuracy in report["judge"]["held_out_accuracy"].items():
        rows.append(_row(f"text judge held-out accuracy: {attribute}", accuracy))
    for attribute, accuracy in (
        (report.get("pretrained_item_encoder") or {}).get("held_out_accuracy", {}).items()
    ):
        rows.append(_row(f"pretrained item encoder held-out accuracy: {attribute}", accuracy))
    targets = ACCURACY_TARGETS.get((dataset, condition), {})
    for attribute, accuracy in evaluation["conditional_accuracy"].items():
        target = targets.get(attribute)
        rows.append(
            _row(
                f"conditional accuracy: {attribute}",
                accuracy,
                None if target is None else f">= {target}",
                None if target is None else accuracy >= target,
            )
        )
    ratio = evaluation["perplexity_ratio_to_bigram"]
    checked = (dataset, condition) in LANGUAGE_TARGETS
    rows += [
        _row("perplexity (test)", evaluation["perplexity"]),
        _row("perplexity, unigram baseline", evaluation["perplexity_unigram"]),
        _row("perplexity, bigram baseline", evaluation["perplexity_bigram"]),
        _row(
            "perplexity / bigram's",
            ratio,
            f"<= {PERPLEXITY_RATIO}" if checked else None,
            ratio <= PERPLEXITY_RATIO if checked else None,
        ),
    ]
    for n in (1, 2):
        ours, real = evaluation[f"distinct_{n}"], evaluation[f"reference_distinct_{n}"]
        check = checked and n == 2
        rows.append(
            _row(
                f"distinct-{n} (real descriptions: {real:.3f})",
                ours,
                f"within {DISTINCT_2_TOLERANCE:.0%} of real" if check else None,
                abs(ours - real) <= DISTINCT_2_TOLERANCE * real if check else None,
            )
        )
    rows.append(
        _row(f"self-BLEU (real: {evaluation['reference_self_bleu']:.3f})", evaluation["self_bleu"])
    )
    if "hit_rate" in evaluation:
        own = evaluation["hit_rate_held_out_items"]
        rows += [
            _row("hit-rate: generated texts", evaluation["hit_rate"],
                 f">= {HIT_RATE_FRACTION} × {own:.3f}",
                 evaluation["hit_rate"] >= HIT_RATE_FRACTION * own),
            _row("hit-rate: users' own held-out items", own),
            _row("hit-rate: random items", evaluation["hit_rate_random_items"]),
        ]  # fmt: skip
    for name, stats in (report.get("latency") or {}).items():
        if isinstance(stats, dict):
            rows.append(_row(f"latency p50 ms, batch 1: {name}", stats["p50_ms"]))
    if "explanation_faithful" in evaluation:
        faithful = evaluation["explanation_faithful"]
        rows.append(_row("explanations faithful", faithful, f">= {FAITHFULNESS}",
                         faithful >= FAITHFULNESS))  # fmt: skip
        rows.append(_row("explanations malformed", evaluation["explanation_malformed"]))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--condition", default="attributes", choices=conditioning_names())
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget (CPU)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--judge-epochs", type=int, default=6)
    parser.add_argument("--recommender", help="a saved Recommender (.keras) for --condition user")
    parser.add_argument("--preset", help="a local keras-hub preset directory (GPT-2 / Gemma)")
    parser.add_argument("--lora-rank", type=int, help="with --preset: LoRA rank (else frozen)")
    parser.add_argument(
        "--latency-repeats",
        type=int,
        default=50,
        help="batch-1 generate_text calls timed in-process and through `mmrec serve` (0: skip)",
    )
    parser.add_argument(
        "--model", help="evaluate this saved ConditionalTextGenerator (.keras) instead of training"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="user conditions: divides the preference logits (below 1: each user's favourites)",
    )
    parser.add_argument(
        "--pretrain-encoder",
        type=int,
        metavar="EPOCHS",
        help="--condition item: caption from a frozen encoder pretrained as a classifier",
    )
    parser.add_argument(
        "--unseen-held-out",
        action="store_true",
        help="leave the judged held-out items (item_id %% 5 == 0) out of the generator's training",
    )
    parser.add_argument(
        "--sampler", choices=("greedy", "top_k", "top_p", "random", "beam"), help="override"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default="benchmarks/results")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    name, report = run(args)
    rows = rows_for(report)
    print()
    print_table(rows, ["metric", "value", "target", "met"])
    print("\nsamples:")
    for text in report["evaluation"]["samples"]:
        print(f"  {text}")
    write_json(os.path.join(args.out_dir, f"{name}.json"), report)


if __name__ == "__main__":
    main()
