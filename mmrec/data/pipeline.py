"""Reading mmrec datasets: checked tf.data pipelines and the item catalogue.

Data flow: shards → interleaved `TFRecordDataset`s (each record tagged with its file
and index) → parse + validate + decode → (filter) → shuffle → batch → prefetch.

Every record is validated inside the graph. A bad record either stops the pipeline
with an error that names the shard, the record index and what was expected
(`on_error="raise"`, the default), or is dropped and counted
(`on_error="skip"`) — never silently turned into a wrong example. A shard that
ends early (truncated, or corrupt so that the GZIP stream cannot be read further)
is detected by comparing the records read with the count in `dataset.json`.

Images stay **uint8** (exact pixels; models scale them inside their graph, so an
exported model takes the same raw pixels), audio is float32 in [-1, 1], text is
`tf.string`, ids are int32 and histories are right-padded with `PAD_ID` (-1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re

import numpy as np
import tensorflow as tf

from mmrec.data import schema
from mmrec.data.schema import (
    PAD_ID,
    ChecksumError,
    CorruptRecordError,
    DatasetInfo,
    SchemaError,
)

AUTOTUNE = tf.data.AUTOTUNE
logger = logging.getLogger(__name__)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_ERROR_MODES = ("raise", "skip")
_VERIFY_MODES = ("checksum", "none")


def load(path: str, *, on_error: str = "raise", verify: str = "checksum") -> MultimodalDataset:
    """Opens an mmrec dataset folder.

    Args:
        path: a folder written by `mmrec data synth` (or any `DatasetWriter`).
        on_error: `"raise"` stops at the first bad record with an error naming the
            shard and record; `"skip"` drops bad records and reports how many were
            dropped (`dataset.skipped`, and a logged warning).
        verify: `"checksum"` compares every shard with the SHA-256 in
            `dataset.json` before anything is read; `"none"` skips that (the
            in-graph record checks still run).

    Example:

    ```python
    data = mmrec.data.load("tf_records/shapes")
    batch = next(iter(data.interactions("train", batch_size=32)))
    batch["history"].shape  # (32, max_history), padded with -1
    ```
    """
    return MultimodalDataset(path, on_error=on_error, verify=verify)


@dataclasses.dataclass
class Catalogue:
    """Every item decoded once, as tensors indexed by item id (row i is item i).

    Models gather content from here, so interaction batches only carry ids.
    """

    images: tf.Tensor | None  # uint8 [N, H, W, C]
    texts: tf.Tensor | None  # string [N]
    audio: tf.Tensor | None  # float32 [N, samples]
    labels: dict[str, np.ndarray]  # attribute → int32 [N]
    popularity: np.ndarray | None  # float32 [N], ground truth where known
    missing_items: list[int]  # ids whose record was skipped (rows are blank)

    @property
    def num_items(self) -> int:
        return len(next(iter(self.features().values())))

    def features(self) -> dict[str, tf.Tensor]:
        """The content features by modality name (what item encoders take)."""
        out = {"image": self.images, "text": self.texts, "audio": self.audio}
        return {k: v for k, v in out.items() if v is not None}


class MultimodalDataset:
    """A dataset folder opened for reading; see `load`."""

    def __init__(self, path: str, *, on_error: str = "raise", verify: str = "checksum"):
        if on_error not in _ERROR_MODES:
            raise ValueError(
                f"Expected on_error to be one of {_ERROR_MODES}. Received: on_error={on_error!r}"
            )
        if verify not in _VERIFY_MODES:
            raise ValueError(
                f"Expected verify to be one of {_VERIFY_MODES}. Received: verify={verify!r}"
            )
        self.path = os.path.abspath(path)
        self.info = DatasetInfo.read(self.path)
        self.on_error = on_error
        self.skipped: dict[str, int] = {}
        self._catalogue: Catalogue | None = None
        if verify == "checksum":
            verify_checksums(self.path, self.info)

    def __repr__(self) -> str:
        return (
            f"<MultimodalDataset '{self.info.name}' at {self.path}: {self.info.num_items} items, "
            f"{self.info.num_users} users, interactions {self.info.splits}>"
        )

    @property
    def metadata(self) -> DatasetInfo:
        return self.info

    @property
    def vocabulary_path(self) -> str | None:
        path = os.path.join(self.path, schema.VOCABULARY_FILE)
        return path if os.path.exists(path) else None

    # --- public pipelines -----------------------------------------------------------

    def items(
        self,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        seed: int = 0,
        repeat: bool = False,
        cache: bool = False,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """Batches of decoded items: `item_id`, each modality, and `label_<attribute>`."""
        ds = self._examples("items", shuffle=shuffle, seed=seed)
        return self._finish(ds, batch_size, shuffle, seed, repeat, cache, drop_remainder)

    def interactions(
        self,
        split: str,
        batch_size: int = 256,
        *,
        shuffle: bool | None = None,
        seed: int = 0,
        repeat: bool = False,
        cache: bool = False,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """Batches of `{"user_id", "history", "target"}` for one split.

        `history` is int32 [batch, max_history]: the most recent items, oldest first,
        right-padded with `PAD_ID`. Shuffled by default for "train" only.
        """
        shuffle = (split == "train") if shuffle is None else shuffle
        ds = self._examples(f"interactions-{self._split(split)}", shuffle=shuffle, seed=seed)
        return self._finish(ds, batch_size, shuffle, seed, repeat, cache, drop_remainder)

    def generation_pairs(
        self,
        split: str,
        batch_size: int = 64,
        *,
        shuffle: bool | None = None,
        seed: int = 0,
        repeat: bool = False,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """(user history → the item that user chose) with the chosen item's content.

        Each element: `user_id`, `history`, `target`, the target's `image`/`text`/
        `audio` (whichever the dataset has) and its `label_<attribute>`s — what a
        personalised generator trains on.
        """
        shuffle = (split == "train") if shuffle is None else shuffle
        catalogue = self.catalogue()
        content = dict(catalogue.features())
        content.update({schema.label_key(a): v for a, v in catalogue.labels.items()})

        def attach(example):
            gathered = {k: tf.gather(v, example["target"]) for k, v in content.items()}
            return {**example, **gathered}

        ds = self._examples(f"interactions-{self._split(split)}", shuffle=shuffle, seed=seed)
        ds = ds.map(attach, num_parallel_calls=AUTOTUNE)
        return self._finish(ds, batch_size, shuffle, seed, repeat, False, drop_remainder)

    def catalogue(self) -> Catalogue:
        """Decodes every item once (cached on this object)."""
        if self._catalogue is None:
            self._catalogue = self._build_catalogue()
        return self._catalogue

    def users(self) -> dict[str, np.ndarray]:
        """Ground-truth user preferences: `user_id` [U] and `pref_<attribute>` [U, k].

        Rows are ordered by user id; lists are right-padded with `PAD_ID`.
        """
        rows = _collect(self._examples("users", shuffle=False), what="user records")
        order = np.argsort(rows[schema.USER_ID])
        return {k: v[order] for k, v in rows.items()}

    # --- plumbing ---------------------------------------------------------------------

    def _split(self, split: str) -> str:
        if split not in schema.SPLITS:
            raise ValueError(f"Expected split to be one of {schema.SPLITS}. Received: {split!r}")
        return split

    def _finish(self, ds, batch_size, shuffle, seed, repeat, cache, drop_remainder):
        if cache:
            ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)

    def _examples(self, kind: str, *, shuffle: bool, seed: int = 0) -> tf.data.Dataset:
        """Parsed, validated, unbatched examples of one record kind."""
        if self.on_error == "skip":
            self._count_skipped(kind)
        ds = self._checked(
            kind, shuffle=shuffle, seed=seed, raise_on_problem=self.on_error == "raise"
        )
        return ds.filter(_is_good).map(lambda features, problem, is_end: features)

    def _checked(
        self, kind: str, *, shuffle: bool = False, seed: int = 0, raise_on_problem: bool = False
    ) -> tf.data.Dataset:
        """(features, problem, is_end) per record; `problem` is "" for a good record.

        With `raise_on_problem`, the first problem stops iteration with an error
        whose message is the problem (file, record index, what was expected).
        """
        shards = self.info.shard_list(kind)
        files = [os.path.join(self.path, s.file) for s in shards]
        counts = [s.records for s in shards]
        ds = tf.data.Dataset.from_tensor_slices((files, tf.constant(counts, tf.int64)))
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed)
        ds = ds.interleave(
            _tagged_records,
            cycle_length=min(4, len(files)),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
        parse = _parser(kind.split("-")[0], self.info, raise_on_problem)
        return ds.map(parse, num_parallel_calls=AUTOTUNE)

    def _count_skipped(self, kind: str) -> None:
        if kind in self.skipped:
            return
        good = self._checked(kind).reduce(
            tf.constant(0, tf.int64), lambda n, elem: n + tf.cast(_is_good(*elem), tf.int64)
        )
        expected = sum(s.records for s in self.info.shard_list(kind))
        self.skipped[kind] = expected - int(good)
        if self.skipped[kind]:
            logger.warning(
                "%s: skipped %d of %d %s records (corrupt or invalid); "
                "run `mmrec data validate %s` to list them.",
                self.path,
                self.skipped[kind],
                expected,
                kind,
                self.path,
            )

    def problems(self, kind: str) -> list[str]:
        """Every problem in one record kind's shards, one message each (empty if clean)."""
        bad = self._checked(kind).filter(lambda f, problem, e: tf.not_equal(problem, ""))
        return [p.decode("utf-8") for _, p, _ in bad.as_numpy_iterator()]

    def _build_catalogue(self) -> Catalogue:
        rows = _collect(self._examples("items", shuffle=False), what="item records")
        n = self.info.num_items
        ids = rows.pop(schema.ITEM_ID)
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise CorruptRecordError(
                f"{self.path}: item ids must be unique. Received duplicates: "
                f"{unique[counts > 1][:10].tolist()}"
            )
        missing = sorted(set(range(n)) - set(ids.tolist()))
        if missing and self.on_error == "raise":
            raise CorruptRecordError(
                f"{self.path}: expected items 0..{n - 1}; {len(missing)} missing, "
                f"e.g. {missing[:10]}"
            )

        def by_id(values: np.ndarray) -> np.ndarray:
            out = np.zeros((n,) + values.shape[1:], dtype=values.dtype)
            if values.dtype == object:  # strings: skipped items get empty text
                out[:] = b""
            out[ids] = values
            return out

        def tensor(key):
            return tf.constant(by_id(rows[key])) if key in rows else None

        labels = {
            a: by_id(rows[schema.label_key(a)]).astype(np.int32) for a in self.info.attributes
        }
        popularity = rows.get(schema.POPULARITY)
        return Catalogue(
            images=tensor(schema.IMAGE),
            texts=tensor(schema.TEXT),
            audio=tensor(schema.AUDIO),
            labels=labels,
            popularity=None if popularity is None else by_id(popularity),
            missing_items=missing,
        )


# --- record-level functions (module level so that tf.data traces them once) ----------


def verify_checksums(path: str, info: DatasetInfo) -> None:
    """Raises `ChecksumError` naming the first shard whose SHA-256 differs."""
    for shards in info.shards.values():
        for shard in shards:
            file = os.path.join(path, shard.file)
            if not os.path.exists(file):
                raise CorruptRecordError(f"{file}: shard listed in dataset.json is missing.")
            digest = hashlib.sha256()
            with open(file, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(block)
            if digest.hexdigest() != shard.sha256:
                raise ChecksumError(
                    f"{file}: checksum mismatch (expected sha256 {shard.sha256}, "
                    f"received {digest.hexdigest()}); the shard is corrupt or was modified. "
                    "Re-create the dataset, or load with on_error='skip', verify='none' to "
                    "read the records that are still intact."
                )


def _tagged_records(file, expected):
    """One shard's records as (file, index, record, is_end, expected).

    A final end marker carries the number of records actually read, so that a shard
    that stops early is caught by comparing it with `expected`.
    """
    records = tf.data.TFRecordDataset(file, compression_type="GZIP").ignore_errors()
    records = records.map(lambda r: (r, False))
    end = tf.data.Dataset.from_tensors((tf.constant(b""), True))

    def count(n, element):
        record, is_end = element
        return n + 1 - tf.cast(is_end, tf.int64), (file, n, record, is_end, expected)

    return records.concatenate(end).scan(tf.constant(0, tf.int64), count)


def _is_good(features, problem, is_end):
    return tf.logical_and(tf.equal(problem, ""), tf.logical_not(is_end))


class _Problems:
    """Collects (bad, message) checks; `first()` is the message of the first failure."""

    def __init__(self):
        self.checks: list[tuple[tf.Tensor, tf.Tensor]] = []

    def add(self, bad, message):
        self.checks.append((tf.convert_to_tensor(bad), tf.convert_to_tensor(message)))

    def required(self, parsed, key, default):
        """The single value of a required scalar feature (a safe default if absent)."""
        values = parsed[key]
        self.add(
            tf.not_equal(tf.size(values), 1),
            tf.strings.format(
                "expected exactly one value for required feature '" + key + "', received {}",
                tf.size(values),
            ),
        )
        return tf.concat([values, tf.constant([default], values.dtype)], 0)[0]

    def in_range(self, name, value, upper):
        self.add(
            tf.logical_or(value < 0, value >= upper),
            tf.strings.format(
                f"{name} {{}} is out of range (expected 0 <= {name} < {upper})", value
            ),
        )

    def first(self) -> tf.Tensor:
        message = tf.constant("")
        for bad, text in reversed(self.checks):
            message = tf.where(bad, text, message)
        return message


def _parser(kind: str, info: DatasetInfo, raise_on_problem: bool):
    build = {"items": _item_checks, "interactions": _interaction_checks, "users": _user_checks}
    checks = build[kind]

    def parse(file, index, record, is_end, expected):
        problems = _Problems()
        features = checks(tf.io.parse_single_example(record, _spec(kind, info)), problems, info)
        problem = problems.first()
        end_problem = tf.strings.format(
            "shard ended after {} of {} records (truncated or corrupt)", (index, expected)
        )
        problem = tf.where(is_end, tf.where(index == expected, "", end_problem), problem)
        location = tf.strings.join([file, ": record ", tf.strings.as_string(index), ": "])
        problem = tf.where(problem == "", "", location + problem)
        if raise_on_problem:
            check = tf.debugging.Assert(tf.equal(problem, ""), [problem], summarize=1)
            with tf.control_dependencies([check]):
                return tf.nest.map_structure(tf.identity, (features, problem, is_end))
        return features, problem, is_end

    return parse


def _spec(kind: str, info: DatasetInfo) -> dict:
    def ragged(dtype):
        return tf.io.RaggedFeature(dtype)

    if kind == "items":
        spec = {schema.ITEM_ID: ragged(tf.int64), schema.POPULARITY: ragged(tf.float32)}
        spec.update({m: ragged(tf.string) for m in info.modalities})
        spec.update({schema.label_key(a): ragged(tf.int64) for a in info.attributes})
    elif kind == "interactions":
        spec = {
            k: ragged(tf.int64)
            for k in (
                schema.USER_ID,
                schema.HISTORY,
                schema.HISTORY_TIMESTAMPS,
                schema.TARGET,
                schema.TARGET_TIMESTAMP,
            )
        }
    else:
        spec = {schema.USER_ID: ragged(tf.int64)}
        spec.update({schema.preference_key(a): ragged(tf.int64) for a in info.user_preferences})
    return spec


def _item_checks(parsed, problems: _Problems, info: DatasetInfo) -> dict:
    item_id = problems.required(parsed, schema.ITEM_ID, 0)
    problems.in_range("item_id", item_id, info.num_items)
    out = {schema.ITEM_ID: tf.cast(item_id, tf.int32)}
    if "image" in info.modalities:
        out["image"] = _check_image(problems.required(parsed, schema.IMAGE, b""), problems, info)
    if "text" in info.modalities:
        out["text"] = _check_text(problems.required(parsed, schema.TEXT, b""), problems)
    if "audio" in info.modalities:
        out["audio"] = _check_audio(problems.required(parsed, schema.AUDIO, b""), problems, info)
    for attribute, classes in info.attributes.items():
        key = schema.label_key(attribute)
        label = problems.required(parsed, key, 0)
        problems.in_range(key, label, len(classes))
        out[key] = tf.cast(label, tf.int32)
    if info.affinity:
        out[schema.POPULARITY] = problems.required(parsed, schema.POPULARITY, 0.0)
    return out


def _check_image(data, problems: _Problems, info: DatasetInfo):
    size, channels = info.image_size, info.image_channels
    head = tf.strings.substr(data, 0, 8)
    known = tf.logical_or(
        tf.equal(head, _PNG_MAGIC), tf.equal(tf.strings.substr(data, 0, 3), _JPEG_MAGIC)
    )
    problems.add(
        tf.logical_not(known),
        tf.strings.format(
            "image bytes are not PNG or JPEG (expected a PNG/JPEG signature; "
            "received first bytes {})",
            tf.strings.bytes_split(head),
            summarize=8,
        ),
    )
    blank = tf.zeros([size, size, channels], tf.uint8)
    decoded = tf.cond(
        known,
        lambda: tf.io.decode_image(data, channels=channels, expand_animations=False),
        lambda: blank,
    )
    shape = tf.shape(decoded)
    wrong = tf.logical_or(shape[0] != size, shape[1] != size)
    problems.add(
        tf.logical_and(known, wrong),
        tf.strings.format(
            f"expected a {size}x{size} image (dataset.json image_size), received {{}}x{{}}",
            (shape[0], shape[1]),
        ),
    )
    return tf.cond(wrong, lambda: blank, lambda: tf.ensure_shape(decoded, blank.shape))


def _check_text(text, problems: _Problems):
    problems.add(
        tf.equal(tf.strings.length(tf.strings.strip(text)), 0),
        "text is empty (expected a non-empty UTF-8 description)",
    )
    codepoints = tf.strings.unicode_decode(text, "UTF-8", errors="replace", replacement_char=0xFFFD)
    problems.add(tf.reduce_any(codepoints == 0xFFFD), "text is not valid UTF-8")
    return text


def _check_audio(data, problems: _Problems, info: DatasetInfo):
    rate, samples = info.audio_sample_rate, info.audio_samples
    header = tf.strings.join([data, b"\0" * 44])  # pad so the header reads are in range

    def field(offset, length, dtype):
        return tf.io.decode_raw(tf.strings.substr(header, offset, length), dtype)[0]

    is_wav = tf.logical_and(
        tf.equal(tf.strings.substr(header, 0, 4), b"RIFF"),
        tf.equal(tf.strings.substr(header, 8, 4), b"WAVE"),
    )
    problems.add(tf.logical_not(is_wav), "audio bytes are not a WAV file (no RIFF/WAVE header)")
    channels, bits = field(22, 2, tf.int16), field(34, 2, tf.int16)
    problems.add(
        tf.logical_and(is_wav, tf.logical_or(channels != 1, bits != 16)),
        tf.strings.format(
            "expected mono 16-bit PCM audio, received {} channel(s) of {}-bit", (channels, bits)
        ),
    )
    received_rate = field(24, 4, tf.int32)
    problems.add(
        tf.logical_and(is_wav, received_rate != rate),
        tf.strings.format(
            f"expected audio at {rate} Hz (dataset.json audio_sample_rate), received {{}} Hz",
            received_rate,
        ),
    )
    header_ok = tf.logical_and(is_wav, tf.logical_and(channels == 1, received_rate == rate))
    blank = tf.zeros([samples], tf.float32)
    waveform = tf.cond(
        header_ok, lambda: tf.audio.decode_wav(data, desired_channels=1).audio[:, 0], lambda: blank
    )
    length = tf.shape(waveform)[0]
    wrong = tf.logical_and(header_ok, length != samples)
    problems.add(
        wrong,
        tf.strings.format(
            f"expected {samples} audio samples ({samples / rate:g} s at {rate} Hz), received {{}}",
            length,
        ),
    )
    return tf.cond(wrong, lambda: blank, lambda: tf.ensure_shape(waveform, [samples]))


def _interaction_checks(parsed, problems: _Problems, info: DatasetInfo) -> dict:
    user_id = problems.required(parsed, schema.USER_ID, 0)
    problems.in_range("user_id", user_id, info.num_users)
    target = problems.required(parsed, schema.TARGET, 0)
    problems.in_range("target", target, info.num_items)
    problems.required(parsed, schema.TARGET_TIMESTAMP, 0)
    history = parsed[schema.HISTORY]
    outside = tf.logical_or(history < 0, history >= info.num_items)
    problems.add(
        tf.reduce_any(outside),
        tf.strings.format(
            f"history item id {{}} is not in the catalogue (expected 0 <= id < {info.num_items})",
            tf.concat([tf.boolean_mask(history, outside), [0]], 0)[0],
        ),
    )
    timestamps = parsed[schema.HISTORY_TIMESTAMPS]
    problems.add(
        tf.not_equal(tf.size(timestamps), tf.size(history)),
        tf.strings.format(
            "expected one history timestamp per history item ({}), received {}",
            (tf.size(history), tf.size(timestamps)),
        ),
    )
    recent = tf.cast(history[-info.max_history :], tf.int32)
    padding = tf.fill([info.max_history - tf.size(recent)], PAD_ID)
    return {
        schema.USER_ID: tf.cast(user_id, tf.int32),
        schema.HISTORY: tf.ensure_shape(tf.concat([recent, padding], 0), [info.max_history]),
        schema.TARGET: tf.cast(target, tf.int32),
    }


def _user_checks(parsed, problems: _Problems, info: DatasetInfo) -> dict:
    user_id = problems.required(parsed, schema.USER_ID, 0)
    problems.in_range("user_id", user_id, info.num_users)
    out = {schema.USER_ID: tf.cast(user_id, tf.int32)}
    for attribute in info.user_preferences:
        key = schema.preference_key(attribute)
        values = tf.cast(parsed[key], tf.int32)
        classes = len(info.attributes[attribute])
        outside = tf.logical_or(values < 0, values >= classes)
        problems.add(
            tf.reduce_any(outside),
            tf.strings.format(
                f"{key} value {{}} is out of range (expected 0 <= value < {classes})",
                tf.concat([tf.boolean_mask(values, outside), [0]], 0)[0],
            ),
        )
        out[key] = values
    return out


_ASSERT_TEXT = re.compile(r"assertion failed: \[(.*?)\]\s*(\n|$)", re.S)


def _collect(ds: tf.data.Dataset, what: str) -> dict[str, np.ndarray]:
    """Materialises a small dataset of feature dicts as stacked NumPy arrays."""
    ds = ds.padded_batch(4096, padding_values=_padding_values(ds.element_spec))
    parts: dict[str, list[np.ndarray]] = {}
    try:
        for batch in ds.as_numpy_iterator():
            for key, value in batch.items():
                parts.setdefault(key, []).append(value)
    except tf.errors.InvalidArgumentError as e:
        match = _ASSERT_TEXT.search(e.message)
        message = match.group(1).replace("\\'", "'") if match else e.message
        raise CorruptRecordError(message) from None
    if not parts:
        raise SchemaError(f"Expected at least one of the {what}; received none.")
    out = {}
    for key, values in parts.items():
        width = max(v.shape[1] for v in values) if values[0].ndim == 2 else None
        if width is not None and values[0].dtype != np.uint8:
            values = [
                np.pad(v, ((0, 0), (0, width - v.shape[1])), constant_values=PAD_ID) for v in values
            ]
        out[key] = np.concatenate(values)
    return out


def _padding_values(spec):
    def pad(s):
        if s.dtype == tf.string:
            return tf.constant(b"")
        if s.dtype.is_integer:
            return tf.constant(PAD_ID, s.dtype) if s.dtype != tf.uint8 else tf.constant(0, s.dtype)
        return tf.constant(0, s.dtype)

    return tf.nest.map_structure(pad, spec)
