"""`mmrec data synth | fashion-mnist | import | inspect | validate`: create and check datasets."""

from __future__ import annotations

import argparse
import json
import os
import textwrap

from mmrec.cli.options import positive_int
from mmrec.errors import usage_errors

VALIDATE_EXIT_STATUS = """\
exit status:
  0  no problems
  1  problems found (each listed above the summary line)
  2  PATH is not a dataset folder (no dataset.json), or a bad option
  3  a check failed with an internal error (a bug; its traceback is on stderr); the
     other checks still ran, and their problems are listed
"""


def add_commands(commands) -> None:
    data = commands.add_parser(
        "data",
        help="create, inspect and validate datasets (TFRecords + dataset.json)",
        description="Create, inspect and validate mmrec datasets.",
    )
    actions = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = actions.add_parser(
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
    synth.add_argument("--items", type=positive_int, default=2000, help="number of items (>= 50)")
    synth.add_argument("--users", type=positive_int, default=1000, help="number of users")
    synth.add_argument("--image-size", type=int, default=32, choices=(32, 64))
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    synth.set_defaults(run=synthesise)

    fashion = actions.add_parser(
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
    fashion.add_argument("--items", type=positive_int, default=2000, help="number of items")
    fashion.add_argument("--users", type=positive_int, default=1000, help="number of users")
    fashion.add_argument("--seed", type=int, default=0)
    fashion.add_argument(
        "--source", default="/usr/share/datasets/fashion-mnist", help="folder of the IDX files"
    )
    fashion.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    fashion.set_defaults(run=fashion_mnist)

    add_import_command(actions)

    inspect = actions.add_parser(
        "inspect",
        help="print counts and schema, write a contact-sheet PNG of sample items",
        description="Print a dataset's counts and schema and write a contact sheet of items.",
    )
    inspect.add_argument("path", help="dataset folder")
    inspect.add_argument(
        "--sheet", default=None, help="contact-sheet PNG path (default: PATH/contact_sheet.png)"
    )
    inspect.add_argument("--samples", type=positive_int, default=24, help="items on the sheet")
    inspect.set_defaults(run=inspect_dataset)

    validate = actions.add_parser(
        "validate",
        help="check checksums and every record; list each problem with its file and index",
        description=(
            "Verify dataset.json, shard checksums and the vocabulary, validate every record "
            "(schema, image/audio/text decoding, id ranges) and the catalogue's item ids "
            "(duplicates, gaps). Each problem is listed with its file and record index."
        ),
        epilog=VALIDATE_EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("path", help="dataset folder")
    validate.set_defaults(run=validate_dataset)


def add_import_command(actions) -> None:
    importer = actions.add_parser(
        "import",
        help="import your own catalogue and interactions (CSV / Parquet / JSONL + media files)",
        description=(
            "Import an item table and an interaction table (CSV, TSV, Parquet or JSONL, by "
            "suffix) with optional image / WAV files, or a MovieLens folder "
            "(--format movielens --path DIR), into an mmrec dataset: id maps "
            "(item_keys.txt, user_keys.txt), de-duplication, k-core filters, a "
            "chronological split, cold items and a WordPiece vocabulary. The same input "
            "and options write byte-identical files. See docs/your_data.md. With --runner, "
            "the per-row work runs as an Apache Beam pipeline (DirectRunner here; Dataflow, "
            "Flink or Spark at scale) and writes the same files: docs/data.md, 'Running the "
            "import on a cluster'."
        ),
    )
    importer.add_argument("--out", required=True, help="dataset folder to write")
    importer.add_argument(
        "--format",
        choices=("tables", "movielens"),
        default="tables",
        help="'tables': --items and --interactions files; 'movielens': a MovieLens folder",
    )
    importer.add_argument("--path", help="the MovieLens folder (movies.csv, ratings.csv, tags.csv)")
    importer.add_argument("--items", help="the item table (.csv, .tsv, .parquet, .jsonl)")
    importer.add_argument("--interactions", help="the interaction table")
    columns = importer.add_argument_group("columns (--format tables)")
    columns.add_argument("--item-key", help="item key column, in both tables (default item_id)")
    columns.add_argument("--user-key", help="user key column (default user_id)")
    columns.add_argument("--timestamp", help="time column: seconds or ISO 8601 (default timestamp)")
    columns.add_argument("--rating", help="rating column (needed by --min-rating)")
    columns.add_argument("--text", type=_names, help="text columns, comma-separated, joined by ' '")
    columns.add_argument(
        "--text-template", help="instead of joining, a str.format template: '{title} ({genres})'"
    )
    columns.add_argument("--image", help="image column: paths relative to --media-root, or bytes")
    columns.add_argument("--audio", help="audio column: WAV paths relative to --media-root")
    columns.add_argument("--media-root", help="folder that relative media paths start from")
    columns.add_argument(
        "--attributes", type=_names, help="categorical columns, comma-separated (label_<name>)"
    )
    columns.add_argument(
        "--attribute-separator",
        help="for multi-valued attribute cells ('Action|Comedy' with '|'): the first value",
    )
    options = importer.add_argument_group("filters, split and formats")
    options.add_argument("--min-rating", type=float, help="keep ratings >= this (default: all)")
    options.add_argument("--min-user-interactions", type=positive_int, help="k-core (default 3)")
    options.add_argument("--min-item-interactions", type=int, help="k-core (default 0: keep all)")
    options.add_argument(
        "--split",
        choices=("leave-last-out", "time"),
        help="leave-last-out (default): last → test, second-to-last → valid; time: by date",
    )
    options.add_argument("--valid-from", help="--split time: seconds or ISO date of valid's start")
    options.add_argument("--test-from", help="--split time: seconds or ISO date of test's start")
    options.add_argument(
        "--on-missing",
        choices=("error", "skip"),
        help="a missing/unreadable media file or empty text: stop (default) or skip the item",
    )
    options.add_argument("--image-size", type=positive_int, help="square PNG size (default 32)")
    options.add_argument("--audio-sample-rate", type=positive_int, help="default 16000")
    options.add_argument("--audio-seconds", type=float, help="clip length (default 1.0)")
    options.add_argument("--max-history", type=positive_int, help="items per record (default 50)")
    options.add_argument("--vocab-size", type=positive_int, help="WordPiece size (default 2000)")
    options.add_argument("--name", help="dataset name (default: the --out folder's name)")
    options.add_argument(
        "--tags-per-item", type=int, help="MovieLens: most common tags in the text (default 3)"
    )
    importer.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    beam = importer.add_argument_group('Apache Beam (pip install "mmrec[beam]")')
    beam.add_argument(
        "--runner",
        help="run as a Beam pipeline on this runner: DirectRunner, DataflowRunner, FlinkRunner, "
        "SparkRunner, PortableRunner, ...",
    )
    beam.add_argument(
        "--beam-option",
        action="append",
        default=[],
        metavar="--OPTION=VALUE",
        help="a Beam pipeline option, passed through as TFX's beam_pipeline_args (repeat it): "
        "--beam-option=--project=P --beam-option=--temp_location=gs://b/tmp",
    )
    importer.set_defaults(run=import_data)


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _given(args, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def import_data(args) -> int:
    import dataclasses

    from mmrec.data import Columns, ImportOptions, import_movielens, import_summary, import_tables
    from mmrec.errors import UsageError

    column_names = [f.name for f in dataclasses.fields(Columns)]
    option_names = [f.name for f in dataclasses.fields(ImportOptions)]
    if args.format == "movielens":
        extra = sorted(n for n in ("items", "interactions", *column_names) if _given(args, [n]))
        if not args.path or extra:
            flags = ", ".join("--" + n.replace("_", "-") for n in extra) or "none"
            raise UsageError(
                "Expected --path DIR with --format movielens, and neither --items, "
                "--interactions nor column flags (the MovieLens columns are fixed). "
                f"Received: --path {args.path}; other flags: {flags}"
            )
    elif args.path or not (args.items and args.interactions):
        raise UsageError(
            "Expected --items FILE and --interactions FILE (or --format movielens --path DIR). "
            f"Received: --items {args.items}, --interactions {args.interactions}, "
            f"--path {args.path}"
        )
    beam_args = _beam_pipeline_args(args)
    with usage_errors():
        options = ImportOptions(**_given(args, option_names))
        if args.format == "movielens":
            info = import_movielens(
                args.out,
                args.path,
                options,
                overwrite=args.overwrite,
                beam_pipeline_args=beam_args,
                **_given(args, ["tags_per_item"]),
            )
        else:
            columns = Columns(**_given(args, column_names))
            info = import_tables(
                args.out,
                args.items,
                args.interactions,
                columns,
                options,
                overwrite=args.overwrite,
                beam_pipeline_args=beam_args,
            )
    print(f"wrote {args.out}")
    print(import_summary(info))
    return 0


def _beam_pipeline_args(args) -> list[str] | None:
    """`--runner R --beam-option=--k=v ...` → Beam's pipeline arguments; None: no Beam."""
    from mmrec.errors import UsageError

    if not args.runner:
        if args.beam_option:
            raise UsageError(
                "Expected --runner (e.g. DirectRunner) with --beam-option. "
                f"Received: --beam-option {' '.join(args.beam_option)} without --runner"
            )
        return None
    bad = [o for o in args.beam_option if not o.startswith("--")]
    if bad:
        raise UsageError(
            "Expected each --beam-option to be a Beam option, written with '=': "
            f"--beam-option=--project=P. Received: {bad}"
        )
    try:
        import mmrec.data.beam  # noqa: F401  (apache-beam is an optional extra)
    except ImportError as e:
        raise UsageError(str(e)) from None
    return [f"--runner={args.runner}", *args.beam_option]


def synthesise(args) -> int:
    from mmrec.data import ShapesConfig, write_shapes

    with usage_errors():
        config = ShapesConfig(
            num_items=args.items, num_users=args.users, image_size=args.image_size, seed=args.seed
        )
        info = write_shapes(args.out, config, overwrite=args.overwrite)
    _print_written(args.out, info)
    return 0


def fashion_mnist(args) -> int:
    from mmrec.data.fashion_mnist import FashionMnistConfig, write_fashion_mnist

    with usage_errors():
        config = FashionMnistConfig(
            num_items=args.items, num_users=args.users, seed=args.seed, source=args.source
        )
        info = write_fashion_mnist(args.out, config, overwrite=args.overwrite)
    _print_written(args.out, info)
    return 0


def _print_written(path, info) -> None:
    print(
        f"wrote {path}: {info.num_items} items, {info.num_users} users, "
        f"interactions {info.splits}, {len(info.cold_items)} cold items"
    )


def inspect_dataset(args) -> int:
    from mmrec.data import load
    from mmrec.data.inspect import sample_items, summary, write_contact_sheet

    data = load(args.path)
    print(summary(data))
    if "image" not in data.info.modalities:
        print(f"\nsample items (no images: no contact sheet)\n{sample_items(data, args.samples)}")
        return 0
    sheet = args.sheet or os.path.join(args.path, "contact_sheet.png")
    write_contact_sheet(data, sheet, samples=args.samples)
    print(f"contact sheet: {sheet}")
    return 0


def validate_dataset(args) -> int:
    """Lists every problem; the exit status says what was found (`VALIDATE_EXIT_STATUS`)."""
    import sys

    from mmrec.data.validation import validate

    problems = errors = 0
    for check in validate(args.path):
        if check.error:
            print(f"{check.name}: internal error (a bug; traceback on stderr)")
            print(
                f"mmrec data validate: the {check.name} check failed:\n{check.error}",
                file=sys.stderr,
            )
            errors += 1
            continue
        print(
            f"{check.name}: {'ok' if not check.problems else f'{len(check.problems)} problem(s)'}"
        )
        for problem in check.problems:
            print(textwrap.indent(problem, "  "))
        problems += len(check.problems)
    print(json.dumps({"problems": problems, **({"internal_errors": errors} if errors else {})}))
    return 3 if errors else 1 if problems else 0
