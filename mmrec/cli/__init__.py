"""The `mmrec` command: argument parsing, calls into the library, printing.

Each command lives in the module named for its group (`data`, `training`,
`generation`, `serving`) as ``add_commands(subparsers)`` plus one function per
command. `main` runs the command and reports failures:

* an expected failure (`mmrec.errors.UsageError`, the data layer's `DataError`,
  a missing or already existing file) prints ``mmrec: error: <message>``, exit 2;
* anything else is a bug: its traceback is printed, exit 1;
* ``mmrec --debug`` (or ``MMREC_DEBUG=1``) prints the traceback of expected failures too.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from mmrec.cli import data, generation, serving, training
from mmrec.errors import UsageError

DESCRIPTION = """\
mmrec — multimodal content generation for recommender systems (Keras 3 on TensorFlow).

It turns item catalogues (images, text, audio) and user behaviour into TFRecords and
tf.data pipelines, learns multimodal item/user representations, recommends items and
generates personalised content.

Start here (about 10 minutes on 2 CPU cores; data → models → metrics → images → SavedModels):
  mmrec quickstart                              # everything below, with tiny configs

The steps one by one, on the embedded benchmark:
  mmrec data synth --out tf_records/shapes      # generate the "shapes" catalogue + users
  mmrec data inspect tf_records/shapes          # counts, schema and a contact-sheet PNG
  mmrec data validate tf_records/shapes         # check every record, list every problem
  mmrec data fashion-mnist --out tf_records/fashion   # a second benchmark with real images
  mmrec train recommender --data tf_records/shapes --out runs/rec --config tiny
  mmrec train gan --data tf_records/shapes --out runs/gan --config tiny --recommender runs/rec
  mmrec evaluate --data tf_records/shapes --model runs/rec/model.keras
  mmrec generate --run runs/gan --users 1,2,3 --out grid.png
  mmrec generate --run runs/gan --attributes shape=star,colour=red,pattern=plain,size=2 --out a.png
  mmrec train text --data tf_records/shapes --out runs/text --condition attributes --config tiny
  mmrec generate --run runs/text --attributes shape=star,colour=red,pattern=dots,size=large --num 3
  mmrec train audio --data tf_records/shapes --out runs/audio --config tiny
  mmrec item --image runs/gan --text runs/text --audio runs/audio --out runs/item
  mmrec generate --run runs/item --users 1,2 --html gallery/   # picture + text + sound per user
  mmrec export --model runs/gan/model.keras --name gan && mmrec serve

On your own catalogue (docs/your_data.md):
  mmrec data import --format movielens --path ml-latest-small --out tf_records/ml
  mmrec data import --items items.csv --interactions events.parquet --text title,description \
      --attributes category --out tf_records/mine
  mmrec train recommender --data tf_records/ml --out runs/ml --config tiny
  mmrec evaluate --data tf_records/ml --model runs/ml --baselines popularity,ease,itemknn
  mmrec export --model runs/ml --name ml && mmrec serve
  mmrec predict --server localhost:8501 --model ml --history-keys 1,296,593 --data tf_records/ml
"""

EPILOG = """\
`mmrec COMMAND --help` explains each command.

Exit status: 0 done; 1 an unexpected error (a bug: its traceback is printed) or
problems found by `mmrec data validate`; 2 a usage error (a bad option, a missing
file, invalid data, a model of the wrong kind), explained in one line; 3 `mmrec data
validate` could not finish a check (a bug: its traceback is printed; the other checks
ran). Run `mmrec --debug COMMAND ...` (or set MMREC_DEBUG=1) to see its traceback too.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmrec",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the traceback of usage errors too (also: MMREC_DEBUG=1)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    data.add_commands(commands)
    training.add_commands(commands)
    generation.add_commands(commands)
    serving.add_commands(commands)
    return parser


def _version() -> str:
    from mmrec import __version__

    return f"mmrec {__version__}"


def expected_errors() -> tuple[type[BaseException], ...]:
    """What `main` reports in one line: failures a person can fix from the message alone."""
    from mmrec.data import DataError  # invalid data on disk, named with its file and record

    return (UsageError, DataError, FileNotFoundError, FileExistsError)


def main(argv: list[str] | None = None) -> int:
    """Runs ``mmrec ARGV``; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("MMREC_DEBUG", "").lower() not in ("", "0", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("mmrec: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not isinstance(e, expected_errors()):
            traceback.print_exc()
            return 1
        if debug:
            traceback.print_exc()
        print(f"mmrec: error: {e}", file=sys.stderr)
        return 2
