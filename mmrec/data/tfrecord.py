"""Writing mmrec datasets: `tf.train.Example` encoders and an atomic, sharded writer.

`DatasetWriter` writes GZIP-compressed TFRecord shards into a temporary sibling
folder and renames it into place only after `dataset.json` is complete, so an
interrupted run never leaves a folder that looks like a finished dataset. The
output is a pure function of the records given to it: the same records produce
byte-identical shards (records are serialised with ``deterministic=True``: plain
``SerializeToString()`` orders a `tf.train.Example`'s feature map differently from
one process to the next). Ids are checked as they are written, so an out-of-range
item or user id is an error that names its record, not a dataset that fails later.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import re
import shutil
import time
import uuid
import wave
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from mmrec.data import schema

_GZIP = tf.io.TFRecordOptions(compression_type="GZIP")
# Held (flock) by the writer of a `<folder>.partial-*` folder for as long as it writes.
WRITER_LOCK = ".writer.lock"
# A partial folder without a lock file is left alone this long: its writer may be
# between creating the folder and locking it.
_UNLOCKED_GRACE_S = 600


def _int64(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.atleast_1d(values).tolist()))


def _float(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.atleast_1d(values).tolist()))


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def item_example(
    item_id: int,
    *,
    image_png: bytes | None = None,
    text: str | None = None,
    audio_wav: bytes | None = None,
    labels: dict[str, int] | None = None,
    popularity: float | None = None,
) -> tf.train.Example:
    """One catalogue item; every modality is optional, as datasets differ in what they hold."""
    feature = {schema.ITEM_ID: _int64(item_id)}
    if image_png is not None:
        feature[schema.IMAGE] = _bytes(image_png)
    if text is not None:
        feature[schema.TEXT] = _bytes(text.encode("utf-8"))
    if audio_wav is not None:
        feature[schema.AUDIO] = _bytes(audio_wav)
    for attribute, value in (labels or {}).items():
        feature[schema.label_key(attribute)] = _int64(value)
    if popularity is not None:
        feature[schema.POPULARITY] = _float(popularity)
    return tf.train.Example(features=tf.train.Features(feature=feature))


def interaction_example(
    user_id: int,
    history: Sequence[int],
    history_timestamps: Sequence[int],
    target: int,
    target_timestamp: int,
) -> tf.train.Example:
    """A user's history (oldest first) and the item they chose next."""
    feature = {
        schema.USER_ID: _int64(user_id),
        schema.HISTORY: _int64(np.asarray(history, dtype=np.int64)),
        schema.HISTORY_TIMESTAMPS: _int64(np.asarray(history_timestamps, dtype=np.int64)),
        schema.TARGET: _int64(target),
        schema.TARGET_TIMESTAMP: _int64(target_timestamp),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def user_example(user_id: int, preferences: dict[str, Sequence[int]]) -> tf.train.Example:
    """A user and, where known, their ground-truth favourite attribute values."""
    feature = {schema.USER_ID: _int64(user_id)}
    for attribute, values in preferences.items():
        feature[schema.preference_key(attribute)] = _int64(np.asarray(values, dtype=np.int64))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W, C] → PNG bytes (TensorFlow's encoder: no PIL in the data path)."""
    return tf.io.encode_png(np.asarray(image, dtype=np.uint8)).numpy()


def encode_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """float waveform in [-1, 1] → mono 16-bit PCM WAV bytes."""
    # tf.audio.decode_wav divides by 32768, so scale by the same factor.
    pcm = np.clip(np.round(np.asarray(samples) * 32768.0), -32768, 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buffer.getvalue()


def serialize(example: tf.train.Example) -> bytes:
    """The record's bytes, the same in every process (feature map in key order)."""
    return example.SerializeToString(deterministic=True)


def shard_name(kind: str, index: int, count: int) -> str:
    return f"{kind}-{index:05d}-of-{count:05d}.tfrecord.gz"


def shard_bounds(total: int, num_shards: int) -> list[int]:
    """Where the shards of `total` records start: shard k holds records [b[k], b[k + 1]).

    Contiguous (not round-robin), so that reading the shards in order gives back the
    written order; at most one shard per record, at least one shard.

    >>> shard_bounds(10, 3)
    [0, 3, 7, 10]
    """
    num_shards = max(1, min(num_shards, total))
    return [round(k * total / num_shards) for k in range(num_shards + 1)]


def write_records(path: str, records: Iterable[bytes]) -> None:
    """Writes serialised records into one GZIP TFRecord file: the bytes of every shard."""
    with tf.io.TFRecordWriter(path, _GZIP) as w:
        for record in records:
            w.write(record)


def check_ids(example: tf.train.Example, limits: dict, where: str) -> dict[str, tuple[int, str]]:
    """Checks a record's item and user ids against `limits` (`{"item": n or None, "user": ...}`).

    Item ids (`item_id`, `target`, `history`) must be in [0, limits["item"]) and user
    ids in [0, limits["user"]), with -1 allowed only as history padding; a limit of
    None checks only the lower bound. Raises `DataError` naming `where`; returns
    "item"/"user" → (the largest id, where it is), for checks once the counts are known.
    """
    features = example.features.feature
    checks = (
        (schema.ITEM_ID, "item", "item_id"),
        (schema.TARGET, "item", "target item"),
        (schema.HISTORY, "item", "history item"),
        (schema.USER_ID, "user", "user_id"),
    )
    largest = {}
    for key, what, name in checks:
        if key not in features:
            continue
        values = features[key].int64_list.value
        if not values:
            continue
        low, high = min(values), max(values)
        floor = schema.PAD_ID if key == schema.HISTORY else 0
        limit = limits[what]
        if low < floor or (limit is not None and high >= limit):
            bad = low if low < floor else high
            expected = f"0 <= id < {limit}" if limit is not None else "0 <= id"
            if key == schema.HISTORY:
                expected += f", or {schema.PAD_ID} as padding"
            raise schema.DataError(
                f"{where}: {name} id {bad} is out of range (expected {expected})."
            )
        if high > largest.get(what, (-1, ""))[0]:
            largest[what] = (high, f"{where} ({name})")
    return largest


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DatasetWriter:
    """Writes a dataset folder atomically.

    Example:

    ```python
    with DatasetWriter("tf_records/mine", overwrite=True) as writer:
        writer.write_shards("items", [item_example(0, text="a red circle")], num_shards=1)
        writer.finish(info)  # a DatasetInfo; writes dataset.json, then renames into place
    ```

    While it writes, the writer holds an exclusive lock (`flock`) on `WRITER_LOCK` in
    its partial folder. A writer that is killed (SIGKILL, a crash of the machine)
    cannot clean up; the next writer of the same folder removes its partial folder,
    whose lock nobody holds any more (`remove_stale_partials`).

    Ids are checked at write time: item ids (`item_id`, `target`, `history`) must be
    in [0, num_items) and user ids in [0, num_users), with -1 allowed only as history
    padding. With `num_items` / `num_users` given the first bad record stops the
    write; otherwise the largest ids are checked against `info` in `finish`. Either
    way the error names the record, and no dataset is left behind.
    """

    def __init__(
        self,
        folder: str,
        *,
        overwrite: bool = False,
        progress: bool = True,
        num_items: int | None = None,
        num_users: int | None = None,
    ):
        self.folder = os.path.abspath(folder)
        if os.path.exists(self.folder) and not overwrite:
            raise FileExistsError(
                f"'{folder}' already exists. Pass overwrite=True (CLI: --overwrite) to replace it."
            )
        self.overwrite = overwrite
        self.progress = progress
        self.tmp = f"{self.folder}.partial-{uuid.uuid4().hex[:8]}"
        self.shards: dict[str, list[schema.Shard]] = {}
        self.id_maps: dict[str, str] = {}
        self.checksums: dict[str, str] = {}
        self.limits = {"item": num_items, "user": num_users}
        # "item"/"user" → (largest id written, where), checked against info in finish().
        self._largest: dict[str, tuple[int, str]] = {}
        self._key_counts: dict[str, int] = {}
        self._finished = False

    def __enter__(self) -> DatasetWriter:
        os.makedirs(self.tmp)
        self._lock = open(os.path.join(self.tmp, WRITER_LOCK), "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        remove_stale_partials(self.folder)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or not self._finished:
            self._lock.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    @property
    def path(self) -> str:
        """Where files go while writing (the temporary folder)."""
        return self.tmp

    def write_shards(
        self,
        kind: str,
        examples: Iterable[tf.train.Example],
        num_shards: int,
        total: int | None = None,
    ) -> list[schema.Shard]:
        """Writes `examples` into `num_shards` contiguous shards of `kind`.

        Contiguous (`shard_bounds`) so that shard k holds records [k·n/K, (k+1)·n/K):
        reading shards in order gives back the original order.
        """
        examples = list(examples) if total is None else examples
        total = len(examples) if total is None else total
        bounds = shard_bounds(total, num_shards)
        iterator = iter(examples)
        bar = tqdm(total=total, desc=f"writing {kind}", unit="rec", disable=not self.progress)

        def records(name, count):
            for index in range(count):
                example = next(iterator)
                self._check_ids(example, f"{name}: record {index}")
                bar.update()
                yield serialize(example)

        self.shards[kind] = []
        for k in range(len(bounds) - 1):
            name = shard_name(kind, k, len(bounds) - 1)
            count = bounds[k + 1] - bounds[k]
            write_records(os.path.join(self.tmp, name), records(name, count))
            self.add_shard(kind, name, count)
        bar.close()
        return self.shards[kind]

    def add_shard(self, kind: str, name: str, records: int) -> schema.Shard:
        """Lists shard file `name` of `kind`, already in `path` (written elsewhere, e.g. by
        the Beam import's workers, with `write_records`), with its checksum."""
        shard = schema.Shard(
            file=name, records=records, sha256=_sha256(os.path.join(self.tmp, name))
        )
        self.shards.setdefault(kind, []).append(shard)
        return shard

    def write_keys(self, kind: str, keys: Sequence[str]) -> str:
        """Writes an id map: line i of `item_keys.txt` / `user_keys.txt` is the key of id i.

        Keys are non-empty strings without line breaks, each used once.
        """
        if kind not in schema.ID_MAP_FILES:
            raise ValueError(
                f"Expected kind to be one of {sorted(schema.ID_MAP_FILES)}. Received: {kind!r}"
            )
        seen = set()
        for i, key in enumerate(keys):
            where = f"{kind[:-1]} key of id {i} ({key!r})"
            if not isinstance(key, str) or not key:
                raise schema.DataError(f"{where}: expected a non-empty string.")
            if key.splitlines() != [key]:
                raise schema.DataError(
                    f"{where}: keys must not contain line breaks (the id map stores one per line)."
                )
            if key in seen:
                raise schema.DataError(f"{where}: the key is used twice; keys must be unique.")
            seen.add(key)
        name = schema.ID_MAP_FILES[kind]
        path = os.path.join(self.tmp, name)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("".join(f"{key}\n" for key in keys))
        self.id_maps[kind] = name
        self.checksums[name] = _sha256(path)
        self._key_counts[kind] = len(seen)
        return path

    def finish(self, info: schema.DatasetInfo) -> str:
        """Checks ids and key counts against `info`, writes `dataset.json`, moves into place."""
        limits = {"item": info.num_items, "user": info.num_users}
        for what, (largest, where) in self._largest.items():
            if largest >= limits[what]:
                raise schema.DataError(
                    f"{where}: {what} id {largest} is out of range (expected 0 <= id < "
                    f"{limits[what]}, the dataset's num_{what}s)."
                )
        counts = {"items": info.num_items, "users": info.num_users}
        for kind, count in self._key_counts.items():
            if count != counts[kind]:
                raise schema.DataError(
                    f"{schema.ID_MAP_FILES[kind]}: expected one key per {kind[:-1]} "
                    f"({counts[kind]}). Received: {count} keys."
                )
        info.shards = dict(self.shards)
        info.id_maps = dict(self.id_maps)
        info.checksums = {**info.checksums, **self.checksums}
        info.write(self.tmp)
        os.remove(os.path.join(self.tmp, WRITER_LOCK))  # not part of the dataset
        self._lock.close()
        if os.path.exists(self.folder):
            old = f"{self.folder}.old-{uuid.uuid4().hex[:8]}"
            os.rename(self.folder, old)
            os.rename(self.tmp, self.folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(self.tmp, self.folder)
        self._finished = True
        return self.folder

    def _check_ids(self, example: tf.train.Example, where: str) -> None:
        for what, (high, at) in check_ids(example, self.limits, where).items():
            if high > self._largest.get(what, (-1, ""))[0]:
                self._largest[what] = (high, at)


def remove_stale_partials(folder: str) -> list[str]:
    """Removes what killed writers of `folder` left behind; returns what it removed.

    A `<folder>.partial-*` folder is stale when nobody holds its `WRITER_LOCK` (its
    writer is gone: the lock dies with the process), or when it has no lock file and
    is older than ten minutes. A `<folder>.old-*` folder (a writer killed between the
    two renames of `finish`, the old dataset already replaced) is stale after ten minutes.
    """
    parent, name = os.path.split(os.path.abspath(folder))
    pattern = re.compile(re.escape(name) + r"\.(partial|old)-[0-9a-f]{8}")
    removed = []
    for entry in sorted(os.listdir(parent)):
        path = os.path.join(parent, entry)
        match = pattern.fullmatch(entry)
        if not match or not os.path.isdir(path):
            continue
        lock = os.path.join(path, WRITER_LOCK)
        if match.group(1) == "partial" and os.path.exists(lock):
            stale = not _is_locked(lock)
        else:
            stale = time.time() - os.path.getmtime(path) > _UNLOCKED_GRACE_S
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _is_locked(path: str) -> bool:
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False  # closing the file releases the lock
    except FileNotFoundError:  # its writer just finished
        return True
