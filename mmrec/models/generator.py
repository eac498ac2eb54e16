"""Networks of the generative models: generator, discriminator, VAE encoder, conditioners.

Where it sits in the data flow: a *conditioner* turns what a generated image is
asked to show into one conditioning vector — attribute ids (`AttributeConditioner`),
a `tf.string` description (`TextConditioner`), or, for a user, the attributes a
frozen user encoder predicts that user prefers (`AttributePreferenceModel`, whose
sampled attributes feed an `AttributeConditioner`). The `Generator` maps noise
plus that vector to an image in [-1, 1] (DCGAN-style transposed convolutions with
conditional batch normalisation); the `Discriminator` scores an image against
its attribute labels (projection) and classifies its attributes (auxiliary
classifier heads, AC-GAN style); the `VAEEncoder` maps an image plus the
conditioning vector to a Gaussian posterior. `ConditionalGAN` and
`ConditionalVAE` (`gan.py`, `vae.py`) own the losses and the training steps.

All networks are functional models that survive `.keras` save/load; their
final outputs are float32 under every dtype policy.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mmrec.layers import TextEncoder, TextTokenizer

CONDITIONS = ("attributes", "text", "user")
IMAGE_SIZES = (16, 32, 64)


def label_key(attribute: str) -> str:
    """The feature name of an attribute's label (as in the data layer's batches)."""
    return f"label_{attribute}"


def default_filters(image_size: int, network: str) -> tuple[int, ...]:
    """Default widths: one entry per resolution, from 4×4 up (generator) or down to 4×4."""
    _check_image_size(image_size)
    stages = int(math.log2(image_size // 4))
    if network == "generator":  # 4×4 … image_size: halve the width as the resolution doubles
        return tuple(max(16, 256 >> i) for i in range(stages + 1))
    return tuple(min(256, 32 << i) for i in range(stages))  # image_size/2 … 4×4


def _check_image_size(image_size):
    if image_size not in IMAGE_SIZES:
        raise ValueError(
            f"Expected image_size to be one of {IMAGE_SIZES}. Received: image_size={image_size!r}"
        )


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"Expected {name} to be a positive int. Received: {name}={value!r}")


def _check_attributes(attributes):
    """attribute name → number of classes, or → list of class names (kept as given)."""
    if not isinstance(attributes, dict) or not attributes:
        raise ValueError(
            "Expected attributes to be a non-empty dict of attribute name → number of "
            "classes (or list of class names), e.g. {'shape': 8, 'colour': 8}. "
            f"Received: attributes={attributes!r}"
        )
    checked = {}
    for name, classes in attributes.items():
        if isinstance(classes, (list, tuple)):
            if not classes or not all(isinstance(c, str) for c in classes):
                raise ValueError(
                    f"Expected attributes[{name!r}] to be a positive int or a non-empty list of "
                    f"class names. Received: {classes!r}"
                )
            checked[str(name)] = [str(c) for c in classes]
        else:
            _check_positive_int(f"attributes[{name!r}]", classes)
            checked[str(name)] = int(classes)
    return checked


def num_classes(attributes) -> dict[str, int]:
    """attribute name → number of classes, from counts or lists of class names."""
    return {k: v if isinstance(v, int) else len(v) for k, v in attributes.items()}


def _check_filters(filters, expected_length, network):
    filters = tuple(filters)
    if len(filters) != expected_length or not all(isinstance(f, int) and f > 0 for f in filters):
        raise ValueError(
            f"Expected filters to be {expected_length} positive ints for this {network}'s "
            f"image_size. Received: filters={filters!r}"
        )
    return filters


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
    >>> layer([x, condition], training=True).shape
    TensorShape([4, 8, 8, 16])
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

    >>> ScaleImages()(np.array([[[[0, 255, 51]]]], "uint8")).numpy().ravel().tolist()
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


def to_uint8(images):
    """Images in [-1, 1] → uint8 in [0, 255] (rounded), as a real image would be stored."""
    images = ops.convert_to_numpy(images)
    return ((images.clip(-1.0, 1.0) + 1.0) * 127.5).round().astype("uint8")


# === Conditioners ============================================================================


@keras.saving.register_keras_serializable(package="mmrec")
class AttributeConditioner(keras.Model):
    """Attribute ids → one learned embedding per attribute, concatenated.

    Inputs: a dict ``{"label_<attribute>": int [B]}`` (the keys of the data layer's
    batches). Output: float32 ``[B, len(attributes) * embedding_dim]``.

    Args:
        attributes: attribute name → number of classes, e.g. ``{"shape": 8, "colour": 8}``.
        embedding_dim: width of each attribute's embedding.

    Example:

    >>> conditioner = AttributeConditioner({"shape": 8, "colour": 8}, embedding_dim=4)
    >>> conditioner({"label_shape": np.array([3]), "label_colour": np.array([1])}).shape
    TensorShape([1, 8])
    """

    def __init__(self, attributes, embedding_dim=32, **kwargs):
        attributes = _check_attributes(attributes)
        _check_positive_int("embedding_dim", embedding_dim)
        # === Layers ===
        self.embeddings = {
            name: keras.layers.Embedding(classes, embedding_dim, name=f"{name}_embedding")
            for name, classes in num_classes(attributes).items()
        }
        self.concat = None
        if len(attributes) > 1:
            self.concat = keras.layers.Concatenate(name="concat", dtype="float32")

        # === Functional Model ===
        inputs = {
            label_key(name): keras.Input(shape=(), dtype="int32", name=label_key(name))
            for name in attributes
        }
        parts = [self.embeddings[name](inputs[label_key(name)]) for name in attributes]
        outputs = self.concat(parts) if len(parts) > 1 else ops.cast(parts[0], "float32")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        # === Config ===
        self.attributes = attributes
        self.embedding_dim = embedding_dim

    @property
    def condition_dim(self) -> int:
        return len(self.attributes) * self.embedding_dim

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "attributes": self.attributes,
            "embedding_dim": self.embedding_dim,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="mmrec")
class TextConditioner(keras.Model):
    """A ``tf.string`` description → WordPiece ids → a small transformer → a vector.

    Tokenises inside the graph (`mmrec.layers.TextTokenizer`, tensorflow-text),
    so it takes raw strings, also in an exported model. The encoder is
    `mmrec.layers.TextEncoder`. Output: float32 ``[B, embedding_dim]``.

    Args:
        vocabulary: a WordPiece vocabulary (list of tokens) or the path of a
            ``vocab.txt`` (e.g. ``data.vocabulary_path``).
        embedding_dim: width of the conditioning vector.
        sequence_length: tokens kept per description.
        hidden_dim: width of the token embeddings and the transformer.
        num_layers: transformer blocks.
        attributes: optional, the attributes the descriptions name (attribute name →
            number of classes or class names); the generative models put auxiliary
            heads that predict them on the text embedding.

    Example:

    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "red", "blue", "star", "heart"]
    >>> conditioner = TextConditioner(vocab, embedding_dim=8, sequence_length=6, hidden_dim=8)
    >>> conditioner(np.array(["a red star", "a blue heart"])).shape
    TensorShape([2, 8])
    """

    def __init__(
        self,
        vocabulary,
        embedding_dim=64,
        sequence_length=24,
        hidden_dim=64,
        num_layers=1,
        attributes=None,
        **kwargs,
    ):
        if attributes is not None:
            attributes = _check_attributes(attributes)
        # === Layers ===
        self.tokenizer = TextTokenizer(
            vocabulary, sequence_length=sequence_length, name="tokenizer"
        )
        self.encoder = TextEncoder(
            self.tokenizer.vocabulary_size(),
            embedding_dim=embedding_dim,
            sequence_length=sequence_length,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            num_heads=2,
            name="text_encoder",
        )

        # === Functional Model ===
        text = keras.Input(shape=(), dtype="string", name="text")
        outputs = self.encoder(self.tokenizer(text))
        super().__init__(inputs=text, outputs=outputs, **kwargs)

        # === Config ===
        self.vocabulary = self.tokenizer.get_vocabulary()
        self.embedding_dim = embedding_dim
        self.sequence_length = sequence_length
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.attributes = attributes

    @property
    def condition_dim(self) -> int:
        return self.embedding_dim

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocabulary": self.vocabulary,
            "embedding_dim": self.embedding_dim,
            "sequence_length": self.sequence_length,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "attributes": self.attributes,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="mmrec")
class AttributePreferenceModel(keras.Model):
    """A user's history → the attribute distributions that user prefers, via a frozen user encoder.

    ``{"history": int32 [B, L]}`` (item ids, padded with -1) → ``user_encoder`` →
    a small MLP → one logit vector per attribute, ``{attribute: float32 [B, C]}``.
    The head is trained on the attributes of the items users chose; the user
    encoder stays frozen (``trainable=False``, called in inference mode): it is
    what the recommender knows about the user, and the generator must not pull
    it towards what is easy to draw. Sampling these distributions gives the
    attribute ids that condition an attribute-conditioned generator.

    Args:
        user_encoder: any `keras.Model` ``{"history": int32 [B, L]}`` → float32 ``[B, D]``,
            e.g. ``recommender.user_encoder``.
        attributes: attribute name → number of classes.
        hidden_dim: width of the head's hidden layer.

    Example:

    >>> history = keras.Input(shape=(None,), dtype="int32", name="history")
    >>> items = keras.layers.Embedding(50, 8)(keras.ops.maximum(history, 0))
    >>> user = mmrec.layers.UserEncoder()(items, item_ids=history)
    >>> user_encoder = keras.Model({"history": history}, user)
    >>> preferences = AttributePreferenceModel(user_encoder, {"shape": 8, "colour": 8})
    >>> logits = preferences({"history": np.array([[3, 17, 42, -1]])})
    >>> logits["shape"].shape
    TensorShape([1, 8])
    """

    def __init__(self, user_encoder, attributes, hidden_dim=64, **kwargs):
        if not isinstance(user_encoder, keras.Model):
            raise ValueError(
                "Expected user_encoder to be a keras.Model mapping {'history': int32 [B, L]} "
                f"to float32 [B, D]. Received: user_encoder={user_encoder!r}"
            )
        attributes = _check_attributes(attributes)
        _check_positive_int("hidden_dim", hidden_dim)
        user_encoder.trainable = False
        # === Layers ===
        self.user_encoder = user_encoder
        self.hidden = keras.layers.Dense(hidden_dim, activation="relu", name="hidden")
        self.heads = {
            name: keras.layers.Dense(classes, name=name, dtype="float32")
            for name, classes in num_classes(attributes).items()
        }

        # === Functional Model ===
        history = keras.Input(shape=(None,), dtype="int32", name="history")
        user = self.user_encoder({"history": history}, training=False)
        hidden = self.hidden(user)
        outputs = {name: head(hidden) for name, head in self.heads.items()}
        super().__init__(inputs={"history": history}, outputs=outputs, **kwargs)

        # === Config ===
        self.attributes = attributes
        self.hidden_dim = hidden_dim

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "user_encoder": keras.saving.serialize_keras_object(self.user_encoder),
            "attributes": self.attributes,
            "hidden_dim": self.hidden_dim,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["user_encoder"] = keras.saving.deserialize_keras_object(config["user_encoder"])
        return cls(**config)


# === Networks ================================================================================


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

    Example:

    >>> generator = Generator(image_size=16, condition_dim=8, latent_dim=16, filters=(16, 8, 4))
    >>> images = generator({"noise": np.zeros((2, 16)), "condition": np.ones((2, 8))})
    >>> images.shape, images.dtype
    (TensorShape([2, 16, 16, 3]), tf.float32)
    """

    def __init__(self, image_size=32, condition_dim=128, latent_dim=64, filters=None, **kwargs):
        _check_image_size(image_size)
        _check_positive_int("condition_dim", condition_dim)
        _check_positive_int("latent_dim", latent_dim)
        stages = int(math.log2(image_size // 4))
        if filters is None:
            filters = default_filters(image_size, "generator")
        filters = _check_filters(filters, stages + 1, "generator")

        # === Layers ===
        self.inputs_concat = keras.layers.Concatenate(name="inputs_concat")
        self.stem = keras.layers.Dense(4 * 4 * filters[0], use_bias=False, name="stem")
        self.stem_reshape = keras.layers.Reshape((4, 4, filters[0]), name="stem_reshape")
        self.norms = [ConditionalBatchNormalization(name=f"norm{i}") for i in range(stages + 1)]
        self.upsamples = [
            keras.layers.Conv2DTranspose(
                f, 4, strides=2, padding="same", use_bias=False, name=f"up{i + 1}"
            )
            for i, f in enumerate(filters[1:])
        ]
        self.to_rgb = keras.layers.Conv2D(3, 3, padding="same", name="to_rgb")
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

        # === Config ===
        self.image_size = image_size
        self.condition_dim = condition_dim
        self.latent_dim = latent_dim
        self.filters = filters


def _conv_stack(filters, spectral_norm, prefix):
    """4×4 stride-2 convolutions + LeakyReLU(0.2), one per entry of ``filters``."""
    layers = []
    for i, f in enumerate(filters):
        conv = keras.layers.Conv2D(f, 4, strides=2, padding="same", name=f"{prefix}{i}")
        if spectral_norm:
            conv = keras.layers.SpectralNormalization(conv, name=f"{prefix}{i}_sn")
        layers += [conv, keras.layers.LeakyReLU(0.2, name=f"{prefix}{i}_act")]
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

    Example:

    >>> discriminator = Discriminator(16, {"shape": 8, "colour": 8}, filters=(8, 16))
    >>> outputs = discriminator({"image": np.zeros((2, 16, 16, 3)),
    ...                          "label_shape": np.array([0, 1]), "label_colour": np.array([2, 3])})
    >>> outputs["logit"].shape, outputs["shape"].shape
    (TensorShape([2, 1]), TensorShape([2, 8]))
    """

    def __init__(
        self,
        image_size=32,
        attributes=None,
        filters=None,
        feature_dim=256,
        spectral_norm=False,
        **kwargs,
    ):
        _check_image_size(image_size)
        attributes = _check_attributes(attributes)
        _check_positive_int("feature_dim", feature_dim)
        stages = int(math.log2(image_size // 4))
        if filters is None:
            filters = default_filters(image_size, "discriminator")
        filters = _check_filters(filters, stages, "discriminator")

        # === Layers ===
        self.convs = _conv_stack(filters, spectral_norm, prefix="conv")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.features = keras.layers.Dense(feature_dim, name="features")
        self.features_act = keras.layers.LeakyReLU(0.2, name="features_act")
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

    Example:

    >>> encoder = VAEEncoder(16, condition_dim=8, latent_dim=4, filters=(8, 16))
    >>> z_mean, z_log_var = encoder({"image": np.zeros((2, 16, 16, 3)),
    ...                              "condition": np.zeros((2, 8))})
    >>> z_mean.shape
    TensorShape([2, 4])
    """

    def __init__(self, image_size=32, condition_dim=128, latent_dim=64, filters=None, **kwargs):
        _check_image_size(image_size)
        _check_positive_int("condition_dim", condition_dim)
        _check_positive_int("latent_dim", latent_dim)
        stages = int(math.log2(image_size // 4))
        if filters is None:
            filters = default_filters(image_size, "discriminator")
        filters = _check_filters(filters, stages, "encoder")

        # === Layers ===
        self.convs = _conv_stack(filters, spectral_norm=False, prefix="conv")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.concat = keras.layers.Concatenate(name="concat")
        self.hidden = keras.layers.Dense(256, name="hidden")
        self.hidden_act = keras.layers.LeakyReLU(0.2, name="hidden_act")
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

        # === Config ===
        self.image_size = image_size
        self.condition_dim = condition_dim
        self.latent_dim = latent_dim
        self.filters = filters


# === Conditional generation (shared by ConditionalGAN and ConditionalVAE) ===================


def _per_example_cross_entropy(logits_by_attribute, labels):
    """Σ over attributes of the sparse softmax cross-entropy, per example ([B], float32)."""
    total = 0.0
    for name, logits in logits_by_attribute.items():
        total = total + keras.losses.sparse_categorical_crossentropy(
            labels[name], ops.cast(logits, "float32"), from_logits=True
        )
    return total


def wrap_for_policy(optimizer, policy_name):
    """Wraps ``optimizer`` in a `LossScaleOptimizer` under ``mixed_float16`` (once)."""
    if policy_name == "mixed_float16" and not isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer
    ):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def replica_seed(seed_generator):
    """The generator's next seed, distinct on each replica of a `tf.distribute` strategy.

    A `keras.random.SeedGenerator` holds one state for all replicas, so under a
    `MirroredStrategy` every replica draws the *same* numbers (the same noise
    for each replica's share of the batch). The replica id is folded into the
    seed's first word; with one replica the seed is unchanged, so results equal
    `keras.random.normal(..., seed=seed_generator)`.
    """
    seed = seed_generator.next()
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return seed
    replica = tf.cast(context.replica_id_in_sync_group, seed.dtype)
    return seed + tf.stack([replica * 7919, tf.zeros_like(replica)])


class ConditionalImageModel(keras.Model):
    """What `ConditionalGAN` and `ConditionalVAE` share: conditioning and `generate`.

    Not used directly. A subclass calls `_init_conditioning` in its `__init__` and
    implements `_decode(noise, condition_inputs)` (images in [-1, 1] from noise
    and raw condition inputs, in inference mode).
    """

    def _init_conditioning(self, conditioner, condition, preference_model, seed):
        if condition not in CONDITIONS:
            raise ValueError(
                f"Expected condition to be one of {CONDITIONS}. Received: condition={condition!r}"
            )
        wanted = TextConditioner if condition == "text" else AttributeConditioner
        if not isinstance(conditioner, wanted):
            raise ValueError(
                f"Expected conditioner to be a {wanted.__name__} for condition={condition!r}. "
                f"Received: conditioner={type(conditioner).__name__}"
            )
        if (condition == "user") != (preference_model is not None):
            raise ValueError(
                "Expected a preference_model (an AttributePreferenceModel) exactly when "
                f"condition='user'. Received: condition={condition!r}, "
                f"preference_model={type(preference_model).__name__}"
            )
        if conditioner.attributes is None:
            raise ValueError(
                "Expected the TextConditioner to know the attributes its descriptions name "
                "(TextConditioner(..., attributes=...)). Received: attributes=None"
            )
        self.condition = condition
        self.conditioner = conditioner
        self.preference_model = preference_model
        self.attributes = conditioner.attributes
        self.condition_heads = None
        if condition == "text":
            # Auxiliary heads: the text embedding must predict the attributes the text
            # names. Supervision the data has anyway; it teaches the text encoder far
            # faster than the adversarial signal alone.
            self.condition_heads = {}
            for name, classes in num_classes(self.attributes).items():
                head = keras.layers.Dense(classes, name=f"condition_{name}", dtype="float32")
                head.build((None, conditioner.condition_dim))
                self.condition_heads[name] = head
        self.seed_generator = keras.random.SeedGenerator(seed)

    # --- what a training batch must carry ---------------------------------------------------

    def feature_keys(self) -> list[str]:
        """The batch features training and evaluation read (other keys are dropped)."""
        keys = ["image"] + [label_key(name) for name in self.attributes]
        if self.condition == "text":
            keys.append("text")
        if self.condition == "user":
            keys.append("history")
        return keys

    def _select_features(self, data):
        """Drops the batch features the model does not read (e.g. audio, or text under XLA).

        Like keras-hub tasks, which map their preprocessor over a `tf.data.Dataset`
        passed to `fit`: fewer host-to-device copies, and no `tf.string` tensors
        enter an XLA-compiled step unless the model needs them.
        """
        keys = self.feature_keys()
        if isinstance(data, tf.data.Dataset) and isinstance(data.element_spec, dict):
            present = [k for k in keys if k in data.element_spec]
            return data.map(
                lambda batch: {k: batch[k] for k in present}, num_parallel_calls=tf.data.AUTOTUNE
            )
        if isinstance(data, dict):
            return {k: data[k] for k in keys if k in data}
        return data

    def fit(self, x=None, y=None, *args, **kwargs):
        if kwargs.get("validation_data") is not None:
            kwargs["validation_data"] = self._select_features(kwargs["validation_data"])
        return super().fit(self._select_features(x), y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        return super().evaluate(self._select_features(x), y, *args, **kwargs)

    # --- training-time conditioning -------------------------------------------------------

    def _labels(self, data):
        return {name: ops.cast(data[label_key(name)], "int32") for name in self.attributes}

    def _condition_inputs(self, data, labels):
        """The conditioner's inputs for a training batch (user: the chosen item's labels)."""
        if self.condition == "text":
            return data["text"]
        return {label_key(name): labels[name] for name in self.attributes}

    def _condition_loss(self, data, condition, labels, training):
        """Per-example auxiliary loss of the text path (part of the generator's loss), or None.

        The text embedding predicts the attributes the description names.
        """
        if self.condition == "text":
            logits = {name: head(condition) for name, head in self.condition_heads.items()}
            return _per_example_cross_entropy(logits, labels)
        return None

    def _preference_loss(self, data, labels):
        """Per-example loss of the preference head: predict the chosen item's attributes."""
        history = ops.cast(data["history"], "int32")
        # Always inference mode: a functional model passes `training` down to the
        # frozen user encoder, whose dropout must stay off (the head has none).
        logits = self.preference_model({"history": history}, training=False)
        return _per_example_cross_entropy(logits, labels)

    def _build_preference_optimizer(self, policy_name):
        """The preference head's own optimizer (condition="user"): Adam(1e-3).

        The head is a small classifier on a fixed input; at the generator's
        2e-4 it stays far from converged within a CPU budget (on shapes its
        sampled attributes hit a user's favourites 0.27 of the time against 0.39
        at 1e-3).
        """
        self.preference_optimizer = None
        if self.preference_model is not None:
            optimizer = wrap_for_policy(keras.optimizers.Adam(1e-3), policy_name)
            optimizer.build(self.preference_model.trainable_variables)
            self.preference_optimizer = optimizer

    def _train_preferences(self, data, labels):
        """One update of the preference head (its own tape and optimizer); per-example loss."""
        variables = self.preference_model.trainable_variables
        with tf.GradientTape() as tape:
            per_example = self._preference_loss(data, labels)
            loss = tf.nn.compute_average_loss(per_example)
            scaled = self.preference_optimizer.scale_loss(loss)
        self.preference_optimizer.apply(tape.gradient(scaled, variables), variables)
        return per_example

    def _condition_variables(self):
        """The conditioning path's variables trained with the generator (or decoder)."""
        variables = list(self.conditioner.trainable_variables)
        if self.condition_heads:
            for head in self.condition_heads.values():
                variables += head.trainable_variables
        return variables

    # --- randomness in the train and test steps (distinct per replica) ------------------------

    def _normal(self, shape):
        return tf.random.stateless_normal(shape, seed=replica_seed(self.seed_generator))

    def _uniform(self, shape):
        return tf.random.stateless_uniform(shape, seed=replica_seed(self.seed_generator))

    def _randint(self, shape, low, high):
        seed = replica_seed(self.seed_generator)
        return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high, dtype="int32")

    # --- generation -------------------------------------------------------------------------

    def _decode(self, noise, condition_inputs):
        raise NotImplementedError

    @property
    def latent_dim(self) -> int:
        raise NotImplementedError

    def call(self, inputs, training=False):
        """A batch of conditions (``label_*``, ``text`` or ``history``) → one image per row."""
        if self.condition == "user" and "history" in inputs:
            logits = self.preference_model({"history": inputs["history"]}, training=False)
            condition_inputs = {
                label_key(name): ops.cast(
                    keras.random.categorical(logits[name], 1, seed=self.seed_generator)[:, 0],
                    "int32",
                )
                for name in self.attributes
            }
        elif self.condition == "text":
            condition_inputs = inputs["text"]
        else:
            condition_inputs = {label_key(n): inputs[label_key(n)] for n in self.attributes}
        batch = ops.shape(next(iter(keras.tree.flatten(condition_inputs))))[0]
        noise = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        return self._decode(noise, condition_inputs)

    def preferred_attributes(self, history, num=1, seed=None, temperature=1.0):
        """Samples the attributes a user prefers, from the preference head (condition="user").

        Args:
            history: item ids, a list (one user) or a list of lists / 2-D array
                (several users; padded with -1 to one length).
            num: samples per user.
            seed: an int for reproducible samples; ``None`` uses the model's seed generator.
            temperature: divides the logits; below 1 favours each user's favourites.

        Returns:
            ``{attribute: int32 array [users, num]}``.
        """
        if self.condition != "user":
            raise ValueError(
                "preferred_attributes needs a user-conditioned model (condition='user'). "
                f"Received: condition={self.condition!r}"
            )
        if not temperature > 0:
            raise ValueError(f"Expected temperature > 0. Received: temperature={temperature!r}")
        history, _ = _parse_history(history)
        seed_generator = self._seed(seed)
        logits = self.preference_model.predict_on_batch({"history": history})
        out = {}
        for name in self.attributes:
            scaled = ops.convert_to_tensor(logits[name] / temperature)
            sampled = keras.random.categorical(scaled, num, seed=seed_generator)
            out[name] = ops.convert_to_numpy(sampled).astype("int32")
        return out

    def generate(
        self, condition=None, num=1, seed=None, dtype="float32", temperature=1.0, user_history=None
    ):
        """Generates ``num`` images for each condition.

        Args:
            condition: what to show.
                ``condition="attributes"`` (and every model, as a dict): ``{attribute:
                id or class name, or a list of them}``, all attributes given, e.g.
                ``{"shape": "star", "colour": "red", "pattern": "dots", "size": 2}``.
                ``"text"``: a description or a list of descriptions.
                ``"user"``: a history of item ids (one user) or a list of histories.
            num: images per condition.
            seed: an int for reproducible noise (and preference samples); ``None``
                uses (and advances) the model's seed generator.
            dtype: ``"float32"`` (values in [-1, 1]) or ``"uint8"`` (pixels in [0, 255]).
            temperature: for ``"user"``: divides the preference logits before sampling.
            user_history: the same as ``condition`` for a user-conditioned model.

        Returns:
            A NumPy array ``[num, H, W, 3]`` for one condition, ``[conditions, num,
            H, W, 3]`` for a list of them.
        """
        if user_history is not None:
            condition = user_history
        if condition is None:
            raise ValueError("Expected a condition (see the docstring). Received: condition=None")
        if dtype not in ("float32", "uint8"):
            raise ValueError(f"Expected dtype 'float32' or 'uint8'. Received: dtype={dtype!r}")
        _check_positive_int("num", num)
        seed_generator = self._seed(seed)
        if isinstance(condition, dict):
            inputs, single = self._parse_attributes(condition)
            inputs = {k: np.repeat(v, num) for k, v in inputs.items()}
        elif self.condition == "text":
            single = isinstance(condition, (str, bytes))
            texts = np.array([condition] if single else list(condition), dtype=object)
            inputs = np.repeat(texts, num)
        elif self.condition == "user":
            single = _parse_history(condition)[1]
            sampled = self.preferred_attributes(condition, num, seed_generator, temperature)
            inputs = {label_key(k): v.reshape(-1) for k, v in sampled.items()}
        else:
            raise ValueError(
                "Expected condition to be a dict of attributes, e.g. {'shape': 'star', ...}, "
                f"for condition='attributes'. Received: condition={condition!r}"
            )
        total = len(inputs) if not isinstance(inputs, dict) else len(next(iter(inputs.values())))
        noise = keras.random.normal((total, self.latent_dim), seed=seed_generator)
        noise = ops.convert_to_numpy(noise)
        images = []
        for start in range(0, total, 512):
            chunk = slice(start, start + 512)
            rows = {k: v[chunk] for k, v in inputs.items()} if isinstance(inputs, dict) else None
            rows = rows if rows is not None else inputs[chunk]
            rows = keras.tree.map_structure(ops.convert_to_tensor, rows)
            images.append(
                ops.convert_to_numpy(self._decode(ops.convert_to_tensor(noise[chunk]), rows))
            )
        images = np.concatenate(images).astype("float32")
        images = images.reshape((-1, num) + images.shape[1:])
        if single:
            images = images[0]
        return to_uint8(images) if dtype == "uint8" else images

    def _seed(self, seed):
        if seed is None:
            return self.seed_generator
        if isinstance(seed, keras.random.SeedGenerator):
            return seed
        return keras.random.SeedGenerator(int(seed))

    def _parse_attributes(self, condition):
        missing = [name for name in self.attributes if name not in condition]
        unknown = [name for name in condition if name not in self.attributes]
        if missing or unknown:
            raise ValueError(
                f"Expected a value for each attribute {list(self.attributes)}. "
                f"Received: condition={condition!r} (missing {missing}, unknown {unknown})"
            )
        single = all(np.ndim(v) == 0 for v in condition.values())
        counts = num_classes(self.attributes)
        inputs = {}
        for name, values in condition.items():
            values = np.atleast_1d(np.asarray(values, dtype=object))
            ids = []
            for value in values:
                if isinstance(value, str):
                    names = self.attributes[name]
                    if isinstance(names, int) or value not in names:
                        raise ValueError(
                            f"Expected {name} to be one of {names}. Received: {name}={value!r}"
                        )
                    value = names.index(value)
                if not 0 <= int(value) < counts[name]:
                    raise ValueError(
                        f"Expected 0 <= {name} < {counts[name]}. Received: {name}={value!r}"
                    )
                ids.append(int(value))
            inputs[label_key(name)] = np.asarray(ids, dtype="int32")
        sizes = {len(v) for v in inputs.values()}
        if len(sizes) > 1:
            raise ValueError(
                "Expected the same number of values for every attribute. "
                f"Received: { {k: len(v) for k, v in inputs.items()} }"
            )
        return inputs, single


def _parse_history(history):
    """A history (list of ids) or a batch of them → (int32 [B, L] padded with -1, single)."""
    if isinstance(history, np.ndarray) and history.ndim == 2:
        return history.astype("int32"), False
    rows = list(history)
    single = not rows or np.ndim(rows[0]) == 0
    if single:
        rows = [rows]
    length = max(1, max(len(r) for r in rows))
    out = np.full((len(rows), length), -1, dtype="int32")
    for i, row in enumerate(rows):
        out[i, : len(row)] = np.asarray(row, dtype="int32")
    return out, single


def build_conditioning(data, condition, user_encoder=None):
    """The conditioner (and, for ``"user"``, the preference model) for a dataset.

    Returns ``(conditioner, preference_model or None)``: an `AttributeConditioner`
    over the dataset's attributes, or a `TextConditioner` over its ``vocab.txt``
    (``"text"``), plus an `AttributePreferenceModel` on the frozen ``user_encoder``
    (``"user"``).
    """
    if condition not in CONDITIONS:
        raise ValueError(
            f"Expected condition to be one of {CONDITIONS}. Received: condition={condition!r}"
        )
    info = data.metadata
    if "image" not in info.modalities:
        raise ValueError(
            "Expected a dataset with images (dataset.json modalities). "
            f"Received: modalities={list(info.modalities)}"
        )
    if not info.attributes:
        raise ValueError(
            "Expected a dataset with attribute labels (dataset.json attributes). Received: none"
        )
    attributes = {name: list(classes) for name, classes in info.attributes.items()}
    if condition == "text":
        if data.vocabulary_path is None:
            raise ValueError(
                f"Expected a vocab.txt in {data.path} for condition='text'. Received: none"
            )
        conditioner = TextConditioner(
            data.vocabulary_path, embedding_dim=128, attributes=attributes, name="conditioner"
        )
        return conditioner, None
    conditioner = AttributeConditioner(attributes, embedding_dim=32, name="conditioner")
    if condition != "user":
        return conditioner, None
    if user_encoder is None:
        raise ValueError(
            "Expected a user_encoder (a keras.Model {'history': int32 [B, L]} → [B, D], "
            "e.g. recommender.user_encoder) for condition='user'. Received: user_encoder=None"
        )
    preference_model = AttributePreferenceModel(user_encoder, attributes, name="preference_model")
    return conditioner, preference_model
