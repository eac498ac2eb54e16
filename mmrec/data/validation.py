"""Checking a whole dataset folder: what `mmrec data validate` runs and reports.

Where it sits: `validate(path)` opens the folder as `load(path, on_error="skip",
verify="none")` would, then runs each check in turn — `dataset.json`, checksums, the
vocabulary, every record of every shard kind, the catalogue's item ids — and collects
each problem as a message that names its file (and record). A problem with the data
never stops the run; neither does a check that fails unexpectedly (a bug in mmrec or
TensorFlow): its traceback is kept as the check's `error`, and the other checks
still run.
"""

from __future__ import annotations

import dataclasses
import traceback

import tensorflow as tf

from mmrec.data import schema
from mmrec.data.inspect import vocabulary_problem
from mmrec.data.pipeline import MultimodalDataset
from mmrec.data.records import checksum_problems, item_id_problems
from mmrec.data.schema import DataError


@dataclasses.dataclass
class CheckResult:
    """One check of `validate`: its name, the problems it found, and — when the check
    itself failed (a bug, not a finding) — the traceback."""

    name: str
    problems: list[str]
    error: str | None = None


def validate(path: str) -> list[CheckResult]:
    """Every check of the dataset folder `path`, in order (see the module docstring).

    Raises `FileNotFoundError` only when `path` holds no `dataset.json` at all.

    Example:

    ```python
    for check in mmrec.data.validation.validate("tf_records/shapes"):
        print(check.name, check.problems or "ok")
    ```
    """
    try:
        data = MultimodalDataset(path, on_error="skip", verify="none")
    except DataError as e:
        return [CheckResult(schema.METADATA_FILE, [str(e)])]
    checks = [("checksums", lambda: [str(p) for p in checksum_problems(data.path, data.info)])]
    if "text" in data.info.modalities:
        checks.append(("vocabulary", lambda: [p for p in [vocabulary_problem(data)] if p]))
    for kind in sorted(data.info.shards):
        checks.append((kind, lambda kind=kind: data.problems(kind)))
    checks.append(("catalogue", lambda: catalogue_problems(data)))
    results = []
    for name, check in checks:
        try:
            results.append(CheckResult(name, check()))
        except DataError as e:
            results.append(CheckResult(name, [str(e)]))
        except Exception:  # a bug: reported with its traceback, and the next check runs
            results.append(CheckResult(name, [], error=traceback.format_exc()))
    return results


def catalogue_problems(data: MultimodalDataset) -> list[str]:
    """Duplicate item ids, and ids in [0, num_items) that no item record has: what
    `catalogue()` rejects. Ids are read from every item record that can be parsed, good
    or not, so an id is missing only when no record claims it."""
    if "items" not in data.info.shards:
        return [f"{data.path}: dataset.json lists no item shards."]
    records = data.checked_records("items", missing_ok=True).filter(
        lambda e: tf.logical_not(e["is_end"])
    )
    records = records.map(lambda e: (e["features"][schema.ITEM_ID], e["problem"] == ""))
    ids, good = [], []
    for batch_ids, batch_good in records.batch(4096).as_numpy_iterator():
        ids += batch_ids.tolist()
        good += batch_good.tolist()
    duplicates, _ = item_id_problems([i for i, ok in zip(ids, good) if ok], data.info.num_items)
    _, missing = item_id_problems(ids, data.info.num_items)
    return [f"{data.path}: {p}" for p in (duplicates, missing) if p]
