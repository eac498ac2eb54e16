"""Image and audio preprocessing layers: pixels and waveforms → what the encoders read.

Where it sits in the data flow: after ``mmrec.data`` has decoded a feature dict
(uint8 images, float32 waveforms) and before the per-modality encoders, which
include these layers as their first step. Everything is ``keras.ops``, so the
layers run under any Keras backend; under TensorFlow they also run inside
``tf.data`` and inside an exported SavedModel. Text preprocessing needs
tensorflow-text and lives in `mmrec.layers.preprocessing`.
"""

import math

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="mmrec")
class ImagePreprocessor(keras.layers.Layer):
    """Scales images to ``[-1, 1]`` and resizes them to ``image_size``.

    Input: ``[B, H, W, 3]`` images, ``uint8`` or float with values in ``[0, 255]``.
    Output: ``[B, image_size, image_size, 3]`` float32 in ``[-1, 1]`` (float32
    also under mixed precision; the next layer casts).

    Args:
        image_size: target side length (int) or ``(height, width)``; ``None``
            keeps the input size. Resizing is bilinear with anti-aliasing and is
            skipped when the input already has the target size.

    Example:

    >>> images = np.random.randint(0, 256, size=(2, 32, 32, 3), dtype="uint8")
    >>> tuple(ImagePreprocessor(image_size=16)(images).shape)
    (2, 16, 16, 3)
    """

    def __init__(self, image_size=None, **kwargs):
        # No autocast: the scaling is done in float32 whatever the policy.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if image_size is not None:
            if isinstance(image_size, int):
                image_size = (image_size, image_size)
            image_size = tuple(image_size)
            if len(image_size) != 2 or not all(isinstance(s, int) and s > 0 for s in image_size):
                raise ValueError(
                    "Expected image_size to be None, a positive int or a pair of positive "
                    f"ints. Received: image_size={image_size}"
                )
        self.image_size = image_size

    def call(self, images):
        images = ops.cast(images, "float32")
        if self.image_size is not None and tuple(images.shape[1:3]) != self.image_size:
            images = ops.image.resize(
                images, self.image_size, interpolation="bilinear", antialias=True
            )
            # Resampling can round a hair past the input range.
            images = ops.clip(images, 0.0, 255.0)
        return images / 127.5 - 1.0

    def compute_output_shape(self, input_shape):
        if self.image_size is None:
            return tuple(input_shape)
        return (input_shape[0], *self.image_size, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"image_size": self.image_size})
        return config


def _hertz_to_mel(frequencies):
    """HTK's mel scale, as ``tf.signal`` and most speech toolkits use it."""
    return 1127.0 * np.log1p(np.asarray(frequencies, "float64") / 700.0)


def mel_weight_matrix(num_mel_bins, num_spectrogram_bins, sample_rate, lower_hertz, upper_hertz):
    """``[num_spectrogram_bins, num_mel_bins]`` triangular mel filters (numpy, float32).

    The matrix of ``tf.signal.linear_to_mel_weight_matrix``: triangles evenly
    spaced on the HTK mel scale between ``lower_hertz`` and ``upper_hertz``,
    peak 1, and the DC bin weighted 0.
    """
    # Linear frequencies of the spectrogram bins, DC excluded (it gets no weight).
    bins_mel = _hertz_to_mel(np.linspace(0.0, sample_rate / 2, num_spectrogram_bins)[1:])[:, None]
    edges = np.linspace(_hertz_to_mel(lower_hertz), _hertz_to_mel(upper_hertz), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel - lower) / (center - lower)
    falling = (upper - bins_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.pad(weights, [[1, 0], [0, 0]]).astype("float32")


@keras.saving.register_keras_serializable(package="mmrec")
class AudioPreprocessor(keras.layers.Layer):
    """Turns mono waveforms into log-mel spectrograms.

    Input: ``[B, samples]`` float32 waveform in ``[-1, 1]`` at ``sample_rate``.
    Output: ``[B, frames, num_mel_bins]`` float32 with
    ``frames = ceil(samples / frame_step)`` (the last frame is zero-padded), so
    0.5 s at 16 kHz with the defaults gives ``[B, 50, 64]``. Values are
    ``log(mel_power + 1e-6)``.

    The short-time Fourier transform is that of ``tf.signal.stft(...,
    pad_end=True)``: periodic Hann windows of ``frame_length`` samples every
    ``frame_step``, each zero-padded to the next power of two for the FFT. It
    is written with ``keras.ops`` (framing, ``rfft``, a constant mel matrix)
    so that it runs under every backend.

    Args:
        sample_rate: sampling rate of the waveform in Hz.
        frame_length: window length in samples (default 25 ms at 16 kHz).
        frame_step: hop between windows in samples (default 10 ms at 16 kHz).
        num_mel_bins: number of mel bands, from 20 Hz to ``sample_rate / 2``.

    Example:

    >>> waves = np.random.uniform(-1, 1, size=(2, 8000)).astype("float32")
    >>> tuple(AudioPreprocessor()(waves).shape)
    (2, 50, 64)
    """

    def __init__(
        self, sample_rate=16000, frame_length=400, frame_step=160, num_mel_bins=64, **kwargs
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        for name, value in [
            ("sample_rate", sample_rate),
            ("frame_length", frame_length),
            ("frame_step", frame_step),
            ("num_mel_bins", num_mel_bins),
        ]:
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Expected {name} to be a positive int. Received: {name}={value}")
        self.sample_rate = sample_rate
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.num_mel_bins = num_mel_bins
        self.fft_length = 2 ** math.ceil(math.log2(frame_length))
        # Constants, not weights: they are part of the graph, like the FFT.
        n = np.arange(frame_length)
        self._window = (0.5 - 0.5 * np.cos(2 * np.pi * n / frame_length)).astype("float32")
        self._mel_matrix = mel_weight_matrix(
            num_mel_bins, self.fft_length // 2 + 1, sample_rate, 20.0, sample_rate / 2
        )

    def call(self, waveforms):
        waveforms = ops.cast(waveforms, "float32")
        num_frames = (ops.shape(waveforms)[-1] + self.frame_step - 1) // self.frame_step
        # frame_length zeros at the end are always enough for the last frame.
        padded = ops.pad(waveforms, [[0, 0], [0, self.frame_length]])
        starts = ops.arange(num_frames, dtype="int32") * self.frame_step
        indices = starts[:, None] + ops.arange(self.frame_length, dtype="int32")[None, :]
        frames = ops.take(padded, indices, axis=-1) * self._window  # [B, frames, frame_length]
        real, imag = ops.rfft(frames, fft_length=self.fft_length)
        power = ops.square(real) + ops.square(imag)
        mel = ops.matmul(power, ops.convert_to_tensor(self._mel_matrix))
        return ops.log(mel + 1e-6)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None if samples is None else math.ceil(samples / self.frame_step)
        return (input_shape[0], frames, self.num_mel_bins)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "frame_length": self.frame_length,
                "frame_step": self.frame_step,
                "num_mel_bins": self.num_mel_bins,
            }
        )
        return config
