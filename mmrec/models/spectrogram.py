"""Waveforms ↔ log-magnitude spectrograms: the STFT the audio generator learns, and its inverse.

Where it sits in the data flow: `ConditionalAudioGenerator` turns the real sounds
of its training batches into spectrograms (`Spectrogram.__call__`), its
networks (`mmrec.models.audio_networks`) generate spectrograms, and
`Spectrogram.invert` turns those back into waveforms with the fast Griffin-Lim
algorithm. Both directions are ``tf.signal`` (``stft``, ``inverse_stft``), so
they run eagerly, in ``tf.data``, in a training step and in an exported
SavedModel (TF Serving links these ops). This is signal processing, not a
network: it has no weights and imports TensorFlow.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from mmrec.models.attributes import check_positive_int

MAGNITUDE_FLOOR = 1e-3  # added to magnitudes before the log: the quietest level represented


def spectral_convergence(reference, estimate) -> np.ndarray:
    """``‖|X| − |Y|‖_F / ‖|X|‖_F`` per row, for two magnitude spectrograms ``[B, T, F]``.

    The usual measure of a phase reconstruction (0: the magnitudes agree).

    Example:

    >>> spectral_convergence(np.ones((1, 2, 3)), np.ones((1, 2, 3)) * 1.5).round(3)
    array([0.5])
    """
    reference = np.asarray(reference, "float64")
    estimate = np.asarray(estimate, "float64")
    axes = tuple(range(1, reference.ndim))
    error = np.sqrt(np.sum((reference - estimate) ** 2, axis=axes))
    return error / np.maximum(np.sqrt(np.sum(reference**2, axis=axes)), 1e-12)


@keras.saving.register_keras_serializable(package="mmrec")
class Spectrogram(keras.layers.Layer):
    """Waveforms ``[B, num_samples]`` → normalised log-magnitude spectrograms, and back.

    The forward transform is a centred STFT (``tf.signal.stft``, periodic Hann
    window of ``frame_length``, hop ``frame_step``, FFT of the next power of two)
    whose magnitudes ``m`` become ``log(m + 1e-3)`` mapped linearly from
    ``[log 1e-3, log(frame_length / 4)]`` (silence … a full-scale sine) to
    [-1, 1], the range of a generator's tanh output.

    `invert` is the fast Griffin-Lim algorithm (Perraudin, Balazs & Søndergaard
    2013: Griffin-Lim with momentum 0.99): starting from zero phase, it
    alternates between the consistent signal closest to the magnitudes with the
    current phases (the least-squares inverse STFT) and that signal's phases.
    Zero-phase initialisation keeps it deterministic: a spectrogram always
    becomes the same waveform, so one seed gives one sound everywhere.

    Args:
        num_samples: samples of a waveform (e.g. 8000: 0.5 s at 16 kHz).
        sample_rate: samples per second (kept for writing WAV files).
        frame_step: hop between frames in samples; ``num_frames = ceil(num_samples /
            frame_step)``.
        frame_length: window length in samples (``None``: ``4 * frame_step``, 75% overlap).
        iterations: Griffin-Lim iterations of `invert`.

    Example:

    >>> spectrogram = Spectrogram(num_samples=1600, sample_rate=16000, frame_step=50, iterations=8)
    >>> waves = np.sin(np.arange(1600) * 0.3)[None].astype("float32") * 0.5
    >>> s = spectrogram(waves)
    >>> tuple(s.shape), spectrogram.num_frames, spectrogram.num_bins
    ((1, 32, 129), 32, 129)
    >>> tuple(spectrogram.invert(s).shape)
    (1, 1600)
    """

    def __init__(
        self,
        num_samples=8000,
        sample_rate=16000,
        frame_step=125,
        frame_length=None,
        iterations=32,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        frame_length = 4 * frame_step if frame_length is None else frame_length
        for name, value in (
            ("num_samples", num_samples),
            ("sample_rate", sample_rate),
            ("frame_step", frame_step),
            ("frame_length", frame_length),
            ("iterations", iterations),
        ):
            check_positive_int(name, value)
        if not frame_step <= frame_length <= num_samples:
            raise ValueError(
                "Expected frame_step <= frame_length <= num_samples. Received: "
                f"frame_step={frame_step}, frame_length={frame_length}, num_samples={num_samples}"
            )
        self.num_samples = num_samples
        self.sample_rate = sample_rate
        self.frame_step = frame_step
        self.frame_length = frame_length
        self.iterations = iterations
        self.fft_length = 2 ** math.ceil(math.log2(frame_length))
        self.num_frames = math.ceil(num_samples / frame_step)
        self.num_bins = self.fft_length // 2 + 1
        # Centred frames: frame t is centred on sample t * frame_step.
        self.pad_left = frame_length // 2
        padded = frame_length + (self.num_frames - 1) * frame_step
        self.pad_right = padded - self.pad_left - num_samples
        self.log_floor = math.log(MAGNITUDE_FLOOR)
        self.log_ceiling = math.log(frame_length / 4)
        # The least-squares inverse STFT divides the overlap-added windowed frames by
        # the overlap-added squared window (a constant of the geometry).
        window = np.asarray(tf.signal.hann_window(frame_length), "float64")
        total = np.zeros(padded)
        for t in range(self.num_frames):
            total[t * frame_step : t * frame_step + frame_length] += window**2
        self._window_sum = np.maximum(total, 1e-3).astype("float32")

    # --- waveforms → spectrograms ----------------------------------------------------------

    def stft(self, waveforms):
        """Complex STFT ``[B, num_frames, num_bins]`` of ``[B, num_samples]`` waveforms."""
        waveforms = tf.cast(waveforms, tf.float32)
        padded = tf.pad(waveforms, [[0, 0], [self.pad_left, self.pad_right]])
        return tf.signal.stft(padded, self.frame_length, self.frame_step, self.fft_length)

    def normalize(self, magnitudes):
        """Linear magnitudes → log magnitudes in [-1, 1]."""
        logs = tf.math.log(tf.cast(magnitudes, tf.float32) + MAGNITUDE_FLOOR)
        scaled = 2.0 * (logs - self.log_floor) / (self.log_ceiling - self.log_floor) - 1.0
        return tf.clip_by_value(scaled, -1.0, 1.0)

    def magnitudes(self, spectrograms):
        """Normalised spectrograms in [-1, 1] → linear magnitudes (the inverse of `normalize`)."""
        scaled = (tf.cast(spectrograms, tf.float32) + 1.0) / 2.0
        logs = self.log_floor + scaled * (self.log_ceiling - self.log_floor)
        return tf.maximum(tf.exp(logs) - MAGNITUDE_FLOOR, 0.0)

    def call(self, waveforms):
        return self.normalize(tf.abs(self.stft(waveforms)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_frames, self.num_bins)

    # --- spectrograms → waveforms ----------------------------------------------------------

    def istft(self, stfts):
        """The least-squares inverse of `stft`: complex ``[B, T, F]`` → ``[B, num_samples]``."""
        frames = tf.signal.inverse_stft(
            stfts,
            self.frame_length,
            self.frame_step,
            self.fft_length,
            window_fn=tf.signal.hann_window,
        )
        waveforms = frames / self._window_sum
        return waveforms[:, self.pad_left : self.pad_left + self.num_samples]

    def invert(self, spectrograms, iterations=None):
        """Normalised spectrograms ``[B, T, F]`` → waveforms ``[B, num_samples]`` in [-1, 1].

        Fast Griffin-Lim from zero phase (see the class doc); ``iterations``
        (``None``: the layer's) trades time for fidelity. Graph-friendly (a
        ``tf.while_loop``), so an exported signature runs it.
        """
        iterations = self.iterations if iterations is None else int(iterations)
        magnitudes = tf.cast(self.magnitudes(spectrograms), tf.complex64)
        momentum = 0.99 / (1.0 + 0.99)

        def unit(z):
            return z / tf.cast(tf.maximum(tf.abs(z), 1e-8), tf.complex64)

        def step(i, phases, previous):
            rebuilt = self.stft(self.istft(magnitudes * phases))
            return i + 1, unit(rebuilt - momentum * previous), rebuilt

        _, phases, _ = tf.while_loop(
            lambda i, *_: i < iterations,
            step,
            (tf.constant(0), tf.ones_like(magnitudes), tf.zeros_like(magnitudes)),
        )
        return tf.clip_by_value(self.istft(magnitudes * phases), -1.0, 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_samples": self.num_samples,
                "sample_rate": self.sample_rate,
                "frame_step": self.frame_step,
                "frame_length": self.frame_length,
                "iterations": self.iterations,
            }
        )
        return config
