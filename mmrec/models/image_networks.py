"""The image networks of the generative models: generator, discriminator, VAE encoder.

Where they sit in the data flow: a conditioning (`mmrec.models.conditioning`)
turns what an image is asked to show into one conditioning vector; the
`Generator` maps noise plus that vector to an image in [-1, 1] (DCGAN-style
transposed convolutions with conditional batch normalisation); the
`Discriminator` scores an image against its attribute labels (projection) and
classifies its attributes (auxiliary classifier heads, AC-GAN style); the
`VAEEncoder` maps an image plus the conditioning vector to a Gaussian posterior.
`ConditionalGAN` and `ConditionalVAE` own the losses and the training steps.

All networks use `keras.ops` only (no TensorFlow import: they build and run
under any Keras backend), survive `.keras` save/load with their dtype policy,
and return float32 outputs under every policy.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.models.attributes import check_attributes, check_positive_int, label_key, num_classes

IMAGE_SIZES = (16, 32, 64)


def default_filters(image_size: int, network: str) -> tuple[int, ...]:
    """Default widths: one entry per resolution, from 4×4 up (generator) or down to 4×4."""
    check_image_size(image_size)
    stages = int(math.log2(image_size // 4))
    if network == "generator":  # 4×4 … image_size: halve the width as the resolution doubles
        return tuple(max(16, 256 >> i) for i in range(stages + 1))
    return tuple(min(256, 32 << i) for i in range(stages))  # image_size/2 … 4×4


def check_image_size(image_size):
    if image_size not in IMAGE_SIZES:
        raise ValueError(
            f"Expected image_size to be one of {IMAGE_SIZES}. Received: image_size={image_size!r}"
        )


def _check_filters(filters, expected_length, network):
    filters = tuple(filters)
    if len(filters) != expected_length or not all(isinstance(f, int) and f > 0 for f in filters):
        raise ValueError(
            f"Expected filters to be {expected_length} positive ints for this {network}'s "
            f"image_size. Received: filters={filters!r}"
        )
    return filters


def check_generator_network(network, role="generator"):
    """Checks that ``network`` can serve as a generator (or VAE decoder); returns it.

    Any functional `keras.Model` does — a `Generator` or a network of your own
    (docs/extending.md) — if it takes ``{"noise": [B, latent_dim], "condition":
    [B, condition_dim]}``, returns images ``[B, image_size, image_size, 3]`` in
    [-1, 1], and has the ``image_size``, ``condition_dim`` and ``latent_dim``
    attributes. It must be registered and configurable (``get_config``), since
    the GAN clones it for its moving average and saves it with the model.
    """
    missing = [a for a in ("image_size", "condition_dim", "latent_dim") if not hasattr(network, a)]
    inputs = getattr(network, "input", None)
    if (
        not isinstance(network, keras.Model)
        or missing
        or not isinstance(inputs, dict)
        or set(inputs) != {"noise", "condition"}
    ):
        raise ValueError(
            f"Expected the {role} to be a functional keras.Model taking {{'noise', 'condition'}} "
            "with image_size, condition_dim and latent_dim attributes (e.g. a Generator). "
            f"Received: {network!r}" + (f" (missing attributes {missing})" if missing else "")
        )
    return network


def to_uint8(images):
    """Images in [-1, 1] → uint8 in [0, 255] (rounded), as a real image would be stored."""
    images = np.asarray(ops.convert_to_numpy(images), dtype="float32")
    return ((images.clip(-1.0, 1.0) + 1.0) * 127.5).round().astype("uint8")


# === Layers ===================================================================================


@keras.saving.register_keras_serializable(package="mmrec")
class ConditionalBatchNormalization(keras.layers.Layer):
    """Batch normalisation whose scale and shift are functions of a conditioning vector.

    ``y = BN(x) * (1 + W_γ c) + W_β c``: the normalisation has no affine
    parameters of its own; two linear maps of the condition ``c`` give a
    per-example, per-channel scale and shift (de Vries et al. 2017, "Modulating
    early visual processing by language"; Miyato & Koyama 2018). Both maps start
    at zero, so the layer starts as plain batch normalisation.

    Call with ``[x, condition]``: ``x`` is ``[B, ..., C]``, ``condition`` ``[B, D]``.

    Args:
        momentum: momentum of the moving statistics.
        epsilon: added to the variance.

    Example:

    >>> layer = ConditionalBatchNormalization()
    >>> x = np.random.normal(size=(4, 8, 8, 16)).astype("float32")
    >>> condition = np.random.normal(size=(4, 10)).astype("float32")
    >>> tuple(layer([x, condition], training=True).shape)
    (4, 8, 8, 16)
    """

    def __init__(self, momentum=0.99, epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape):
        x_shape, condition_shape = input_shape
        channels = x_shape[-1]
        self.norm = keras.layers.BatchNormalization(
            momentum=self.momentum,
            epsilon=self.epsilon,
            center=False,
            scale=False,
            name="norm",
            dtype=self.dtype_policy,
        )
        self.scale = keras.layers.Dense(
            channels, kernel_initializer="zeros", name="scale", dtype=self.dtype_policy
        )
        self.shift = keras.layers.Dense(
            channels, kernel_initializer="zeros", name="shift", dtype=self.dtype_policy
        )
        self.norm.build(x_shape)
        self.scale.build(condition_shape)
        self.shift.build(condition_shape)

    def call(self, inputs, training=None):
        x, condition = inputs
        x = self.norm(x, training=training)
        broadcast = (-1,) + (1,) * (len(x.shape) - 2) + (x.shape[-1],)
        gamma = ops.reshape(1.0 + self.scale(condition), broadcast)
        beta = ops.reshape(self.shift(condition), broadcast)
        return x * ops.cast(gamma, x.dtype) + ops.cast(beta, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "epsilon": self.epsilon})
        return config


@keras.saving.register_keras_serializable(package="mmrec")
class ScaleImages(keras.layers.Layer):
    """Raw pixels (uint8, or float in [0, 255]) → float32 in [-1, 1].

    Real images arrive from the data layer as uint8; every model scales them in its
    own graph, so an exported model takes the same raw pixels.

    Example:

    >>> ops.convert_to_numpy(ScaleImages()(np.array([[[[0, 255, 51]]]], "uint8"))).ravel().tolist()
    [-1.0, 1.0, -0.6000000238418579]
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, images):
        return ops.cast(images, "float32") / 127.5 - 1.0

    def compute_output_shape(self, input_shape):
        return input_shape


# === Networks ===================================================================================


class _ImageNetworkConfig:
    """``get_config``/``from_config`` of the image networks built from
    ``(image_size, condition_dim, latent_dim, filters)``: `Generator`, `VAEEncoder`."""

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_size": self.image_size,
            "condition_dim": self.condition_dim,
            "latent_dim": self.latent_dim,
            "filters": list(self.filters),
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="mmrec")
class Generator(_ImageNetworkConfig, keras.Model):
    """DCGAN-style conditional generator: noise + a conditioning vector → an image in [-1, 1].

    ``concat(noise, condition)`` → dense → ``4×4×filters[0]`` → one transposed
    convolution (4×4, stride 2) per further entry of ``filters``, each followed by
    conditional batch normalisation (scale and shift from the condition) and ReLU
    → a 3×3 convolution to RGB → tanh (float32 output under every policy).

    Inputs: ``{"noise": [B, latent_dim], "condition": [B, condition_dim]}``.
    Output: ``[B, image_size, image_size, 3]`` float32 in [-1, 1].

    Args:
        image_size: 16, 32 or 64.
        condition_dim: width of the conditioning vector.
        latent_dim: width of the noise vector.
        filters: widths from 4×4 up to ``image_size`` (``log2(image_size / 4) + 1``
            entries); ``None`` picks ``default_filters(image_size, "generator")``.
        dtype: the dtype policy of every layer but the float32 output (``None``:
            the global policy); kept in the config, so it survives save/load.

    Example:

    >>> generator = Generator(image_size=16, condition_dim=8, latent_dim=16, filters=(16, 8, 4))
    >>> images = generator({"noise": np.zeros((2, 16)), "condition": np.ones((2, 8))})
    >>> tuple(images.shape), keras.backend.standardize_dtype(images.dtype)
    ((2, 16, 16, 3), 'float32')
    """

    def __init__(
        self, image_size=32, condition_dim=128, latent_dim=64, filters=None, dtype=None, **kwargs
    ):
        check_image_size(image_size)
        check_positive_int("condition_dim", condition_dim)
        check_positive_int("latent_dim", latent_dim)
        stages = int(math.log2(image_size // 4))
        if filters is None:
            filters = default_filters(image_size, "generator")
        filters = _check_filters(filters, stages + 1, "generator")
        policy = resolve_policy(dtype)

        # === Layers ===
        self.inputs_concat = keras.layers.Concatenate(name="inputs_concat", dtype=policy)
        self.stem = keras.layers.Dense(
            4 * 4 * filters[0], use_bias=False, name="stem", dtype=policy
        )
        self.stem_reshape = keras.layers.Reshape(
            (4, 4, filters[0]), name="stem_reshape", dtype=policy
        )
        self.norms = [
            ConditionalBatchNormalization(name=f"norm{i}", dtype=policy) for i in range(stages + 1)
        ]
        self.upsamples = [
            keras.layers.Conv2DTranspose(
                f, 4, strides=2, padding="same", use_bias=False, name=f"up{i + 1}", dtype=policy
            )
            for i, f in enumerate(filters[1:])
        ]
        self.to_rgb = keras.layers.Conv2D(3, 3, padding="same", name="to_rgb", dtype=policy)
        self.tanh = keras.layers.Activation("tanh", dtype="float32", name="image")

        # === Functional Model ===
        noise = keras.Input(shape=(latent_dim,), dtype="float32", name="noise")
        condition = keras.Input(shape=(condition_dim,), dtype="float32", name="condition")
        x = self.stem_reshape(self.stem(self.inputs_concat([noise, condition])))
        x = ops.relu(self.norms[0]([x, condition]))
        for upsample, norm in zip(self.upsamples, self.norms[1:]):
            x = ops.relu(norm([upsample(x), condition]))
        outputs = self.tanh(self.to_rgb(x))
        super().__init__(inputs={"noise": noise, "condition": condition}, outputs=outputs, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.image_size = image_size
        self.condition_dim = condition_dim
        self.latent_dim = latent_dim
        self.filters = filters


def _conv_stack(filters, spectral_norm, prefix, policy):
    """4×4 stride-2 convolutions + LeakyReLU(0.2), one per entry of ``filters``."""
    layers = []
    for i, f in enumerate(filters):
        conv = keras.layers.Conv2D(
            f, 4, strides=2, padding="same", name=f"{prefix}{i}", dtype=policy
        )
        if spectral_norm:
            conv = keras.layers.SpectralNormalization(conv, name=f"{prefix}{i}_sn", dtype=policy)
        layers += [conv, keras.layers.LeakyReLU(0.2, name=f"{prefix}{i}_act", dtype=policy)]
    return layers


@keras.saving.register_keras_serializable(package="mmrec")
class Discriminator(keras.Model):
    """Conditional discriminator: projection on the labels plus auxiliary classifier heads.

    Image in [-1, 1] → 4×4 stride-2 convolutions with LeakyReLU (no batch
    normalisation, so real and fake images can share one batch) → a dense
    feature ``h``. Outputs:

    * ``"logit"`` ``[B, 1]``: ``w·h + Σ_attributes ⟨embed(label), h⟩`` — the
      projection discriminator (Miyato & Koyama 2018), real vs. fake *for these labels*;
    * ``"<attribute>"`` ``[B, C]``: class logits of each attribute — the auxiliary
      classifier (AC-GAN, Odena et al. 2017). `ConditionalGAN` trains them on real
      images only and asks the generator to make its images classified as requested.

    Inputs: ``{"image": float [B, H, W, 3] in [-1, 1], "label_<attribute>": int [B], ...}``.
    All outputs are float32.

    Args:
        image_size: 16, 32 or 64.
        attributes: attribute name → number of classes.
        filters: widths from ``image_size / 2`` down to 4×4 (``log2(image_size / 4)``
            entries); ``None`` picks ``default_filters(image_size, "discriminator")``.
        feature_dim: width of ``h``.
        spectral_norm: wrap the convolutions in spectral normalisation.
        dtype: the dtype policy of the convolutions and the feature layer (``None``:
            the global policy); heads and outputs are float32.

    Example:

    >>> discriminator = Discriminator(16, {"shape": 8, "colour": 8}, filters=(8, 16))
    >>> outputs = discriminator({"image": np.zeros((2, 16, 16, 3)),
    ...                          "label_shape": np.array([0, 1]), "label_colour": np.array([2, 3])})
    >>> tuple(outputs["logit"].shape), tuple(outputs["shape"].shape)
    ((2, 1), (2, 8))
    """

    def __init__(
        self,
        image_size=32,
        attributes=None,
        filters=None,
        feature_dim=256,
        spectral_norm=False,
        dtype=None,
        **kwargs,
    ):
        check_image_size(image_size)
        attributes = check_attributes(attributes)
        check_positive_int("feature_dim", feature_dim)
        stages = int(math.log2(image_size // 4))
        if filters is None:
            filters = default_filters(image_size, "discriminator")
        filters = _check_filters(filters, stages, "discriminator")
        policy = resolve_policy(dtype)

        # === Layers ===
        self.convs = _conv_stack(filters, spectral_norm, "conv", policy)
        self.flatten = keras.layers.Flatten(name="flatten", dtype=policy)
        self.features = keras.layers.Dense(feature_dim, name="features", dtype=policy)
        self.features_act = keras.layers.LeakyReLU(0.2, name="features_act", dtype=policy)
        self.adversarial = keras.layers.Dense(1, name="adversarial", dtype="float32")
        self.projections = {
            name: keras.layers.Embedding(
                classes, feature_dim, name=f"{name}_projection", dtype="float32"
            )
            for name, classes in num_classes(attributes).items()
        }
        self.heads = {
            name: keras.layers.Dense(classes, name=name, dtype="float32")
            for name, classes in num_classes(attributes).items()
        }

        # === Functional Model ===
        inputs = {"image": keras.Input((image_size, image_size, 3), name="image")}
        inputs.update(
            {
                label_key(n): keras.Input(shape=(), dtype="int32", name=label_key(n))
                for n in attributes
            }
        )
        x = inputs["image"]
        for layer in self.convs:
            x = layer(x)
        h = ops.cast(self.features_act(self.features(self.flatten(x))), "float32")
        logit = self.adversarial(h)
        for name, projection in self.projections.items():
            embedded = projection(inputs[label_key(name)])
            logit = logit + ops.sum(embedded * h, axis=-1, keepdims=True)
        outputs = {"logit": logit}
        outputs.update({name: head(h) for name, head in self.heads.items()})
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.image_size = image_size
        self.attributes = attributes
        self.filters = filters
        self.feature_dim = feature_dim
        self.spectral_norm = spectral_norm

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_size": self.image_size,
            "attributes": self.attributes,
            "filters": list(self.filters),
            "feature_dim": self.feature_dim,
            "spectral_norm": self.spectral_norm,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="mmrec")
class VAEEncoder(_ImageNetworkConfig, keras.Model):
    """The VAE's encoder: an image in [-1, 1] and its conditioning vector → a Gaussian posterior.

    Image → 4×4 stride-2 convolutions with LeakyReLU → flatten, concatenated with
    the condition → dense → ``z_mean`` and ``z_log_var`` (float32, ``[B, latent_dim]``).

    Inputs: ``{"image": float [B, H, W, 3], "condition": [B, condition_dim]}``.

    Args:
        image_size: 16, 32 or 64.
        condition_dim: width of the conditioning vector.
        latent_dim: width of the latent code.
        filters: widths from ``image_size / 2`` down to 4×4; ``None`` picks the
            discriminator's defaults.
        dtype: the dtype policy of every layer but the float32 outputs (``None``:
            the global policy).

    Example:

    >>> encoder = VAEEncoder(16, condition_dim=8, latent_dim=4, filters=(8, 16))
    >>> z_mean, z_log_var = encoder({"image": np.zeros((2, 16, 16, 3)),
    ...                              "condition": np.zeros((2, 8))})
    >>> tuple(z_mean.shape)
    (2, 4)
    """

    def __init__(
        self, image_size=32, condition_dim=128, latent_dim=64, filters=None, dtype=None, **kwargs
    ):
        check_image_size(image_size)
        check_positive_int("condition_dim", condition_dim)
        check_positive_int("latent_dim", latent_dim)
        stages = int(math.log2(image_size // 4))
        if filters is None:
            filters = default_filters(image_size, "discriminator")
        filters = _check_filters(filters, stages, "encoder")
        policy = resolve_policy(dtype)

        # === Layers ===
        self.convs = _conv_stack(filters, False, "conv", policy)
        self.flatten = keras.layers.Flatten(name="flatten", dtype=policy)
        self.concat = keras.layers.Concatenate(name="concat", dtype=policy)
        self.hidden = keras.layers.Dense(256, name="hidden", dtype=policy)
        self.hidden_act = keras.layers.LeakyReLU(0.2, name="hidden_act", dtype=policy)
        self.z_mean = keras.layers.Dense(latent_dim, name="z_mean", dtype="float32")
        self.z_log_var = keras.layers.Dense(
            latent_dim, kernel_initializer="zeros", name="z_log_var", dtype="float32"
        )

        # === Functional Model ===
        image = keras.Input((image_size, image_size, 3), name="image")
        condition = keras.Input(shape=(condition_dim,), dtype="float32", name="condition")
        x = image
        for layer in self.convs:
            x = layer(x)
        x = self.hidden_act(self.hidden(self.concat([self.flatten(x), condition])))
        outputs = (self.z_mean(x), self.z_log_var(x))
        super().__init__(inputs={"image": image, "condition": condition}, outputs=outputs, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.image_size = image_size
        self.condition_dim = condition_dim
        self.latent_dim = latent_dim
        self.filters = filters
