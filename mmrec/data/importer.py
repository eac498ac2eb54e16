"""Bring your own data: item and interaction tables (+ media files) → an mmrec dataset.

Data flow: the item table (CSV / Parquet / JSONL, `mmrec.data.tables`) becomes
the catalogue — one text from the text columns, the image and audio brought to
one format (`mmrec.data.media`), each attribute column a `label_<name>`; the
interaction table becomes an integer log, which is filtered (rating, unknown
items, duplicates, k-core) and split by time (`mmrec.data.splits`); then
`DatasetWriter` writes the same sharded, checksummed TFRecords as the
benchmarks, plus the id maps (`item_keys.txt`, `user_keys.txt`) and, when there
is text, a WordPiece `vocab.txt`. The output is a pure function of the input and
the options: the same tables give byte-identical files.

Ids: items keep the catalogue's row order (id 0 is the first item that survives
the filters); users are numbered in the order of their first interaction row.

`plan_import` does the global steps (reading, filters, ids) and returns an
`ImportPlan`; `import_tables` builds and writes the records from it, here or, with
`beam_pipeline_args`, as an Apache Beam pipeline (`mmrec.data.beam`).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import string

import numpy as np
from tqdm.auto import tqdm

from mmrec.data import schema, simulation, splits
from mmrec.data.media import AudioFormat, MediaError, convert_in_process
from mmrec.data.tables import Table, parse_time, read_table
from mmrec.data.tfrecord import (
    DatasetWriter,
    interaction_example,
    item_example,
    shard_bounds,
    user_example,
)
from mmrec.data.vocabulary import learn_wordpiece_vocabulary, save_vocabulary

MISSING_VALUE = "(missing)"  # the class of an empty attribute cell
SPLIT_METHODS = ("leave-last-out", "time")
ON_MISSING = ("error", "skip")


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which columns of the item and interaction tables hold what.

    Args:
        item_key: the item's key, in both tables.
        user_key: the user's key (interaction table).
        timestamp: when the interaction happened: integer seconds, or ISO 8601 text.
        rating: an optional rating column, filtered by `ImportOptions.min_rating`.
        text: columns joined with " " into the item's text (empty cells left out).
        text_template: instead of joining, a `str.format` template over item columns,
            e.g. `"{title} ({genres})"` (empty cells become "").
        image: a column of image file paths (relative to `media_root`) or image bytes.
        audio: a column of WAV file paths (relative to `media_root`) or WAV bytes.
        attributes: categorical columns, each stored as `label_<column>`.
        attribute_separator: for multi-valued attribute cells ("Action|Comedy" with
            "|"): the label is the first value; None keeps the whole cell.
        media_root: the folder that relative media paths start from.

    Example:

    >>> columns = Columns(item_key="movieId", user_key="userId", text=("title",),
    ...                   attributes="genres", attribute_separator="|")
    >>> columns.modalities, columns.attributes
    (('text',), ('genres',))
    """

    item_key: str = "item_id"
    user_key: str = "user_id"
    timestamp: str = "timestamp"
    rating: str | None = None
    text: tuple[str, ...] = ()
    text_template: str | None = None
    image: str | None = None
    audio: str | None = None
    attributes: tuple[str, ...] = ()
    attribute_separator: str | None = None
    media_root: str | None = None

    def __post_init__(self):
        for name in ("text", "attributes"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))

    @property
    def text_columns(self) -> tuple[str, ...]:
        """The text columns, with those the template names."""
        if self.text_template is None:
            return self.text
        fields = [f for _, f, _, _ in string.Formatter().parse(self.text_template) if f]
        return tuple(dict.fromkeys([*self.text, *fields]))

    @property
    def modalities(self) -> tuple[str, ...]:
        given = {"image": self.image, "text": self.text_columns, "audio": self.audio}
        return tuple(m for m in schema.MODALITIES if given[m])


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """Filters, split and formats of an import; the defaults suit a first run.

    Args:
        min_rating: keep interactions rated at least this (None: keep all).
        min_user_interactions / min_item_interactions: the k-core thresholds, applied
            alternately until every user and item passes (items: 0 keeps items
            nobody interacted with, as cold-start candidates).
        split: `"leave-last-out"` (each user's last interaction → test, the one
            before → valid) or `"time"` (by `valid_from` / `test_from`: integer
            seconds or ISO 8601 text).
        on_missing: `"error"` stops at a missing or unreadable media file (or an
            empty text), naming its row; `"skip"` leaves the item out and counts it.
        image_size, audio_sample_rate, audio_seconds: the stored media format.
        max_history: the most recent items each interaction record carries.
        vocab_size: the size of the WordPiece vocabulary learned from the texts.
        name: the dataset's name (default: the output folder's name).

    Example:

    >>> options = ImportOptions(min_rating=4.0, split="time", valid_from="2024-03-01",
    ...                         test_from="2024-03-15")
    >>> options.min_user_interactions, options.on_missing
    (3, 'error')
    """

    min_rating: float | None = None
    min_user_interactions: int = 3
    min_item_interactions: int = 0
    split: str = "leave-last-out"
    valid_from: int | str | None = None
    test_from: int | str | None = None
    on_missing: str = "error"
    image_size: int = 32
    audio_sample_rate: int = 16000
    audio_seconds: float = 1.0
    max_history: int = 50
    vocab_size: int = 2000
    name: str | None = None

    def __post_init__(self):
        if self.split not in SPLIT_METHODS:
            raise ValueError(
                f"Expected split to be one of {SPLIT_METHODS}. Received: split={self.split!r}"
            )
        if self.on_missing not in ON_MISSING:
            raise ValueError(
                f"Expected on_missing to be one of {ON_MISSING}. "
                f"Received: on_missing={self.on_missing!r}"
            )
        times = (self.valid_from, self.test_from)
        if self.split == "time" and None in times:
            raise ValueError(
                "Expected valid_from and test_from with split='time' (CLI: --valid-from T "
                f"--test-from T). Received: valid_from={self.valid_from!r}, "
                f"test_from={self.test_from!r}"
            )
        if self.split == "leave-last-out" and self.min_user_interactions < 3:
            raise ValueError(
                "Expected min_user_interactions >= 3 with split='leave-last-out' (a history, "
                "a valid and a test item). "
                f"Received: min_user_interactions={self.min_user_interactions}"
            )
        if self.min_user_interactions < 1 or self.min_item_interactions < 0:
            raise ValueError(
                "Expected min_user_interactions >= 1 and min_item_interactions >= 0. Received: "
                f"{self.min_user_interactions}, {self.min_item_interactions}"
            )
        if self.split == "time":
            parse_time(self.valid_from)  # fails here, not after reading the tables
            parse_time(self.test_from)
        if self.max_history < 1:
            raise ValueError(f"Expected max_history >= 1. Received: {self.max_history}")


@dataclasses.dataclass
class _Catalogue:
    keys: list[str]
    rows: list[int]  # the table row of each item
    texts: list[str] | None
    media: list[dict[str, bytes]]  # converted image / audio by modality (empty on Beam)
    labels: dict[str, list[str]]

    def subset(self, keep) -> _Catalogue:
        def pick(values):
            return None if values is None else [v for v, k in zip(values, keep) if k]

        return _Catalogue(
            keys=pick(self.keys),
            rows=pick(self.rows),
            texts=pick(self.texts),
            media=pick(self.media),
            labels={a: pick(v) for a, v in self.labels.items()},
        )


def import_tables(
    out: str,
    items,
    interactions,
    columns: Columns | None = None,
    options: ImportOptions | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    beam_pipeline_args: list[str] | None = None,
) -> schema.DatasetInfo:
    """Imports an item table and an interaction table into the dataset folder `out`.

    Args:
        out: the dataset folder to write (atomically).
        items, interactions: a `.csv`, `.tsv`, `.parquet` or `.jsonl` path, a
            `pyarrow.Table`, a pandas `DataFrame` or a `mmrec.data.tables.Table`.
        columns: which columns hold what (`Columns`).
        options: filters, split and formats (`ImportOptions`).
        beam_pipeline_args: run the per-row work as an Apache Beam pipeline with
            these pipeline options, as TFX takes them: `["--runner=DirectRunner"]`,
            or Dataflow's, Flink's or Spark's (docs/data.md, "Running the import on
            a cluster"; needs `pip install "mmrec[beam]"`). None: in this process.
            The output is the same, byte for byte.
    Returns:
        The written `DatasetInfo`; `import_summary(info)` describes what was kept
        and what was dropped, and why.

    Example:

    ```python
    columns = Columns(item_key="sku", user_key="customer", text=("title", "description"),
                      image="photo", media_root="photos/", attributes=("category",))
    info = import_tables("tf_records/shop", "items.csv", "events.parquet", columns)
    data = mmrec.data.load("tf_records/shop")
    ```
    """
    columns = columns or Columns()
    options = options or ImportOptions()
    if not columns.modalities:
        raise ValueError(
            "Expected at least one content column: text, image or audio (CLI: --text, "
            "--image, --audio). Received none."
        )
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(
            f"'{out}' already exists. Pass overwrite=True (CLI: --overwrite) to replace it."
        )
    if beam_pipeline_args is not None:
        from mmrec.data.beam import import_with_beam  # optional: pip install "mmrec[beam]"

        return import_with_beam(
            out, items, interactions, columns, options, beam_pipeline_args, overwrite, progress
        )
    plan = plan_import(items, interactions, columns, options, progress=progress)
    rows = split_log(plan.log, plan.tie_rank, options)
    counts = {split: len(split_rows) for split, split_rows in rows.items()}
    plan.check_splits(counts)
    info = plan.info(out, splits.cold_items(splits.items_in(rows["train"]), plan.num_items))
    records = {
        "items": (item_record(i, *plan.item_fields(i)) for i in range(plan.num_items)),
        "users": (user_example(u, {}) for u in range(plan.num_users)),
        **{
            f"interactions-{split}": (interaction_example(*row) for row in split_rows)
            for split, split_rows in rows.items()
        },
    }
    with plan.writer(out, overwrite, progress) as writer:
        for kind, bounds in shard_layout(plan.sizes(counts)).items():
            writer.write_shards(kind, records[kind], len(bounds) - 1, bounds[-1])
        plan.finish(writer, info)
    return info


def plan_import(items, interactions, columns, options, *, progress=True, media=None) -> ImportPlan:
    """The global steps of an import: tables read, catalogue chosen, log filtered and numbered.

    `media(cells, columns, options)` gets the item table's media cells by modality
    (`{"image": [path or bytes, one per row], ...}`) and returns row → what
    `convert_item_media` returns for it: `convert_in_process` (the default) converts
    a row's files when the row is reached, the Beam import on its workers, first.
    """
    dropped: dict[str, collections.Counter] = {
        "item rows": collections.Counter(),
        "interaction rows": collections.Counter(),
        "users": collections.Counter(),
    }
    item_table = read_table(
        items,
        text_columns=[
            columns.item_key,
            *columns.text_columns,
            *[c for c in (columns.image, columns.audio) if c],
            *columns.attributes,
        ],
        what="items",
    )
    log_table = read_table(
        interactions, text_columns=[columns.item_key, columns.user_key], what="interactions"
    )
    for field in ("user_key", "item_key", "timestamp", "rating"):  # before the slow part
        if getattr(columns, field) is not None:
            log_table.column(getattr(columns, field), _flag(field))
    media = media or convert_in_process
    catalogue = _read_catalogue(item_table, columns, options, media, dropped, progress)
    log, user_keys = _read_log(log_table, columns, options, catalogue, dropped)
    log, catalogue, user_keys = _filter(log, catalogue, user_keys, options, dropped)
    if not len(log):
        raise schema.DataError(
            f"No interactions are left after filtering ({_dropped_text(dropped)}); "
            "lower --min-rating / --min-user-interactions / --min-item-interactions."
        )
    sources = {"items": item_table.source, "interactions": log_table.source}
    return ImportPlan(columns, options, catalogue, log, user_keys, sources, dropped)


def split_log(log: splits.Log, tie_rank: np.ndarray, options: ImportOptions) -> dict[str, list]:
    """The rows of the three splits: of the whole log here, of one user's on a Beam worker."""
    if options.split == "time":
        return splits.time_split(
            log,
            tie_rank,
            options.max_history,
            parse_time(options.valid_from),
            parse_time(options.test_from),
        )
    return splits.leave_last_out(log, tie_rank, options.max_history)


def shard_layout(sizes: dict[str, int]) -> dict[str, list[int]]:
    """Shard kind → its shards' bounds (`shard_bounds`): up to 16 shards of ~1000 records."""
    return {kind: shard_bounds(n, simulation.num_shards(n)) for kind, n in sizes.items()}


def item_record(item_id: int, text, labels: dict[str, int], media: dict[str, bytes]):
    """An imported item's record: its text, label ids and converted image / audio."""
    image, audio = media.get("image"), media.get("audio")
    return item_example(item_id, image_png=image, text=text, audio_wav=audio, labels=labels)


@dataclasses.dataclass
class ImportPlan:
    """An import after its global steps (`plan_import`), before any record is built.

    `import_tables` builds and writes the records from it in this process,
    `mmrec.data.beam` on Beam workers; both with the functions of this module and
    of `mmrec.data.tfrecord`, so both write the same dataset.
    """

    columns: Columns
    options: ImportOptions
    catalogue: _Catalogue
    log: splits.Log  # in dataset ids: item i is catalogue item i, user u is user_keys[u]
    user_keys: list[str]
    sources: dict[str, str]
    dropped: dict[str, collections.Counter]

    @property
    def num_items(self) -> int:
        return len(self.catalogue.keys)

    @property
    def num_users(self) -> int:
        return len(self.user_keys)

    @functools.cached_property
    def classes(self) -> dict[str, list[str]]:
        """Each attribute's classes, sorted: label id i is class i."""
        return {a: sorted(set(v)) for a, v in self.catalogue.labels.items()}

    @functools.cached_property
    def tie_rank(self) -> np.ndarray:
        """Each item's key's sort position: orders interactions at the same time."""
        return np.argsort(np.argsort(np.array(self.catalogue.keys, dtype=object), kind="stable"))

    @functools.cached_property
    def _label_ids(self) -> dict[str, list[int]]:
        ids = {a: {c: i for i, c in enumerate(classes)} for a, classes in self.classes.items()}
        return {a: [ids[a][v] for v in values] for a, values in self.catalogue.labels.items()}

    def item_fields(self, item_id: int) -> tuple[str | None, dict[str, int], dict[str, bytes]]:
        """Item `item_id`'s text, label ids and media: `item_record`'s arguments."""
        texts = self.catalogue.texts
        text = texts[item_id] if texts is not None else None
        labels = {a: ids[item_id] for a, ids in self._label_ids.items()}
        return text, labels, self.catalogue.media[item_id]

    def writer(self, out: str, overwrite: bool, progress: bool) -> DatasetWriter:
        """The dataset's writer, which checks every record's ids against the plan's counts."""
        return DatasetWriter(
            out,
            overwrite=overwrite,
            progress=progress,
            num_items=self.num_items,
            num_users=self.num_users,
        )

    def check_splits(self, counts: dict[str, int]) -> None:
        """Every split needs records: a DataError names the empty ones."""
        empty = [split for split, count in counts.items() if not count]
        if empty:
            raise schema.DataError(
                f"The {' and '.join(empty)} split(s) would be empty ({sum(counts.values())} "
                f"records in all, split {self.options.split!r}); every split needs records. "
                "Move --valid-from / --test-from, or give users more interactions."
            )

    def sizes(self, counts: dict[str, int]) -> dict[str, int]:
        """Shard kind → records, in the order dataset.json lists them; `counts` by split."""
        sizes = {"items": self.num_items, "users": self.num_users}
        return sizes | {f"interactions-{split}": count for split, count in counts.items()}

    def info(self, out: str, cold_items: list[int]) -> schema.DatasetInfo:
        """dataset.json without its shards (`DatasetWriter.finish` adds them)."""
        options, modalities = self.options, self.columns.modalities
        audio = AudioFormat(options.audio_sample_rate, options.audio_seconds)
        return schema.DatasetInfo(
            name=options.name or os.path.basename(os.path.normpath(out)),
            modalities=modalities,
            attributes=self.classes,
            num_items=self.num_items,
            num_users=self.num_users,
            shards={},
            image_size=options.image_size if "image" in modalities else None,
            audio_sample_rate=audio.sample_rate if "audio" in modalities else None,
            audio_samples=audio.samples if "audio" in modalities else None,
            cold_items=cold_items,
            max_history=options.max_history,
            generator={
                "name": "mmrec.data.import_tables",
                "sources": self.sources,
                "columns": dataclasses.asdict(self.columns),
                "options": dataclasses.asdict(options),
                "dropped": {
                    k: dict(sorted((r, n) for r, n in v.items() if n))
                    for k, v in self.dropped.items()
                },
            },
        )

    def finish(self, writer: DatasetWriter, info: schema.DatasetInfo) -> None:
        """After the shards: the id maps, the vocabulary, then dataset.json (into place)."""
        writer.write_keys("items", self.catalogue.keys)
        writer.write_keys("users", self.user_keys)
        if self.catalogue.texts is not None:
            vocabulary = learn_wordpiece_vocabulary(self.catalogue.texts, self.options.vocab_size)
            save_vocabulary(vocabulary, os.path.join(writer.path, schema.VOCABULARY_FILE))
        writer.finish(info)


def _read_catalogue(table: Table, columns, options, media, dropped, progress) -> _Catalogue:
    keys = table.strings(columns.item_key, _flag("item_key"))
    texts = table.texts(columns.text_columns, columns.text_template, _flag("text"))
    cells = {
        m: table.values(getattr(columns, m), _flag(m))
        for m in ("image", "audio")
        if getattr(columns, m)
    }
    attributes = {a: table.strings(a, _flag("attributes")) for a in columns.attributes}
    media_of = media(cells, columns, options)
    out = _Catalogue([], [], [] if texts is not None else None, [], {a: [] for a in attributes})
    seen, dropped = set(), dropped["item rows"]
    bar = tqdm(range(table.num_rows), desc="reading items", unit="item", disable=not progress)
    for row in bar:
        key = keys[row]
        if key is None or not key.strip():
            dropped["no item key"] += 1
            continue
        if key in seen:
            dropped["duplicate item key (the first row is kept)"] += 1
            continue
        if texts is not None and not texts[row].strip():
            content, reason = {}, "empty text"
            problem = f"the text is empty (columns {list(columns.text_columns)})"
        else:
            content, problem, reason = media_of(row)
        if problem:
            if options.on_missing == "error":
                raise MediaError(
                    f"{table.location(row)} (item {key!r}): {problem}. Fix the row, or pass "
                    "on_missing='skip' (CLI: --on-missing skip) to leave such items out."
                )
            dropped[f"{reason} (--on-missing skip)"] += 1
            continue
        seen.add(key)
        out.keys.append(key)
        out.rows.append(row)
        if texts is not None:
            out.texts.append(" ".join(texts[row].split()))
        out.media.append(content)
        for attribute, values in attributes.items():
            out.labels[attribute].append(_label(values[row], columns.attribute_separator))
    return out


def _flag(field: str) -> str:
    """How a person set a column: the `Columns` field and the command-line flag."""
    return f"Columns.{field}, CLI --{field.replace('_', '-')}"


def _label(value: str | None, separator: str | None) -> str:
    if value is not None and separator:
        value = next((v.strip() for v in value.split(separator) if v.strip()), "")
    value = (value or "").strip()
    return value or MISSING_VALUE


def _read_log(table: Table, columns, options, catalogue: _Catalogue, dropped):
    """The interaction table → (Log over catalogue rows and first-seen user order, user keys)."""
    users = table.strings(columns.user_key, _flag("user_key"))
    items = table.strings(columns.item_key, _flag("item_key"))
    times, no_time = table.timestamps(columns.timestamp, _flag("timestamp"))
    keep = ~no_time & np.array([u is not None and i is not None for u, i in zip(users, items)])
    rows = dropped["interaction rows"]
    rows["missing user, item or timestamp"] += int((~keep).sum())
    if options.min_rating is not None:
        if columns.rating is None:
            raise ValueError("Expected a rating column (CLI: --rating) to filter by min_rating.")
        ratings = table.numbers(columns.rating, _flag("rating"))
        low = keep & ~(ratings >= options.min_rating)
        rows[f"rating below {options.min_rating:g} (--min-rating)"] += int(low.sum())
        keep &= ~low
    index = {key: i for i, key in enumerate(catalogue.keys)}
    item_index = np.array([index.get(i, -1) for i in items], dtype=np.int64)
    unknown = keep & (item_index < 0)
    rows["item not in the catalogue (or left out of it)"] += int(unknown.sum())
    keep &= ~unknown
    kept_users = [u for u, k in zip(users, keep) if k]
    user_keys = list(dict.fromkeys(kept_users))
    user_index = {key: i for i, key in enumerate(user_keys)}
    log = splits.Log(
        users=np.array([user_index[u] for u in kept_users], dtype=np.int64),
        items=item_index[keep],
        timestamps=times[keep],
    )
    return log, user_keys


def _filter(log, catalogue: _Catalogue, user_keys, options, dropped):
    """De-duplication and k-core; renumbers items and users densely, in order."""
    rows = dropped["interaction rows"]
    log, duplicates = splits.deduplicate(log)
    rows["duplicate (same user, item and timestamp)"] += duplicates
    core = splits.k_core(
        log, len(catalogue.keys), options.min_user_interactions, options.min_item_interactions
    )
    rows[f"user with < {options.min_user_interactions} interactions (k-core)"] += (
        core.dropped_by_user
    )
    rows[f"item with < {options.min_item_interactions} interactions (k-core)"] += (
        core.dropped_by_item
    )
    dropped["users"][f"fewer than {options.min_user_interactions} interactions (k-core)"] += (
        core.users_dropped
    )
    dropped["item rows"][f"fewer than {options.min_item_interactions} interactions (k-core)"] += (
        core.items_dropped
    )
    log = core.log
    new_item = np.cumsum(core.items_kept) - 1
    # Users keep the order of their first row: the order of first appearance in the log.
    _, first = np.unique(log.users, return_index=True)
    order = log.users[np.sort(first)]
    new_user = np.full(len(user_keys), -1, dtype=np.int64)
    new_user[order] = np.arange(len(order))
    log = splits.Log(new_user[log.users], new_item[log.items], log.timestamps)
    return log, catalogue.subset(core.items_kept), [user_keys[u] for u in order]


def _dropped_text(dropped) -> str:
    parts = [f"{n} {kind}: {reason}" for kind, c in dropped.items() for reason, n in c.items() if n]
    return "; ".join(parts) or "nothing dropped"


def import_summary(info: schema.DatasetInfo) -> str:
    """A table of what an import wrote, and of what it dropped and why."""
    rows = [
        ("items", info.num_items),
        ("users", info.num_users),
        *((f"interactions {split}", n) for split, n in info.splits.items()),
        ("cold items (in no training record)", len(info.cold_items)),
        ("modalities", ", ".join(info.modalities)),
        *((f"attribute {a} (classes)", len(c)) for a, c in info.attributes.items()),
    ]
    dropped = info.generator.get("dropped", {})
    rows += [
        (f"dropped {kind}: {r}", n) for kind, reasons in dropped.items() for r, n in reasons.items()
    ]
    if not any(dropped.values()):
        rows.append(("dropped rows", 0))
    width = max(len(name) for name, _ in rows)
    lines = [f"{'dataset ' + info.name:<{width}}  {'count':>8}"]
    lines += [f"{name:<{width}}  {value!s:>8}" for name, value in rows]
    return "\n".join(lines)
