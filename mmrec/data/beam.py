"""The import as an Apache Beam pipeline: `import_tables(..., beam_pipeline_args=[...])`.

Where it sits in the data flow: `mmrec.data.importer.import_tables` (and
`import_movielens`, `mmrec data import --runner R`) hands over here when it is
given Beam pipeline options. The driver (this process) does the steps that need
all of the data at once; the workers do the per-row work. Both go through the
importer's own functions, so the dataset is the one the single-process import
writes, byte for byte:

* driver, before: read the tables (pyarrow), choose the catalogue, filter the log
  (rating, unknown items, duplicates, k-core to a fixed point), number items and
  users (`plan_import`). Integer arrays and one pass over the item keys.
* workers, pipeline 1 (only with an image or audio column): read and convert
  every item's media (`convert_item_media`). Which items fail decides the
  catalogue and so every id, which is why the driver waits for it.
* workers, pipeline 2: item records (text, labels, the converted media); the log
  grouped by user, each user's sequence ordered and split (`split_log`), their
  interaction and user records; two combiners: each user's record count per split
  (a record's index in its split, hence its shard) and the items of the training
  records (cold items). Records are keyed by shard, grouped, sorted by index and
  each shard written by one worker (`write_records`): the shard assignment of
  `DatasetWriter`, so the same bytes.
* driver, after: learn the vocabulary, copy the shards into the dataset folder
  and checksum them, write the id maps and `dataset.json` (`ImportPlan.finish`).

Driver and workers exchange data through a staging folder that both can reach:
`--temp_location` (gs://, s3://, hdfs://, a shared mount) or, without one, a local
temporary folder (DirectRunner, or a runner on this machine). It is removed at
the end, success or not.
"""

from __future__ import annotations

import bisect
import functools
import logging
import os
import pickle
import shutil
import tempfile
import uuid

import numpy as np

try:
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
except ImportError as error:
    raise ImportError(
        "The Beam import (beam_pipeline_args=..., CLI --runner) needs Apache Beam: "
        f'pip install "mmrec[beam]". ({error})'
    ) from None

from mmrec.data import schema, splits
from mmrec.data.importer import item_record, plan_import, shard_layout, split_log
from mmrec.data.media import convert_in_process, convert_item_media
from mmrec.data.tfrecord import (
    check_ids,
    interaction_example,
    serialize,
    shard_name,
    user_example,
    write_records,
)

ITEMS_PER_TASK = 500  # item table rows per work item (media conversion is the heavy part)
INTERACTIONS_PER_TASK = 200_000  # log rows per work item, before grouping by user


def import_with_beam(
    out, items, interactions, columns, options, pipeline_args, overwrite, progress
) -> schema.DatasetInfo:
    """`import_tables(out, items, interactions, columns, options, beam_pipeline_args=...)`.

    Call `import_tables` (or `import_movielens`), which checks its arguments first.
    `pipeline_args` go to `apache_beam.options.pipeline_options.PipelineOptions`.
    """
    pipeline_options = PipelineOptions(list(pipeline_args))
    staging = Staging.create(pipeline_options)
    try:
        media = functools.partial(
            _convert_on_workers, staging=staging, pipeline_options=pipeline_options
        )
        plan = plan_import(items, interactions, columns, options, progress=progress, media=media)
        summary = _write_on_workers(plan, staging, pipeline_options)
        counts = summary["counts"]
        plan.check_splits(counts)
        info = plan.info(out, splits.cold_items(summary["seen"], plan.num_items))
        with plan.writer(out, overwrite, progress) as writer:
            for kind, bounds in shard_layout(plan.sizes(counts)).items():
                for k in range(len(bounds) - 1):
                    name = shard_name(kind, k, len(bounds) - 1)
                    staging.download(name, os.path.join(writer.path, name))
                    writer.add_shard(kind, name, bounds[k + 1] - bounds[k])
            plan.finish(writer, info)
        return info
    finally:
        staging.remove()


class Staging:
    """A folder that the driver and every worker can reach, through Beam's file systems.

    Example:

    >>> staging = Staging.create(PipelineOptions([]))  # no --temp_location: a local folder
    >>> staging.save("numbers", [1, 2, 3])
    >>> staging.load("numbers")
    [1, 2, 3]
    >>> staging.remove()
    """

    def __init__(self, root: str):
        self.root = root

    @classmethod
    def create(cls, pipeline_options: PipelineOptions) -> Staging:
        temp = pipeline_options.view_as(GoogleCloudOptions).temp_location
        if not temp:
            return cls(tempfile.mkdtemp(prefix="mmrec-import-"))
        root = FileSystems.join(temp, f"mmrec-import-{uuid.uuid4().hex[:12]}")
        FileSystems.mkdirs(root)
        return cls(root)

    def path(self, name: str) -> str:
        return FileSystems.join(self.root, name)

    def save(self, name: str, value) -> None:
        with self._create(name) as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, name: str):
        with self._open(name) as f:
            return pickle.load(f)

    def upload(self, local: str, name: str) -> None:
        with open(local, "rb") as source, self._create(name) as target:
            shutil.copyfileobj(source, target)

    def download(self, name: str, local: str) -> None:
        with self._open(name) as source, open(local, "wb") as target:
            shutil.copyfileobj(source, target)

    def remove(self) -> None:
        try:
            found = FileSystems.match([self.path("*")])[0].metadata_list
            if found:
                FileSystems.delete([m.path for m in found])
            if FileSystems.exists(self.root):  # a local folder; object stores have none
                FileSystems.delete([self.root])
        except Exception as e:  # never hide the error that ended the import
            logging.warning("Could not remove the staging folder %s: %s", self.root, e)

    def _create(self, name: str):
        # UNCOMPRESSED: Beam would otherwise gzip a ".gz" name a second time.
        return FileSystems.create(self.path(name), compression_type=CompressionTypes.UNCOMPRESSED)

    def _open(self, name: str):
        path = self.path(name)
        if not FileSystems.exists(path):
            raise FileNotFoundError(
                f"The Beam workers left no {name} in the staging folder {self.root}. The "
                "driver and every worker must reach it: pass --temp_location on gs://, s3://, "
                "hdfs:// or a shared mount (CLI: --beam-option=--temp_location=...)."
            )
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


# === Pipeline 1: the media of every item row ===


def _convert_on_workers(cells, columns, options, *, staging, pipeline_options):
    """`plan_import`'s media step: converts every row's media on the workers, then returns
    row → ({}, problem, reason); the converted bytes stay in the staging folder."""
    if not cells:
        return convert_in_process(cells, columns, options)
    num_rows = len(next(iter(cells.values())))
    # Task t holds the table rows from t * ITEMS_PER_TASK; pipeline 2 keeps that split.
    tasks = list(enumerate(range(0, num_rows, ITEMS_PER_TASK)))
    for task, start in tasks:
        rows = slice(start, start + ITEMS_PER_TASK)
        staging.save(f"cells-{task}", {m: values[rows] for m, values in cells.items()})
    with beam.Pipeline(options=pipeline_options) as pipeline:
        _ = (
            pipeline
            | "media tasks" >> beam.Create(tasks)
            | "spread media tasks" >> beam.Reshuffle()
            | "convert media" >> beam.Map(_convert_media, staging, columns, options)
        )
    problems = {}
    for task, _ in tasks:
        problems.update(staging.load(f"problems-{task}"))
    return lambda row: ({}, *problems.get(row, (None, None)))


def _convert_media(task_start, staging: Staging, columns, options) -> None:
    task, start = task_start
    cells = staging.load(f"cells-{task}")
    media, problems = {}, {}
    for i in range(len(next(iter(cells.values())))):
        content, problem, reason = convert_item_media(
            {m: values[i] for m, values in cells.items()}, columns, options
        )
        row = start + i
        if problem:
            problems[row] = (problem, reason)
        else:
            media[row] = content
    staging.save(f"media-{task}", media)
    staging.save(f"problems-{task}", problems)


# === Pipeline 2: records and shards ===


def _write_on_workers(plan, staging: Staging, pipeline_options) -> dict:
    """Writes every shard into the staging folder; returns the split counts and the items
    of the training records."""
    item_tasks: dict[int, list] = {}
    for item_id, row in enumerate(plan.catalogue.rows):
        text, labels, _ = plan.item_fields(item_id)
        item_tasks.setdefault(row // ITEMS_PER_TASK, []).append((item_id, row, text, labels))
    for task, fields in item_tasks.items():
        staging.save(f"items-{task}", fields)
    log = plan.log
    log_tasks = list(range(-(-len(log) // INTERACTIONS_PER_TASK)))
    for task in log_tasks:
        rows = slice(task * INTERACTIONS_PER_TASK, (task + 1) * INTERACTIONS_PER_TASK)
        staging.save(f"log-{task}", (log.users[rows], log.items[rows], log.timestamps[rows]))
    staging.save("tie_rank", plan.tie_rank)
    layout = shard_layout(plan.sizes({}))
    limits = {"item": plan.num_items, "user": plan.num_users}
    has_media = bool(plan.columns.image or plan.columns.audio)

    with beam.Pipeline(options=pipeline_options) as pipeline:
        item_records = (
            pipeline
            | "item tasks" >> beam.Create(sorted(item_tasks))
            | "spread item tasks" >> beam.Reshuffle()
            | "item records"
            >> beam.FlatMap(_item_records, staging, has_media, layout["items"], limits)
        )
        users = (
            pipeline
            | "log tasks" >> beam.Create(log_tasks)
            | "spread log tasks" >> beam.Reshuffle()
            | "slice by user" >> beam.FlatMap(_user_slices, staging)
            | "group by user" >> beam.GroupByKey()
            | "order and split" >> beam.ParDo(SplitUsers(staging, plan.options))
        )
        counts = users | "count records" >> beam.CombineGlobally(CountRecords(plan.num_users))
        seen = users | "train items" >> beam.CombineGlobally(TrainItems(plan.num_items))
        offsets = counts | "record offsets" >> beam.Map(_record_offsets)
        user_records = users | "user records" >> beam.FlatMap(
            _user_records, beam.pvalue.AsSingleton(offsets), layout["users"], limits
        )
        _ = (
            (item_records, user_records)
            | "all records" >> beam.Flatten()
            | "group by shard" >> beam.GroupByKey()
            | "write shards" >> beam.Map(_write_shard, staging)
        )
        _ = counts | "summary" >> beam.Map(_save_summary, beam.pvalue.AsSingleton(seen), staging)
    return staging.load("summary")


def _keyed(kind: str, index: int, bounds: list[int], example, limits: dict):
    """A record keyed by its shard: ((kind, shard, shards), (index in kind, bytes))."""
    shard = bisect.bisect_right(bounds, index) - 1
    num_shards = len(bounds) - 1
    where = f"{shard_name(kind, shard, num_shards)}: record {index - bounds[shard]}"
    check_ids(example, limits, where)  # what DatasetWriter checks as it writes
    return (kind, shard, num_shards), (index, serialize(example))


def _item_records(task: int, staging: Staging, has_media: bool, bounds, limits):
    media = staging.load(f"media-{task}") if has_media else {}
    for item_id, row, text, labels in staging.load(f"items-{task}"):
        example = item_record(item_id, text, labels, media[row] if has_media else {})
        yield _keyed("items", item_id, bounds, example, limits)


def _user_slices(task: int, staging: Staging):
    """One task's log rows → (user, (items, timestamps)) for each user in it."""
    users, items, times = staging.load(f"log-{task}")
    order = np.argsort(users, kind="stable")
    users, items, times = users[order], items[order], times[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(users)]):
        yield int(users[start]), (items[start:end], times[start:end])


class SplitUsers(beam.DoFn):
    """(user, their log in parts) → (user, the rows of the splits), by `split_log`."""

    def __init__(self, staging: Staging, options):
        self.staging = staging
        self.options = options

    def setup(self):
        self.tie_rank = self.staging.load("tie_rank")

    def process(self, element):
        user, parts = element
        parts = list(parts)
        items = np.concatenate([p[0] for p in parts])
        times = np.concatenate([p[1] for p in parts])
        log = splits.Log(np.full(len(items), user, dtype=np.int64), items, times)
        yield user, split_log(log, self.tie_rank, self.options)


class CountRecords(beam.CombineFn):
    """Each user's number of records in each split: int64 [num_users, len(SPLITS)].

    Accumulators hold only the users they saw: they travel between workers.
    """

    def __init__(self, num_users: int):
        self.num_users = num_users

    def create_accumulator(self):
        return {}

    def add_input(self, counts, element):
        user, rows = element
        counts[user] = [len(rows[split]) for split in schema.SPLITS]
        return counts

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for counts in accumulators:
            merged.update(counts)
        return merged

    def extract_output(self, counts):
        out = np.zeros((self.num_users, len(schema.SPLITS)), dtype=np.int64)
        if counts:
            out[list(counts)] = list(counts.values())
        return out


class TrainItems(beam.CombineFn):
    """The items of the training records (`splits.items_in`), over all users."""

    def __init__(self, num_items: int):
        self.num_items = num_items

    def create_accumulator(self):
        return np.zeros(self.num_items, dtype=bool)

    def add_input(self, seen, element):
        _, rows = element
        seen[splits.items_in(rows["train"])] = True
        return seen

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        seen = next(accumulators)
        for other in accumulators:
            seen |= other
        return seen

    def extract_output(self, seen):
        return np.flatnonzero(seen)


def _record_offsets(counts: np.ndarray) -> dict:
    """split → (each user's first record index in the split, the split's shard bounds).

    Records are numbered as the single-process import writes them: by user, then
    by step in the user's sequence.
    """
    totals = {split: int(counts[:, s].sum()) for s, split in enumerate(schema.SPLITS)}
    layout = shard_layout({split: total for split, total in totals.items()})
    starts = np.cumsum(counts, axis=0) - counts
    return {split: (starts[:, s], layout[split]) for s, split in enumerate(schema.SPLITS)}


def _user_records(element, offsets: dict, user_bounds, limits):
    user, rows = element
    yield _keyed("users", user, user_bounds, user_example(user, {}), limits)
    for split, split_rows in rows.items():
        first, bounds = offsets[split]
        kind = f"interactions-{split}"
        for step, row in enumerate(split_rows):
            example = interaction_example(*row)
            yield _keyed(kind, int(first[user]) + step, bounds, example, limits)


def _write_shard(element, staging: Staging) -> str:
    """One shard: its records in index order, through `write_records`, into the staging folder."""
    (kind, shard, num_shards), records = element
    name = shard_name(kind, shard, num_shards)
    records = sorted(records, key=lambda record: record[0])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        write_records(path, (data for _, data in records))
        staging.upload(path, name)
    return name


def _save_summary(counts: np.ndarray, seen: np.ndarray, staging: Staging) -> None:
    totals = counts.sum(axis=0).tolist()
    staging.save("summary", {"counts": dict(zip(schema.SPLITS, totals)), "seen": seen})
