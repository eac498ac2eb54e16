"""Writing mmrec datasets: `tf.train.Example` encoders and an atomic, sharded writer.

`DatasetWriter` writes GZIP-compressed TFRecord shards into a temporary sibling
folder and renames it into place only after `dataset.json` is complete, so an
interrupted run never leaves a folder that looks like a finished dataset. The
output is a pure function of the records given to it: the same records produce
byte-identical shards.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
import wave
from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from mmrec.data import schema

_GZIP = tf.io.TFRecordOptions(compression_type="GZIP")


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


def shard_name(kind: str, index: int, count: int) -> str:
    return f"{kind}-{index:05d}-of-{count:05d}.tfrecord.gz"


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
    """

    def __init__(self, folder: str, *, overwrite: bool = False, progress: bool = True):
        self.folder = os.path.abspath(folder)
        if os.path.exists(self.folder) and not overwrite:
            raise FileExistsError(
                f"'{folder}' already exists. Pass overwrite=True (CLI: --overwrite) to replace it."
            )
        self.overwrite = overwrite
        self.progress = progress
        self.tmp = f"{self.folder}.partial-{uuid.uuid4().hex[:8]}"
        self.shards: dict[str, list[schema.Shard]] = {}
        self._finished = False

    def __enter__(self) -> DatasetWriter:
        os.makedirs(self.tmp)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or not self._finished:
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

        Contiguous (not round-robin) so that shard k holds records [k·n/K, (k+1)·n/K):
        reading shards in order gives back the original order.
        """
        examples = list(examples) if total is None else examples
        total = len(examples) if total is None else total
        num_shards = max(1, min(num_shards, total))
        bounds = [round(k * total / num_shards) for k in range(num_shards + 1)]
        shards, iterator = [], iter(examples)
        bar = tqdm(total=total, desc=f"writing {kind}", unit="rec", disable=not self.progress)
        for k in range(num_shards):
            name = shard_name(kind, k, num_shards)
            path = os.path.join(self.tmp, name)
            count = bounds[k + 1] - bounds[k]
            with tf.io.TFRecordWriter(path, _GZIP) as w:
                for _ in range(count):
                    w.write(next(iterator).SerializeToString())
                    bar.update()
            shards.append(schema.Shard(file=name, records=count, sha256=_sha256(path)))
        bar.close()
        self.shards[kind] = shards
        return shards

    def finish(self, info: schema.DatasetInfo) -> str:
        """Writes `dataset.json`, then moves the finished folder into place."""
        info.shards = dict(self.shards)
        info.write(self.tmp)
        if os.path.exists(self.folder):
            old = f"{self.folder}.old-{uuid.uuid4().hex[:8]}"
            os.rename(self.folder, old)
            os.rename(self.tmp, self.folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(self.tmp, self.folder)
        self._finished = True
        return self.folder
