"""`mmrec data synth | fashion-mnist | inspect | validate`: create and check dataset folders."""

from __future__ import annotations

import json
import os
import textwrap

from mmrec.cli.options import positive_int
from mmrec.errors import usage_errors


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
            "Verify shard checksums and validate every record (schema, image/audio/text "
            "decoding, id ranges). Exit status 1 if anything is wrong."
        ),
    )
    validate.add_argument("path", help="dataset folder")
    validate.set_defaults(run=validate_dataset)


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
    from mmrec.data.inspect import summary, write_contact_sheet

    data = load(args.path)
    print(summary(data))
    sheet = args.sheet or os.path.join(args.path, "contact_sheet.png")
    write_contact_sheet(data, sheet, samples=args.samples)
    print(f"contact sheet: {sheet}")
    return 0


def validate_dataset(args) -> int:
    """Lists every problem; exit status 1 when there is one (a finding, not an error)."""
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
