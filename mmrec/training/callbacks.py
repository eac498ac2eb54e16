"""Training callbacks for the generative models: sample grids as PNG files and TensorBoard images.

Where it sits in the data flow: passed to ``model.fit`` of a `ConditionalGAN` or
`ConditionalVAE` (`SampleGrid`), or of a `ConditionalAudioGenerator`
(`AudioSamples`: WAV files, spectrogram PNGs, TensorBoard audio). The grid uses
*fixed* conditions and *fixed* noise (a fixed seed), so the images of successive
epochs show what training changed, not what the noise changed.
"""

from __future__ import annotations

import importlib.util
import os
import time

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from mmrec.models.image_networks import to_uint8


def image_grid(images, columns=None, padding=2) -> np.ndarray:
    """Tiles images into one uint8 image.

    Args:
        images: ``[rows, columns, H, W, 3]`` (one row per condition) or ``[N, H, W, 3]``;
            uint8, or float in [-1, 1].
        columns: for ``[N, ...]`` input, images per row (default: ``ceil(sqrt(N))``).
        padding: white pixels between images.

    Example:

    >>> image_grid(np.zeros((2, 3, 8, 8, 3), "uint8")).shape
    (22, 32, 3)
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = to_uint8(images)
    if images.ndim == 4:
        count = len(images)
        columns = columns or int(np.ceil(np.sqrt(count)))
        rows = int(np.ceil(count / columns))
        blank = np.zeros((rows * columns - count,) + images.shape[1:], np.uint8)
        images = np.concatenate([images, blank]).reshape((rows, columns) + images.shape[1:])
    if images.ndim != 5:
        raise ValueError(
            "Expected images of shape [rows, columns, H, W, 3] or [N, H, W, 3]. "
            f"Received: shape={images.shape}"
        )
    rows, columns, height, width, channels = images.shape
    grid = np.full(
        (rows * (height + padding) + padding, columns * (width + padding) + padding, channels),
        255,
        np.uint8,
    )
    for r in range(rows):
        for c in range(columns):
            top, left = padding + r * (height + padding), padding + c * (width + padding)
            grid[top : top + height, left : left + width] = images[r, c]
    return grid


def write_png(path, image) -> None:
    """Writes a uint8 ``[H, W, 3]`` image as PNG (via ``tf.io``; no PIL needed)."""
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    tf.io.write_file(os.fspath(path), tf.io.encode_png(np.asarray(image, np.uint8)))


def write_image_summary(name, image, step) -> None:
    """``tf.summary.image(name, image[None], step)``, also without the tensorboard package.

    ``tf.summary.image`` lives in the tensorboard package (not a TensorFlow
    dependency since 2.16-ish); without it, the same event (the image plugin's
    ``[width, height, png]`` string tensor) is written with core ``tf.summary.write``,
    so TensorBoard shows it either way.
    """
    image = np.asarray(image, np.uint8)
    if importlib.util.find_spec("tensorboard") is not None:
        tf.summary.image(name, image[None], step=step)
        return
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "images"
    height, width = image.shape[:2]
    tensor = tf.stack([tf.as_string(width), tf.as_string(height), tf.io.encode_png(image)])
    tf.summary.write(name, tensor, step=step, metadata=metadata)


class SampleGrid(keras.callbacks.Callback):
    """Writes a grid of generated images every ``every`` epochs: a PNG and a TensorBoard image.

    Each row is one condition, each column one noise vector; conditions and noise
    are the same at every epoch (``seed``). Files are
    ``<directory>/epoch_<NNN>.png``; with ``log_dir``, the same grid goes to
    TensorBoard as the image summary ``"samples"`` (step = epoch; see `write_image_summary`).

    Args:
        conditions: what `model.generate` takes for several conditions: a dict of
            lists of attributes, a list of descriptions, or a list of user histories.
        directory: where the PNG files go (``None``: no files).
        num: images per condition.
        log_dir: a TensorBoard log folder (``None``: no summary).
        every: write every this many epochs (the last epoch is always written).
        seed: the noise seed, fixed for the whole run.

    Example:

    >>> callback = SampleGrid({"shape": [0, 4], "colour": [0, 5], "pattern": [0, 0],
    ...                        "size": [2, 2]}, directory="/tmp/grids", num=4)
    """

    def __init__(self, conditions, directory=None, num=8, log_dir=None, every=1, seed=0):
        super().__init__()
        if directory is None and log_dir is None:
            raise ValueError(
                "Expected a directory for PNG files, a log_dir for TensorBoard, or both. "
                "Received: directory=None, log_dir=None"
            )
        if not isinstance(every, int) or every <= 0:
            raise ValueError(f"Expected every to be a positive int. Received: every={every!r}")
        self.conditions = conditions
        self.directory = None if directory is None else os.fspath(directory)
        self.num = num
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.every = every
        self.seed = seed
        self.paths: list[str] = []
        self._writer = None
        self._last_epoch = None

    def grid(self) -> np.ndarray:
        """The current grid (uint8) for the fixed conditions and noise."""
        images = self.model.generate(self.conditions, num=self.num, seed=self.seed, dtype="uint8")
        return image_grid(images)

    def on_train_begin(self, logs=None):
        self._epochs = self.params.get("epochs") if self.params else None

    def on_epoch_end(self, epoch, logs=None):
        last = self._epochs is not None and epoch + 1 == self._epochs
        if (epoch + 1) % self.every and not last:
            return
        self.write(epoch)

    def on_train_end(self, logs=None):
        # A run stopped early (e.g. by a time budget) still leaves its final grid.
        epoch = getattr(self, "_current_epoch", None)
        if epoch is not None and self._last_epoch != epoch:
            self.write(epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def write(self, epoch) -> np.ndarray:
        """Writes the grid for ``epoch`` (0-based) and returns it."""
        grid = self.grid()
        if self.directory is not None:
            path = os.path.join(self.directory, f"epoch_{epoch + 1:03d}.png")
            write_png(path, grid)
            self.paths.append(path)
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                write_image_summary("samples", grid, step=epoch + 1)
            self._writer.flush()
        self._last_epoch = epoch
        return grid


class TimeLimit(keras.callbacks.Callback):
    """Stops ``fit`` once ``minutes`` of training have passed (checked after every batch).

    For benchmarks with a fixed compute budget: ``fit(..., epochs=10_000,
    callbacks=[TimeLimit(20)])`` trains for 20 minutes whatever the machine.
    ``elapsed`` and ``steps`` say what was done.

    Example:

    >>> callback = TimeLimit(minutes=0.5)
    """

    def __init__(self, minutes):
        super().__init__()
        if not minutes > 0:
            raise ValueError(f"Expected minutes > 0. Received: minutes={minutes!r}")
        self.minutes = minutes
        self.elapsed = 0.0
        self.steps = 0

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.elapsed = time.perf_counter() - self._start
        if self.elapsed >= 60.0 * self.minutes:
            self.model.stop_training = True


# === Sounds =====================================================================================


def encode_wav(sound, sample_rate) -> bytes:
    """A mono waveform in [-1, 1] → 16-bit PCM WAV bytes (``tf.audio.encode_wav``)."""
    sound = np.clip(np.asarray(sound, "float32").reshape(-1, 1), -1.0, 1.0)
    return tf.audio.encode_wav(sound, sample_rate).numpy()


def spectrogram_image(spectrogram) -> np.ndarray:
    """A normalised spectrogram ``[frames, bins]`` in [-1, 1] → a uint8 RGB image, time left to
    right, low frequencies at the bottom (grey levels: silence black, loud white)."""
    grey = to_uint8(np.asarray(spectrogram, "float32").T[::-1])
    return np.repeat(grey[..., None], 3, axis=-1)


def write_audio_summary(name, sounds, sample_rate, step) -> None:
    """``tf.summary.audio(name, sounds[..., None], sample_rate, step)``, also without tensorboard.

    As `write_image_summary`: without the tensorboard package the audio plugin's
    event (a ``[k, 2]`` string tensor of WAV bytes and labels, plugin data
    ``AudioPluginData(encoding=WAV)``) is written with core ``tf.summary.write``.
    """
    sounds = np.asarray(sounds, "float32")
    if importlib.util.find_spec("tensorboard") is not None:
        tf.summary.audio(name, sounds[..., None], sample_rate, step=step, max_outputs=len(sounds))
        return
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "audio"
    metadata.plugin_data.content = b"\x10\x0b"  # AudioPluginData: field 2 (encoding) = 11 (WAV)
    wavs = [encode_wav(sound, sample_rate) for sound in sounds]
    tensor = tf.constant([[wav, b""] for wav in wavs], dtype=tf.string)
    tf.summary.write(name, tensor, step=step, metadata=metadata)


def spectrogram_grid(model, sounds) -> np.ndarray:
    """The spectrograms of ``sounds`` ``[rows, columns, samples]`` (through ``model.spectrogram``,
    e.g. a `ConditionalAudioGenerator`'s) as one uint8 image, one row per condition."""
    spectrograms = model.spectrogram(sounds.reshape(-1, sounds.shape[-1])).numpy()
    images = np.stack([spectrogram_image(s) for s in spectrograms])
    return image_grid(images.reshape(sounds.shape[:2] + images.shape[1:]))


def write_sounds(stem, sounds, sample_rate, grid=None) -> list[str]:
    """Writes ``<stem>.wav`` (every sound of ``[rows, columns, samples]``, row by row, 0.1 s of
    silence after each) and, with ``grid`` (see `spectrogram_grid`), ``<stem>.png``."""
    sounds = np.asarray(sounds, "float32")
    sounds = sounds.reshape(-1, sounds.shape[-1])
    silence = np.zeros((len(sounds), sample_rate // 10), "float32")
    folder = os.path.dirname(os.fspath(stem))
    if folder:
        os.makedirs(folder, exist_ok=True)
    tf.io.write_file(f"{stem}.wav", encode_wav(np.concatenate([sounds, silence], 1), sample_rate))
    if grid is None:
        return [f"{stem}.wav"]
    write_png(f"{stem}.png", grid)
    return [f"{stem}.wav", f"{stem}.png"]


class AudioSamples(SampleGrid):
    """Writes generated sounds every ``every`` epochs: a WAV, a spectrogram PNG, TensorBoard.

    For a `ConditionalAudioGenerator`, as `SampleGrid` for the image generators:
    each row is one condition, each column one noise seed, the same at every
    epoch. Files are ``<directory>/epoch_<NNN>.wav`` (every sound, row by row,
    with 0.1 s of silence after each) and ``epoch_<NNN>.png`` (their
    spectrograms, one row per condition, time left to right); with ``log_dir``,
    the sounds go to TensorBoard's audio tab (``"samples"``) and the spectrograms
    to its images (``"spectrograms"``), step = epoch.

    Args: as `SampleGrid`'s (``num`` sounds per condition).

    Example:

    >>> callback = AudioSamples({"shape": [0, 4], "colour": [0, 5], "pattern": [0, 0],
    ...                          "size": [2, 2]}, directory="/tmp/sounds", num=2)
    """

    def sounds(self) -> np.ndarray:
        """The current sounds ``[conditions, num, samples]`` for the fixed conditions and noise."""
        sounds = self.model.generate(self.conditions, num=self.num, seed=self.seed)
        return sounds[None] if sounds.ndim == 2 else sounds

    def grid(self) -> np.ndarray:
        """The spectrograms of the current sounds as one uint8 image."""
        return spectrogram_grid(self.model, self.sounds())

    def write(self, epoch) -> np.ndarray:
        """Writes the sounds and spectrograms of ``epoch`` (0-based); returns the sounds."""
        sounds = self.sounds()
        rate = int(self.model.sample_rate)
        grid = spectrogram_grid(self.model, sounds)
        if self.directory is not None:
            stem = os.path.join(self.directory, f"epoch_{epoch + 1:03d}")
            self.paths += write_sounds(stem, sounds, rate, grid)
        if self.log_dir is not None:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default():
                write_audio_summary(
                    "samples", sounds.reshape(-1, sounds.shape[-1]), rate, epoch + 1
                )
                write_image_summary("spectrograms", grid, step=epoch + 1)
            self._writer.flush()
        self._last_epoch = epoch
        return sounds
