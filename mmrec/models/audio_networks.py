"""The audio networks of `ConditionalAudioGenerator`: spectrogram generator (decoder) and encoder.

Where they sit in the data flow: a conditioning (`mmrec.models.conditioning`)
turns what a sound is asked to be into one conditioning vector; the
`SpectrogramGenerator` (the cVAE's decoder) maps a latent code plus that
vector to a log-magnitude spectrogram in [-1, 1] (`mmrec.models.spectrogram`
turns it into a waveform); the `SpectrogramEncoder` maps a real spectrogram plus
that vector to the Gaussian posterior over latent codes.

Both treat a spectrogram ``[B, frames, bins]`` as a sequence of frames whose
channels are the frequency bins, and convolve along time only (1-D
convolutions). A sound of the shapes benchmark is a pitched tone whose spectrum
is the same in every frame and whose loudness pulses in time: the frequency
axis needs no translation invariance (a harmonic at 440 Hz is not a shifted
220 Hz one), the time axis does (a pulse is a pulse wherever it is). And a
1-D network over 64 frames costs a fraction of a 2-D one over the 64 × 257
time-frequency plane, which matters on a CPU.

All networks use `keras.ops` only (no TensorFlow import: they run under any
Keras backend), survive `.keras` save/load with their dtype policy, and return
float32 outputs under every policy.
"""

from __future__ import annotations

import keras
from keras import ops

from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.models.attributes import check_positive_int
from mmrec.models.image_networks import ConditionalBatchNormalization

DEFAULT_GENERATOR_FILTERS = (128, 128, 64, 64, 64)
DEFAULT_ENCODER_FILTERS = (64, 128, 128)


def check_filters(filters, name) -> tuple[int, ...]:
    """``filters`` as a non-empty tuple of positive ints (a `ValueError` otherwise)."""
    filters = tuple(filters)
    if not filters or not all(
        isinstance(f, int) and not isinstance(f, bool) and f > 0 for f in filters
    ):
        raise ValueError(f"Expected {name} to be positive ints. Received: {name}={filters!r}")
    return filters


@keras.saving.register_keras_serializable(package="mmrec")
class SpectrogramGenerator(keras.Model):
    """Conditional generator of log-magnitude spectrograms: latent + condition → ``[B, T, F]``.

    ``concat(noise, condition)`` → dense → ``[T / 2^(n-1), filters[0]]`` → one
    transposed 1-D convolution (kernel 4, stride 2; the last one's frames cut to
    ``num_frames``) per further entry of
    ``filters``, each followed by conditional batch normalisation (scale and
    shift from the condition, as in the image `Generator`) and ReLU → a 1-D
    convolution to ``num_bins`` channels → tanh (float32 under every policy).

    Inputs: ``{"noise": [B, latent_dim], "condition": [B, condition_dim]}``.
    Output: ``[B, num_frames, num_bins]`` float32 in [-1, 1] (a normalised
    log-magnitude spectrogram, see `mmrec.models.spectrogram.Spectrogram`).

    Args:
        num_frames: time frames of the spectrogram.
        num_bins: frequency bins (``fft_length // 2 + 1``).
        condition_dim: width of the conditioning vector.
        latent_dim: width of the latent (noise) vector.
        filters: channels per time resolution, from the coarsest up (``None``:
            ``(128, 128, 64, 64, 64)``).
        dtype: the dtype policy of every layer but the float32 output (``None``:
            the global policy).

    Example:

    >>> generator = SpectrogramGenerator(16, 33, condition_dim=8, latent_dim=4, filters=(8, 8, 8))
    >>> spectrograms = generator({"noise": np.zeros((2, 4)), "condition": np.ones((2, 8))})
    >>> tuple(spectrograms.shape), keras.backend.standardize_dtype(spectrograms.dtype)
    ((2, 16, 33), 'float32')
    """

    def __init__(
        self,
        num_frames=64,
        num_bins=257,
        condition_dim=128,
        latent_dim=64,
        filters=None,
        dtype=None,
        **kwargs,
    ):
        filters = check_filters(
            DEFAULT_GENERATOR_FILTERS if filters is None else filters, "filters"
        )
        for name, value in (
            ("num_frames", num_frames),
            ("num_bins", num_bins),
            ("condition_dim", condition_dim),
            ("latent_dim", latent_dim),
        ):
            check_positive_int(name, value)
        policy = resolve_policy(dtype)
        # The coarsest resolution, doubled once per further entry of filters (and cut to
        # num_frames at the end when that is not a multiple of the doubling).
        start = -(-num_frames // 2 ** (len(filters) - 1))

        # === Layers ===
        self.inputs_concat = keras.layers.Concatenate(name="inputs_concat", dtype=policy)
        self.stem = keras.layers.Dense(
            start * filters[0], use_bias=False, name="stem", dtype=policy
        )
        self.stem_reshape = keras.layers.Reshape(
            (start, filters[0]), name="stem_reshape", dtype=policy
        )
        self.norms = [
            ConditionalBatchNormalization(name=f"norm{i}", dtype=policy)
            for i in range(len(filters))
        ]
        self.upsamples = [
            keras.layers.Conv1DTranspose(
                f, 4, strides=2, padding="same", use_bias=False, name=f"up{i + 1}", dtype=policy
            )
            for i, f in enumerate(filters[1:])
        ]
        self.to_bins = keras.layers.Conv1D(
            num_bins, 3, padding="same", name="to_bins", dtype=policy
        )
        self.tanh = keras.layers.Activation("tanh", dtype="float32", name="spectrogram")

        # === Functional Model ===
        noise = keras.Input(shape=(latent_dim,), dtype="float32", name="noise")
        condition = keras.Input(shape=(condition_dim,), dtype="float32", name="condition")
        x = self.stem_reshape(self.stem(self.inputs_concat([noise, condition])))
        x = ops.relu(self.norms[0]([x, condition]))
        for upsample, norm in zip(self.upsamples, self.norms[1:]):
            x = ops.relu(norm([upsample(x), condition]))
        outputs = self.tanh(self.to_bins(x[:, :num_frames]))
        super().__init__(inputs={"noise": noise, "condition": condition}, outputs=outputs, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.num_frames = num_frames
        self.num_bins = num_bins
        self.condition_dim = condition_dim
        self.latent_dim = latent_dim
        self.filters = filters

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_frames": self.num_frames,
            "num_bins": self.num_bins,
            "condition_dim": self.condition_dim,
            "latent_dim": self.latent_dim,
            "filters": list(self.filters),
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="mmrec")
class SpectrogramEncoder(keras.Model):
    """The cVAE's encoder: a spectrogram and its conditioning vector → a Gaussian posterior.

    Spectrogram ``[B, T, F]`` in [-1, 1] → 1-D convolutions along time (kernel 4,
    stride 2, LeakyReLU) → flatten, concatenated with the condition → dense →
    ``z_mean`` and ``z_log_var`` (float32, ``[B, latent_dim]``; the log-variance
    layer starts at zero, so the posterior starts as the prior's width).

    Inputs: ``{"spectrogram": [B, num_frames, num_bins], "condition": [B, condition_dim]}``.

    Args:
        num_frames: time frames of the spectrogram.
        num_bins: frequency bins.
        condition_dim: width of the conditioning vector.
        latent_dim: width of the latent code.
        filters: channels of the strided convolutions (``None``: ``(64, 128, 128)``).
        hidden_dim: width of the dense layer before the two heads.
        dtype: the dtype policy of every layer but the float32 outputs (``None``:
            the global policy).

    Example:

    >>> encoder = SpectrogramEncoder(16, 33, condition_dim=8, latent_dim=4, filters=(8, 8))
    >>> z_mean, z_log_var = encoder({"spectrogram": np.zeros((2, 16, 33)),
    ...                              "condition": np.zeros((2, 8))})
    >>> tuple(z_mean.shape), tuple(z_log_var.shape)
    ((2, 4), (2, 4))
    """

    def __init__(
        self,
        num_frames=64,
        num_bins=257,
        condition_dim=128,
        latent_dim=64,
        filters=None,
        hidden_dim=256,
        dtype=None,
        **kwargs,
    ):
        filters = check_filters(DEFAULT_ENCODER_FILTERS if filters is None else filters, "filters")
        for name, value in (
            ("num_frames", num_frames),
            ("num_bins", num_bins),
            ("condition_dim", condition_dim),
            ("latent_dim", latent_dim),
            ("hidden_dim", hidden_dim),
        ):
            check_positive_int(name, value)
        policy = resolve_policy(dtype)

        # === Layers ===
        self.convs = []
        for i, f in enumerate(filters):
            self.convs += [
                keras.layers.Conv1D(f, 4, strides=2, padding="same", name=f"conv{i}", dtype=policy),
                keras.layers.LeakyReLU(0.2, name=f"conv{i}_act", dtype=policy),
            ]
        self.flatten = keras.layers.Flatten(name="flatten", dtype=policy)
        self.concat = keras.layers.Concatenate(name="concat", dtype=policy)
        self.hidden = keras.layers.Dense(hidden_dim, name="hidden", dtype=policy)
        self.hidden_act = keras.layers.LeakyReLU(0.2, name="hidden_act", dtype=policy)
        self.z_mean = keras.layers.Dense(latent_dim, name="z_mean", dtype="float32")
        self.z_log_var = keras.layers.Dense(
            latent_dim, kernel_initializer="zeros", name="z_log_var", dtype="float32"
        )

        # === Functional Model ===
        spectrogram = keras.Input((num_frames, num_bins), name="spectrogram")
        condition = keras.Input(shape=(condition_dim,), dtype="float32", name="condition")
        x = spectrogram
        for layer in self.convs:
            x = layer(x)
        x = self.hidden_act(self.hidden(self.concat([self.flatten(x), condition])))
        outputs = (self.z_mean(x), self.z_log_var(x))
        inputs = {"spectrogram": spectrogram, "condition": condition}
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.num_frames = num_frames
        self.num_bins = num_bins
        self.condition_dim = condition_dim
        self.latent_dim = latent_dim
        self.filters = filters
        self.hidden_dim = hidden_dim

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_frames": self.num_frames,
            "num_bins": self.num_bins,
            "condition_dim": self.condition_dim,
            "latent_dim": self.latent_dim,
            "filters": list(self.filters),
            "hidden_dim": self.hidden_dim,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
