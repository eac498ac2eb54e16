"""`mmrec train`, `mmrec evaluate` and `mmrec quickstart`: runs, their metrics, the quick start."""

from __future__ import annotations

import argparse
import json
import os
import textwrap

from mmrec.cli.options import positive_int
from mmrec.cli.runs import load_model
from mmrec.errors import UsageError, usage_errors

TRAIN_DESCRIPTION = """\
Train with model.fit (progress bars, TensorBoard scalars and sample grids,
ModelCheckpoint, BackupAndRestore, TerminateOnNaN, a CSV log), evaluate, and
write everything to the run folder --out:
  config.json  model.keras  metrics.json  training.csv  logs/  checkpoints/
  samples/ (generators)  judge/ (generators, unless --judge)
Metrics: recommender — Recall/NDCG@K on the test split next to popularity,
ID-only and oracle baselines; gan/vae — the judge's conditional accuracy,
personalisation hit-rate, FCD/KCD, diversity (vae also -ELBO); judge — its
held-out accuracy; text — validation loss/perplexity, sample descriptions, a
text judge's conditional accuracy (and hit-rate), distinct-n and self-BLEU.

Generators (gan, vae, text) are conditioned on what --condition names
(attributes, user, ...); user-conditioned ones need --recommender RUN.

Interrupted (crash, kill, preemption)? Run the same command again: it resumes
after the last completed epoch. --config takes 'tiny' (the quick start's), 'base'
or a JSON file with any of the kind's keys plus an optional "preset"
(docs/training.md lists them).

Several devices: --strategy mirrored (every GPU of this machine; without GPUs,
--cpu-devices N splits the CPU for a try-out); several machines: --strategy
multiworker with TF_CONFIG set on each (docs/training.md). --batch-size is the
global batch."""

EVALUATE_DESCRIPTION = (
    "Full-catalogue ranking evaluation on a leave-last-out split: Recall@K and "
    "NDCG@K for K in {10, 20, 50}, overall and on cold-item targets, for saved "
    "recommenders (.keras or run folders) and the baselines (popularity; ease, "
    "closed-form EASE with lambda chosen on the valid split; itemknn, cosine "
    "item-item with k chosen on the valid split; where the dataset has ground truth: "
    "oracle, and posterior / posterior+count_pop / posterior+true_pop, the Bayes "
    "posterior over a user's favourites given the history, alone, with the items' "
    "popularity estimated from training counts, and with their true popularity). "
    "Every item the user had before the target is excluded. Undefined metrics "
    "(no cold targets) are null in the JSON. Prints a table and writes JSON."
)

QUICKSTART_DESCRIPTION = (
    "Synthesise the shapes benchmark (if --data has none), train the recommender, "
    "the user-conditioned cGAN and text generator and an audio generator with the tiny "
    "configs, put them behind one complete-item generator (a picture, a description and "
    "a sound of one attribute set sampled from the user's preferences), evaluate them "
    "(ranking table with baselines; the judges' verdicts on generated images, "
    "descriptions, sounds and their consistency), write a gallery page of complete items "
    "(runs/quickstart/item/gallery/index.html), a sample grid and a description per "
    "user, export SavedModels for TF Serving to --export-dir "
    "(validated in a fresh TensorFlow process) and print a summary. At most 10 "
    "minutes on 2 CPU cores. Run again to reuse what is finished (and resume what "
    "was interrupted)."
)

# The names of mmrec.evaluation.ranking.BASELINES, for --help without importing TensorFlow
# (tests/test_cli.py checks that they agree).
BASELINES = (
    "popularity",
    "ease",
    "itemknn",
    "oracle",
    "posterior",
    "posterior+count_pop",
    "posterior+true_pop",
)


def add_commands(commands) -> None:
    _add_train(commands)
    _add_evaluate(commands)
    _add_quickstart(commands)


def _add_train(commands) -> None:
    train = commands.add_parser(
        "train",
        help="train a recommender, a generator (gan, vae, text, audio) or the judge; write a "
        "run folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(TRAIN_DESCRIPTION),
    )
    train.add_argument(
        "kind",
        help="recommender | gan | vae | text | judge, or a kind registered with "
        "mmrec.training.register_run_kind",
    )
    train.add_argument("--data", required=True, help="dataset folder (mmrec data synth)")
    train.add_argument("--out", required=True, help="run folder, e.g. runs/rec")
    train.add_argument("--config", default="base", help="tiny | base | a JSON file (default: base)")
    train.add_argument("--epochs", type=positive_int, default=None, help="overrides the config")
    train.add_argument(
        "--batch-size", type=positive_int, default=None, help="global batch; overrides the config"
    )
    train.add_argument(
        "--mixed-precision",
        choices=("off", "float16", "bfloat16"),
        default="off",
        help="float16 (GPUs; loss scaling) or bfloat16 (TPUs, recent CPUs/GPUs) compute",
    )
    train.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multiworker"),
        default="default",
        help="one device; every GPU of this machine; the machines TF_CONFIG lists",
    )
    train.add_argument(
        "--cpu-devices",
        type=positive_int,
        default=None,
        metavar="N",
        help="with --strategy mirrored and no GPU: split the CPU into N devices (no speed-up)",
    )
    train.add_argument(
        "--condition",
        default=None,
        help="gan/vae/text: what the generator is conditioned on, e.g. attributes or user "
        "(a registered conditioning); overrides the config",
    )
    train.add_argument("--jit", action="store_true", help="compile the training step with XLA")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--recommender",
        default=None,
        metavar="RUN",
        help="gan/vae/text conditioned on users: a recommender run folder (or .keras)",
    )
    train.add_argument(
        "--judge",
        default=None,
        metavar="RUN",
        help="gan/vae: a judge run folder (or .keras) to reuse; default: train one into OUT/judge",
    )
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    train.set_defaults(run=train_run)


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="score recommenders and baselines side by side (Recall@K, NDCG@K, cold items)",
        description=EVALUATE_DESCRIPTION,
    )
    evaluate.add_argument("--data", required=True, help="dataset folder")
    evaluate.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a saved Recommender (.keras or run folder); repeat for several",
    )
    evaluate.add_argument("--split", default="test", choices=("valid", "test"))
    evaluate.add_argument(
        "--baselines",
        default="popularity,oracle",
        help=f"comma-separated, among {', '.join(BASELINES)}; '' for none "
        "(oracle and posterior* need a dataset with ground truth)",
    )
    evaluate.add_argument("--out", default=None, help="JSON file for the results")
    evaluate.set_defaults(run=evaluate_models)


def _add_quickstart(commands) -> None:
    quickstart = commands.add_parser(
        "quickstart",
        help="the whole pipeline in at most 10 minutes on 2 CPU cores (start here)",
        description=QUICKSTART_DESCRIPTION,
    )
    quickstart.add_argument("--out", default="runs/quickstart", help="folder of the runs")
    quickstart.add_argument(
        "--data", default="tf_records/shapes", help="dataset folder (synthesised if absent)"
    )
    quickstart.add_argument("--export-dir", default="savedmodels", help="where models are exported")
    quickstart.add_argument("--seed", type=int, default=0)
    quickstart.add_argument(
        "--smoke",
        action="store_true",
        help="two steps per model: checks that everything runs (numbers mean nothing)",
    )
    quickstart.set_defaults(run=quickstart_run)


def train_run(args) -> int:
    if args.cpu_devices is not None:
        if args.strategy != "mirrored":
            raise UsageError(
                "--cpu-devices splits the CPU into devices for --strategy mirrored. "
                f"Received: --strategy {args.strategy}"
            )
        from mmrec.training.distribute import configure_cpu_devices

        with usage_errors():
            configure_cpu_devices(args.cpu_devices)  # before TensorFlow starts
    from mmrec.training import resolve_config, train

    with usage_errors():
        overrides = {"epochs": args.epochs, "batch_size": args.batch_size}
        if args.condition is not None:
            overrides["condition"] = _condition(args.kind, args.condition)
        config = resolve_config(args.kind, args.config, overrides)
    try:
        # `train` checks the options, the dataset and the run folder before it builds
        # anything; `usage_errors` reports those checks, not errors inside Keras.
        with usage_errors():
            result = train(
                args.kind,
                args.data,
                args.out,
                config,
                recommender=args.recommender,
                judge=args.judge,
                strategy=args.strategy,
                mixed_precision=args.mixed_precision,
                jit_compile=args.jit,
                seed=args.seed,
                overwrite=args.overwrite,
            )
    except FloatingPointError as e:  # the loss diverged: the message says what to change
        raise UsageError(str(e)) from e
    if not result.metrics:  # a non-chief worker of a multi-worker run
        print(f"trained; the chief worker writes the run folder {args.out}")
        return 0
    print(f"run folder: {result.path} (model.keras, metrics.json, training.csv, logs/)")
    return 0


def _condition(kind, condition) -> str:
    """``--condition``, refused for a kind whose runs are not conditioned (e.g. recommender)."""
    from mmrec.training import get_run_kind, run_kind_names

    spec = get_run_kind(kind)
    if not spec.conditioned:
        conditioned = [k for k in run_kind_names() if get_run_kind(k).conditioned]
        raise UsageError(
            f"--condition is for the conditioned kinds {conditioned}. Received it for a "
            f"{spec.name} run."
        )
    return condition


def evaluate_models(args) -> int:
    from mmrec.data import load
    from mmrec.evaluation.ranking import evaluate_ranking, make_baselines, ranking_table
    from mmrec.models import Recommender

    names = [name.strip() for name in args.baselines.split(",") if name.strip()]
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise UsageError(f"Expected baselines among {list(BASELINES)}. Received: {unknown}")
    if not names and not args.model:
        raise UsageError("Nothing to evaluate: give --model or --baselines.")
    data = load(args.data)
    with usage_errors():  # e.g. EASE on a catalogue too large for its dense matrices
        scorers = make_baselines(data, names)
    for spec in args.model:
        name, _, path = spec.rpartition("=")
        name = name or os.path.basename(os.path.normpath(path))
        scorers[name] = load_model(path, Recommender)
    if not scorers:
        raise UsageError(
            f"Nothing to evaluate: '{args.data}' has no ground truth for {names}; give --model."
        )
    results = {name: evaluate_ranking(s, data, args.split) for name, s in scorers.items()}
    print(f"{data.info.name} ({args.split} split)")
    print(ranking_table(results))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.out}")
    return 0


def quickstart_run(args) -> int:
    from mmrec.training.quickstart import quickstart

    with usage_errors():
        quickstart(
            out=args.out,
            data=args.data,
            export_dir=args.export_dir,
            seed=args.seed,
            smoke=args.smoke,
        )
    return 0
