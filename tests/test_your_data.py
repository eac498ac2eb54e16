"""Bring your own data, end to end with the CLI and no hand-written code (issue 12's "Done when").

A generated MovieLens-layout folder (`mmrec.data.write_movielens_layout`; never MovieLens
itself, whose licence forbids redistribution) goes through the commands of
``docs/your_data.md``, in order, each test taking the previous one's output:

    mmrec data import --format movielens --path ml-fake --out ml
    mmrec train recommender --data ml --config tiny --epochs 2 --out run
    mmrec evaluate --data ml --model recommender=run --baselines popularity,ease
    mmrec export --model run --name ml --base-dir savedmodels
    mmrec serve --model-base-path savedmodels          (a subprocess on loopback)
    mmrec predict --model ml --history-keys <movieIds> --data ml

The commands run in-process through `mmrec.cli.main` (the server in its own process,
as in test_serving.py); the tests check what they print and write.
"""

import contextlib
import csv
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

import mmrec
from mmrec.cli import main
from mmrec.models.recommender import Recommender

pytestmark = pytest.mark.slow

MOVIES, USERS = 80, 60
READY = "mmrec serve: ready "


def run_cli(*argv):
    """Runs ``mmrec ARGV`` in this process; returns what it printed (it must exit 0)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    assert status == 0, f"mmrec {' '.join(map(str, argv))} exited {status}:\n{err.getvalue()}"
    return out.getvalue()


def table_counts(summary):
    """The import summary's rows as {label: count}."""
    rows = [line.rsplit(maxsplit=1) for line in summary.splitlines()[1:]]
    return {label.strip(): int(count) for label, count in rows}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("your_data")


@pytest.fixture(scope="module")
def movies(root):
    """movieId → the row of the generated ``movies.csv``; writes the MovieLens folder."""
    mmrec.data.write_movielens_layout(str(root / "ml-fake"), num_movies=MOVIES, num_users=USERS)
    with open(root / "ml-fake" / "movies.csv", encoding="utf-8", newline="") as f:
        return {row["movieId"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def imported(root, movies):
    """(dataset folder, what the import printed)."""
    out = root / "ml"
    printed = run_cli("data", "import", "--format", "movielens", "--path", root / "ml-fake")
    return str(out), printed


# `imported` above needs --out; kept as one call so the printed summary is the command's own.
@pytest.fixture(scope="module", name="imported")
def _imported(root, movies):
    out = root / "ml"
    printed = run_cli(
        "data", "import", "--format", "movielens", "--path", root / "ml-fake", "--out", out
    )
    return str(out), printed
