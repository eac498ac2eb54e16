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
"""

from __future__ import annotations

import collections
import dataclasses
import os
import string

import numpy as np
from tqdm.auto import tqdm

from mmrec.data import schema, simulation, splits
from mmrec.data.media import AudioFormat, ImageFormat, MediaError, read_media
from mmrec.data.tables import Table, parse_time, read_table
from mmrec.data.tfrecord import DatasetWriter, interaction_example, item_example, user_example
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
    images: list[bytes] | None
    audio: list[bytes] | None
    labels: dict[str, list[str]]

    def subset(self, keep) -> _Catalogue:
        def pick(values):
            return None if values is None else [v for v, k in zip(values, keep) if k]

        return _Catalogue(
            keys=pick(self.keys),
            rows=pick(self.rows),
            texts=pick(self.texts),
            images=pick(self.images),
            audio=pick(self.audio),
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
) -> schema.DatasetInfo:
    """Imports an item table and an interaction table into the dataset folder `out`.

    Args:
        out: the dataset folder to write (atomically).
        items, interactions: a `.csv`, `.tsv`, `.parquet` or `.jsonl` path, a
            `pyarrow.Table`, a pandas `DataFrame` or a `mmrec.data.tables.Table`.
        columns: which columns hold what (`Columns`).
        options: filters, split and formats (`ImportOptions`).
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
    catalogue = _read_catalogue(item_table, columns, options, dropped["item rows"], progress)
    log, user_keys = _read_log(log_table, columns, options, catalogue, dropped)
    log, catalogue, user_keys = _filter(log, catalogue, user_keys, options, dropped)
    if not len(log):
        raise schema.DataError(
            f"No interactions are left after filtering ({_dropped_text(dropped)}); "
            "lower --min-rating / --min-user-interactions / --min-item-interactions."
        )

    tie_rank = np.argsort(np.argsort(np.array(catalogue.keys, dtype=object), kind="stable"))
    if options.split == "time":
        rows = splits.time_split(
            log,
            tie_rank,
            options.max_history,
            parse_time(options.valid_from),
            parse_time(options.test_from),
        )
    else:
        rows = splits.leave_last_out(log, tie_rank, options.max_history)
    empty = [split for split, split_rows in rows.items() if not split_rows]
    if empty:
        raise schema.DataError(
            f"The {' and '.join(empty)} split(s) would be empty ({sum(map(len, rows.values()))} "
            f"records in all, split {options.split!r}); every split needs records. Move "
            "--valid-from / --test-from, or give users more interactions."
        )
    sources = {"items": item_table.source, "interactions": log_table.source}
    info = _info(out, catalogue, user_keys, rows, columns, options, sources, dropped)
    _write(out, info, catalogue, user_keys, rows, options, overwrite, progress)
    return info


def _read_catalogue(table: Table, columns, options, dropped, progress) -> _Catalogue:
    keys = table.strings(columns.item_key, _flag("item_key"))
    texts = _texts(table, columns)
    media = {
        "image": (columns.image, ImageFormat(options.image_size)),
        "audio": (columns.audio, AudioFormat(options.audio_sample_rate, options.audio_seconds)),
    }
    cells = {m: table.values(c, _flag(m)) for m, (c, _) in media.items() if c}
    attributes = {a: table.strings(a, _flag("attributes")) for a in columns.attributes}
    out = _Catalogue(
        [], [], [] if texts is not None else None, None, None, {a: [] for a in attributes}
    )
    out.images = [] if "image" in cells else None
    out.audio = [] if "audio" in cells else None
    seen = set()
    bar = tqdm(range(table.num_rows), desc="reading items", unit="item", disable=not progress)
    for row in bar:
        key = keys[row]
        if key is None or not key.strip():
            dropped["no item key"] += 1
            continue
        if key in seen:
            dropped["duplicate item key (the first row is kept)"] += 1
            continue
        content, problem, reason = {}, None, None
        if texts is not None and not texts[row].strip():
            problem = f"the text is empty (columns {list(columns.text_columns)})"
            reason = "empty text"
        for modality, values in cells.items():
            if problem:
                break
            column, convert = media[modality]
            try:
                content[modality] = convert(read_media(values[row], columns.media_root, modality))
            except MediaError as e:
                problem = f"column '{column}': {e}"
                reason = f"{'missing' if e.missing else 'unreadable'} {modality}"
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
        if out.images is not None:
            out.images.append(content["image"])
        if out.audio is not None:
            out.audio.append(content["audio"])
        for attribute, values in attributes.items():
            out.labels[attribute].append(_label(values[row], columns.attribute_separator))
    return out


def _flag(field: str) -> str:
    """How a person set a column: the `Columns` field and the command-line flag."""
    return f"Columns.{field}, CLI --{field.replace('_', '-')}"


def _texts(table: Table, columns: Columns) -> list[str] | None:
    names = columns.text_columns
    if not names:
        return None
    values = {c: [v or "" for v in table.strings(c, _flag("text"))] for c in names}
    if columns.text_template is None:
        return [" ".join(v for v in row if v.strip()) for row in zip(*values.values())]
    return [
        columns.text_template.format(**{c: values[c][row] for c in names})
        for row in range(table.num_rows)
    ]


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


def _info(out, catalogue, user_keys, rows, columns, options, sources, dropped):
    classes = {a: sorted(set(v)) for a, v in catalogue.labels.items()}
    audio = AudioFormat(options.audio_sample_rate, options.audio_seconds)
    modalities = columns.modalities
    return schema.DatasetInfo(
        name=options.name or os.path.basename(os.path.normpath(out)),
        modalities=modalities,
        attributes=classes,
        num_items=len(catalogue.keys),
        num_users=len(user_keys),
        shards={},
        image_size=options.image_size if "image" in modalities else None,
        audio_sample_rate=audio.sample_rate if "audio" in modalities else None,
        audio_samples=audio.samples if "audio" in modalities else None,
        cold_items=splits.cold_items(rows["train"], len(catalogue.keys)),
        max_history=options.max_history,
        generator={
            "name": "mmrec.data.import_tables",
            "sources": sources,
            "columns": dataclasses.asdict(columns),
            "options": dataclasses.asdict(options),
            "dropped": {
                k: dict(sorted((r, n) for r, n in v.items() if n)) for k, v in dropped.items()
            },
        },
    )


def _write(out, info, catalogue, user_keys, rows, options, overwrite, progress):
    labels = {
        a: [info.attributes[a].index(v) for v in values] for a, values in catalogue.labels.items()
    }

    def item_records():
        for i in range(info.num_items):
            yield item_example(
                i,
                image_png=catalogue.images[i] if catalogue.images is not None else None,
                text=catalogue.texts[i] if catalogue.texts is not None else None,
                audio_wav=catalogue.audio[i] if catalogue.audio is not None else None,
                labels={a: v[i] for a, v in labels.items()},
            )

    with DatasetWriter(
        out,
        overwrite=overwrite,
        progress=progress,
        num_items=info.num_items,
        num_users=info.num_users,
    ) as writer:
        writer.write_shards(
            "items", item_records(), simulation.num_shards(info.num_items), info.num_items
        )
        users = (user_example(u, {}) for u in range(info.num_users))
        writer.write_shards("users", users, simulation.num_shards(info.num_users), info.num_users)
        for split, split_rows in rows.items():
            records = (interaction_example(*row) for row in split_rows)
            count = len(split_rows)
            writer.write_shards(
                f"interactions-{split}", records, simulation.num_shards(count), count
            )
        writer.write_keys("items", catalogue.keys)
        writer.write_keys("users", user_keys)
        if catalogue.texts is not None:
            vocabulary = learn_wordpiece_vocabulary(catalogue.texts, options.vocab_size)
            save_vocabulary(vocabulary, os.path.join(writer.path, schema.VOCABULARY_FILE))
        writer.finish(info)


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
