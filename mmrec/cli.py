"""The `mmrec` command: a thin shell over the library.

Each subcommand parses its arguments, calls one library function and prints what
it did. Expected failures (bad data, bad arguments) print one clear line and exit
with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

DESCRIPTION = """\
mmrec — multimodal content generation for recommender systems (Keras 3 on TensorFlow).

It turns item catalogues (images, text, audio) and user behaviour into TFRecords and
tf.data pipelines, learns multimodal item/user representations, recommends items and
generates personalised content.

Start with the embedded benchmark:
  mmrec data synth --out tf_records/shapes      # generate the "shapes" catalogue + users
  mmrec data inspect tf_records/shapes          # counts, schema and a contact-sheet PNG
  mmrec data validate tf_records/shapes         # check every record, list every problem
  mmrec data fashion-mnist --out tf_records/fashion   # a second benchmark with real images
  mmrec evaluate --data tf_records/shapes --model runs/rec/model.keras
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmrec", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = commands.add_parser(
        "data",
        help="create, inspect and validate datasets (TFRecords + dataset.json)",
        description="Create, inspect and validate mmrec datasets.",
    )
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = data_commands.add_parser(
        "synth",
        help="generate the 'shapes' benchmark (images, text, audio, users with ground truth)",
        description=(
            "Generate the shapes benchmark: coloured shapes on patterned backgrounds with "
            "templated descriptions and sounds, users with known favourite colours and "
            "shapes, leave-last-out splits and 10%% cold items. Deterministic for a seed "
            "(same seed → byte-identical shards); written atomically."
        ),
    )
    synth.add_argument("--out", default="tf_records/shapes", help="dataset folder to write")
    synth.add_argument("--items", type=_positive_int, default=2000, help="number of items")
    synth.add_argument("--users", type=_positive_int, default=1000, help="number of users")
    synth.add_argument("--image-size", type=int, default=32, choices=(32, 64))
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    synth.set_defaults(run=_data_synth)

    fashion = data_commands.add_parser(
        "fashion-mnist",
        help="build the Fashion-MNIST benchmark (real images, text, simulated users)",
        description=(
            "Build a catalogue from Debian's dataset-fashion-mnist files (real 28x28 "
            "images padded to 32x32, text from category and brightness, no audio) with "
            "simulated users who favour 2-3 categories; same splits and ground truth as "
            "shapes. Needs `apt-get install dataset-fashion-mnist`."
        ),
    )
    fashion.add_argument("--out", default="tf_records/fashion", help="dataset folder to write")
    fashion.add_argument("--items", type=_positive_int, default=2000, help="number of items")
    fashion.add_argument("--users", type=_positive_int, default=1000, help="number of users")
    fashion.add_argument("--seed", type=int, default=0)
    fashion.add_argument(
        "--source", default="/usr/share/datasets/fashion-mnist", help="folder of the IDX files"
    )
    fashion.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    fashion.set_defaults(run=_data_fashion_mnist)

    inspect = data_commands.add_parser(
        "inspect",
        help="print counts and schema, write a contact-sheet PNG of sample items",
        description="Print a dataset's counts and schema and write a contact sheet of items.",
    )
    inspect.add_argument("path", help="dataset folder")
    inspect.add_argument(
        "--sheet", default=None, help="contact-sheet PNG path (default: PATH/contact_sheet.png)"
    )
    inspect.add_argument("--samples", type=_positive_int, default=24, help="items on the sheet")
    inspect.set_defaults(run=_data_inspect)

    validate = data_commands.add_parser(
        "validate",
        help="check checksums and every record; list each problem with its file and index",
        description=(
            "Verify shard checksums and validate every record (schema, image/audio/text "
            "decoding, id ranges). Exit status 1 if anything is wrong."
        ),
    )
    validate.add_argument("path", help="dataset folder")
    validate.set_defaults(run=_data_validate)

    evaluate = commands.add_parser(
        "evaluate",
        help="score recommenders and baselines side by side (Recall@K, NDCG@K, cold items)",
        description=(
            "Full-catalogue ranking evaluation on a leave-last-out split: Recall@K and "
            "NDCG@K for K in {10, 20, 50}, overall and on cold-item targets, for saved "
            "recommenders (.keras) and the baselines (popularity; oracle where the "
            "dataset has ground truth). Prints a table and writes JSON."
        ),
    )
    evaluate.add_argument("--data", required=True, help="dataset folder")
    evaluate.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a saved Recommender (.keras); repeat for several",
    )
    evaluate.add_argument("--split", default="test", choices=("valid", "test"))
    evaluate.add_argument(
        "--baselines", default="popularity,oracle", help="comma-separated; '' for none"
    )
    evaluate.add_argument("--out", default=None, help="JSON file for the results")
    evaluate.set_defaults(run=_evaluate)
    return parser


def _version() -> str:
    from mmrec import __version__

    return f"mmrec {__version__}"


def _data_synth(args) -> int:
    from mmrec.data import ShapesConfig, write_shapes

    config = ShapesConfig(
        num_items=args.items, num_users=args.users, image_size=args.image_size, seed=args.seed
    )
    info = write_shapes(args.out, config, overwrite=args.overwrite)
    print(
        f"wrote {args.out}: {info.num_items} items, {info.num_users} users, "
        f"interactions {info.splits}, {len(info.cold_items)} cold items"
    )
    return 0


def _data_fashion_mnist(args) -> int:
    from mmrec.data.fashion_mnist import FashionMnistConfig, write_fashion_mnist

    config = FashionMnistConfig(
        num_items=args.items, num_users=args.users, seed=args.seed, source=args.source
    )
    info = write_fashion_mnist(args.out, config, overwrite=args.overwrite)
    print(
        f"wrote {args.out}: {info.num_items} items, {info.num_users} users, "
        f"interactions {info.splits}, {len(info.cold_items)} cold items"
    )
    return 0


def _data_inspect(args) -> int:
    from mmrec.data import load
    from mmrec.data.inspect import summary, write_contact_sheet

    data = load(args.path)
    print(summary(data))
    sheet = args.sheet or os.path.join(args.path, "contact_sheet.png")
    write_contact_sheet(data, sheet, samples=args.samples)
    print(f"contact sheet: {sheet}")
    return 0


def _data_validate(args) -> int:
    from mmrec.data import ChecksumError, load, verify_checksums

    data = load(args.path, on_error="skip", verify="none")
    failures = 0
    try:
        verify_checksums(data.path, data.info)
        print("checksums: ok")
    except ChecksumError as e:
        print(f"checksums: {e}")
        failures += 1
    for kind in sorted(data.info.shards):
        problems = data.problems(kind)
        print(f"{kind}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(textwrap.indent(problem, "  "))
        failures += len(problems)
    print(json.dumps({"problems": failures}))
    return 1 if failures else 0


def _evaluate(args) -> int:
    from mmrec.data import load
    from mmrec.evaluation.ranking import (
        OracleBaseline,
        PopularityBaseline,
        evaluate_ranking,
        ranking_table,
    )

    data = load(args.data)
    baselines = {"popularity": PopularityBaseline, "oracle": OracleBaseline}
    scorers = {}
    for name in filter(None, args.baselines.split(",")):
        if name not in baselines:
            raise ValueError(f"Expected baselines among {sorted(baselines)}. Received: {name!r}")
        if name == "oracle" and not data.info.affinity:
            continue
        scorers[name] = baselines[name](data)
    for spec in args.model:
        name, _, path = spec.rpartition("=")
        if not os.path.exists(path):
            raise FileNotFoundError(f"No saved model at '{path}' (expected a .keras file).")
        import keras

        import mmrec.models  # noqa: F401  (registers the classes for loading)

        scorers[name or os.path.basename(path)] = keras.saving.load_model(path)
    if not scorers:
        raise ValueError("Nothing to evaluate: give --model or --baselines.")
    results = {name: evaluate_ranking(s, data, args.split) for name, s in scorers.items()}
    print(f"{data.info.name} ({args.split} split)")
    print(ranking_table(results))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mmrec.data import DataError

    try:
        return args.run(args)
    except (DataError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"mmrec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
