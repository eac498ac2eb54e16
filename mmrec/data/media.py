"""Bringing an imported item's image and audio to the dataset's one format.

Where it sits in the data flow: `mmrec.data.importer` hands each item's image
and audio — a file path relative to the media root, or bytes embedded in the
table — to `ImageFormat` / `AudioFormat`, which return what the item records hold:
a square RGB PNG of one size, and mono 16-bit PCM WAV of one sample rate and
length. A file that is missing or cannot be decoded raises `MediaError`; the
importer adds the row it came from. `convert_item_media` does all of an item's
media at once; the import calls it for every item row, in its own process or on
Beam workers (`mmrec.data.beam`), so both write the same bytes.

Images keep their aspect ratio: they are resized to fit the square and padded
with black (`tf.image.resize_with_pad`), never stretched; an image that already
has the right size keeps its exact pixels.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from mmrec.data.schema import DataError
from mmrec.data.tfrecord import encode_png, encode_wav


class MediaError(DataError):
    """A media file of an import is missing (`missing=True`), unreadable or undecodable."""

    def __init__(self, message: str, *, missing: bool = False):
        super().__init__(message)
        self.missing = missing


def read_media(value, media_root: str | None, what: str) -> bytes:
    """The bytes of a media cell: embedded bytes as they are, a path read from disk."""
    if isinstance(value, (bytes, bytearray)):
        if not value:
            raise MediaError(f"the {what} bytes are empty", missing=True)
        return bytes(value)
    if value is None or not str(value).strip():
        raise MediaError(f"no {what} (the cell is empty)", missing=True)
    path = str(value).strip()
    absolute = os.path.isabs(path) or "://" in path
    full = os.path.join(media_root, path) if media_root and not absolute else path
    if "://" in full:  # gs://, s3://, hdfs://: for Beam workers, through TensorFlow's file systems
        return _read_url(full, what)
    if not os.path.isfile(full):
        raise MediaError(f"{what} file '{full}' does not exist", missing=True)
    try:
        with open(full, "rb") as f:
            return f.read()
    except OSError as e:
        raise MediaError(f"{what} file '{full}' cannot be read ({e.strerror})") from None


def _read_url(url: str, what: str) -> bytes:
    try:
        if not tf.io.gfile.exists(url):
            raise MediaError(f"{what} file '{url}' does not exist", missing=True)
        with tf.io.gfile.GFile(url, "rb") as f:
            return f.read()
    except tf.errors.OpError as e:
        raise MediaError(f"{what} file '{url}' cannot be read ({e.message})") from None


def convert_item_media(cells: dict, columns, options) -> tuple[dict, str | None, str | None]:
    """One item's media cells (`{"image": path or bytes, "audio": ...}`) in the dataset's format.

    `columns` and `options` are the import's `Columns` and `ImportOptions`. Returns
    (the converted bytes by modality, None, None); or, at the first cell that is
    missing or cannot be decoded, (what was converted, the problem for the error
    message, the reason for the count of dropped rows).

    Example:

    >>> from types import SimpleNamespace
    >>> from mmrec.data.tfrecord import encode_png
    >>> columns = SimpleNamespace(image="photo", media_root=None)
    >>> options = SimpleNamespace(image_size=8, audio_sample_rate=16000, audio_seconds=1.0)
    >>> content, _, _ = convert_item_media({"image": encode_png(np.zeros((4, 4, 3)))}, columns,
    ...                                    options)
    >>> tf.io.decode_png(content["image"]).shape
    TensorShape([8, 8, 3])
    >>> convert_item_media({"image": "gone.png"}, columns, options)[1:]
    ("column 'photo': image file 'gone.png' does not exist", 'missing image')
    """
    formats = {
        "image": ImageFormat(options.image_size),
        "audio": AudioFormat(options.audio_sample_rate, options.audio_seconds),
    }
    content = {}
    for modality, value in cells.items():
        try:
            content[modality] = formats[modality](read_media(value, columns.media_root, modality))
        except MediaError as e:
            problem = f"column '{getattr(columns, modality)}': {e}"
            return content, problem, f"{'missing' if e.missing else 'unreadable'} {modality}"
    return content, None, None


@dataclasses.dataclass(frozen=True)
class ImageFormat:
    """Square RGB PNGs of `size` pixels.

    Example:

    >>> from mmrec.data.tfrecord import encode_png
    >>> png = ImageFormat(size=16)(encode_png(np.full((8, 16, 3), 200, np.uint8)))
    >>> tf.io.decode_png(png).shape  # 8 rows of black above and below
    TensorShape([16, 16, 3])
    """

    size: int = 32

    def __post_init__(self):
        if not 8 <= self.size <= 1024:
            raise ValueError(f"Expected image_size in [8, 1024]. Received: image_size={self.size}")

    def __call__(self, data: bytes, what: str = "image") -> bytes:
        try:
            image = tf.io.decode_image(data, channels=3, expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            raise MediaError(
                f"the {what} cannot be decoded (expected PNG, JPEG, GIF or BMP; received "
                f"{len(data)} bytes starting {data[:8]!r})"
            ) from None
        if tuple(image.shape[:2]) != (self.size, self.size):
            resized = tf.image.resize_with_pad(
                tf.cast(image, tf.float32), self.size, self.size, antialias=True
            )
            image = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)
        return encode_png(image.numpy())


@dataclasses.dataclass(frozen=True)
class AudioFormat:
    """Mono 16-bit PCM WAV at `sample_rate`, cut or zero-padded to `seconds`.

    Example:

    >>> wav = AudioFormat(sample_rate=16000, seconds=0.5)(encode_wav(np.zeros(800), 8000))
    >>> tf.audio.decode_wav(wav).audio.shape  # 0.1 s at 8 kHz → 0.5 s at 16 kHz
    TensorShape([8000, 1])
    """

    sample_rate: int = 16000
    seconds: float = 1.0

    def __post_init__(self):
        if self.sample_rate < 1000 or self.seconds <= 0:
            raise ValueError(
                "Expected audio_sample_rate >= 1000 and audio_seconds > 0. Received: "
                f"audio_sample_rate={self.sample_rate}, audio_seconds={self.seconds}"
            )

    @property
    def samples(self) -> int:
        return int(round(self.sample_rate * self.seconds))

    def __call__(self, data: bytes, what: str = "audio") -> bytes:
        try:
            decoded = tf.audio.decode_wav(data)
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            raise MediaError(
                f"the {what} cannot be decoded (expected a 16-bit PCM WAV file; received "
                f"{len(data)} bytes starting {data[:8]!r})"
            ) from None
        waveform = decoded.audio.numpy().mean(axis=1)  # mono: the mean of the channels
        rate = int(decoded.sample_rate.numpy())
        if rate != self.sample_rate and len(waveform):
            # Linear interpolation: enough for the encoders' log-mel features.
            times = np.arange(int(round(len(waveform) * self.sample_rate / rate)))
            waveform = np.interp(
                times * rate / self.sample_rate, np.arange(len(waveform)), waveform
            )
        waveform = np.pad(waveform[: self.samples], (0, max(0, self.samples - len(waveform))))
        return encode_wav(waveform, self.sample_rate)


def convert_in_process(cells: dict[str, list], columns, options):
    """The import's default media step (`mmrec.data.importer.plan_import`): row → what
    `convert_item_media` returns for it, converting the row's files when it is asked."""
    return lambda row: convert_item_media({m: v[row] for m, v in cells.items()}, columns, options)
