"""Per-modality encoders: raw item content → one embedding per item.

Where they sit in the data flow: after ``mmrec.data`` has decoded an item and
before fusion. The three content encoders are small functional models that
include their own preprocessing, so they take what the data layer produces:

* `ImageEncoder`: ``uint8``-range images ``[B, H, W, 3]`` → a small CNN;
* `TextEncoder`: WordPiece token ids ``[B, L]`` (from `TextTokenizer`) → a
  small transformer (or a bidirectional LSTM, the article's alternative);
* `AudioEncoder`: float32 waveforms ``[B, samples]`` → log-mel → a small CNN.

All share one call convention, ``encoder(inputs) -> [B, embedding_dim]``
(float32 outputs, also under mixed precision), so that they plug into the
fusion layers interchangeably (as does `mmrec.layers.hub.HubEncoder`, for TF
Hub models). They are written with ``keras.ops`` and run under any backend.
"""

import keras
from keras import ops

from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.layers.image_audio_preprocessing import AudioPreprocessor, ImagePreprocessor
from mmrec.layers.sequence import MaskedMeanPooling, PositionEmbedding, TransformerBlock

TEXT_ENCODER_KINDS = ("transformer", "lstm")


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"Expected {name} to be a positive int. Received: {name}={value!r}")


def _check_filters(filters):
    filters = tuple(filters) if isinstance(filters, (list, tuple)) else filters
    if (
        not isinstance(filters, tuple)
        or not filters
        or not all(isinstance(f, int) and f > 0 for f in filters)
    ):
        raise ValueError(
            "Expected filters to be a non-empty list of positive ints, one per conv block. "
            f"Received: filters={filters!r}"
        )
    return filters


def batch_norm(name, dtype):
    """Batch normalisation whose statistics are the global batch's under `tf.distribute`
    (``synchronized``, TensorFlow only), so that a step on R replicas normalises like one
    device on the whole batch (the recommender's global softmax relies on it)."""
    synchronized = keras.backend.backend() == "tensorflow"
    return keras.layers.BatchNormalization(name=name, synchronized=synchronized, dtype=dtype)


def _conv_block(filters, name, dtype):
    """Conv 3×3 → batch norm → ReLU → 2×2 max-pool, as a list of layers."""
    return [
        keras.layers.Conv2D(
            filters, 3, padding="same", use_bias=False, name=f"{name}_conv", dtype=dtype
        ),
        batch_norm(f"{name}_norm", dtype),
        keras.layers.ReLU(name=f"{name}_relu", dtype=dtype),
        keras.layers.MaxPooling2D(2, padding="same", name=f"{name}_pool", dtype=dtype),
    ]


@keras.saving.register_keras_serializable(package="mmrec")
class ImageEncoder(keras.Model):
    """A small CNN image encoder: ``[B, H, W, 3]`` in ``[0, 255]`` → ``[B, embedding_dim]``.

    `ImagePreprocessor` (scale to ``[-1, 1]``, optional resize) → one block per
    entry of ``filters`` (conv 3×3, batch norm, ReLU, 2×2 max-pool) → global
    average pooling → a linear projection (float32 output).

    Args:
        embedding_dim: size of the output embedding.
        filters: conv filters per block; the image is halved after each block.
        image_size: resize images to this size first; ``None`` keeps them.
        dtype: the dtype policy (or its name) of every layer but the float32
            output projection; ``None`` takes the global policy.

    Example:

    >>> encoder = ImageEncoder(embedding_dim=8, filters=(4, 8))
    >>> images = np.random.randint(0, 256, size=(2, 16, 16, 3), dtype="uint8")
    >>> tuple(encoder(images).shape)
    (2, 8)
    """

    def __init__(
        self, embedding_dim=64, filters=(32, 64, 128), image_size=None, dtype=None, **kwargs
    ):
        _check_positive_int("embedding_dim", embedding_dim)
        filters = _check_filters(filters)
        policy = resolve_policy(dtype)
        # === Layers ===
        self.preprocessor = ImagePreprocessor(
            image_size=image_size, name="preprocessor", dtype=policy
        )
        self.conv_blocks = [
            layer
            for i, f in enumerate(filters)
            for layer in _conv_block(f, name=f"block{i}", dtype=policy)
        ]
        self.pooling = keras.layers.GlobalAveragePooling2D(name="pooling", dtype=policy)
        self.projection = keras.layers.Dense(embedding_dim, name="projection", dtype="float32")

        # === Functional Model ===
        images = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
        x = self.preprocessor(images)
        for layer in self.conv_blocks:
            x = layer(x)
        outputs = self.projection(self.pooling(x))
        super().__init__(inputs=images, outputs=outputs, **kwargs)
        # Functional Model.__init__ drops `dtype`; the policy is this model's own.
        self.dtype_policy = policy

        # === Config ===
        self.embedding_dim = embedding_dim
        self.filters = filters
        self.image_size = image_size

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "embedding_dim": self.embedding_dim,
            "filters": list(self.filters),
            "image_size": self.image_size,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="mmrec")
class TextEncoder(keras.Model):
    """A small text encoder: WordPiece ids ``[B, sequence_length]`` → ``[B, embedding_dim]``.

    Token embedding → either ``num_layers`` pre-norm transformer blocks with
    learned position embeddings (``kind="transformer"``, BERT-like) or
    ``num_layers`` bidirectional LSTMs (``kind="lstm"``) → mean over the real
    tokens → a linear projection (float32 output). Id 0 is ``[PAD]``: padded
    positions are never attended to, skipped by the LSTM and left out of the
    mean; an all-padding row gives the projection of a zero vector.

    Args:
        vocabulary_size: number of token ids (`TextTokenizer.vocabulary_size()`).
        embedding_dim: size of the output embedding.
        kind: ``"transformer"`` or ``"lstm"``.
        sequence_length: length of the id rows (the tokenizer's).
        hidden_dim: width of the token embeddings and of the blocks.
        num_layers: number of transformer blocks or LSTM layers.
        num_heads: attention heads (transformer only).
        dtype: the dtype policy (or its name) of every layer but the float32
            output projection; ``None`` takes the global policy.

    Example:

    >>> encoder = TextEncoder(vocabulary_size=50, embedding_dim=8, sequence_length=6,
    ...                       hidden_dim=16)
    >>> tuple(encoder(np.array([[5, 6, 7, 0, 0, 0]])).shape)
    (1, 8)
    """

    def __init__(
        self,
        vocabulary_size,
        embedding_dim=64,
        kind="transformer",
        sequence_length=32,
        hidden_dim=64,
        num_layers=1,
        num_heads=2,
        dtype=None,
        **kwargs,
    ):
        if kind not in TEXT_ENCODER_KINDS:
            raise ValueError(
                f"Expected kind to be one of {TEXT_ENCODER_KINDS}. Received: kind={kind!r}"
            )
        for name, value in [
            ("vocabulary_size", vocabulary_size),
            ("embedding_dim", embedding_dim),
            ("sequence_length", sequence_length),
            ("hidden_dim", hidden_dim),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
        ]:
            _check_positive_int(name, value)
        if kind == "transformer" and hidden_dim % num_heads:
            raise ValueError(
                "Expected hidden_dim to be divisible by num_heads. "
                f"Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
            )
        if kind == "lstm" and hidden_dim % 2:
            raise ValueError(
                "Expected an even hidden_dim for kind='lstm' (two directions of hidden_dim / 2). "
                f"Received: hidden_dim={hidden_dim}"
            )
        policy = resolve_policy(dtype)
        # === Layers ===
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size, hidden_dim, name="token_embedding", dtype=policy
        )
        if kind == "transformer":
            self.position_embedding = PositionEmbedding(
                sequence_length, name="position_embedding", dtype=policy
            )
            self.blocks = [
                TransformerBlock(
                    num_heads, intermediate_dim=2 * hidden_dim, name=f"block{i}", dtype=policy
                )
                for i in range(num_layers)
            ]
        else:
            self.position_embedding = None
            self.blocks = [
                keras.layers.Bidirectional(
                    keras.layers.LSTM(hidden_dim // 2, return_sequences=True, dtype=policy),
                    name=f"block{i}",
                    dtype=policy,
                )
                for i in range(num_layers)
            ]
        self.pooling = MaskedMeanPooling(name="pooling", dtype=policy)
        self.projection = keras.layers.Dense(embedding_dim, name="projection", dtype="float32")

        # === Functional Model ===
        token_ids = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
        padding_mask = ops.not_equal(token_ids, 0)
        x = self.token_embedding(token_ids)
        if kind == "transformer":
            x = self.position_embedding(x)
            for block in self.blocks:
                x = block(x, padding_mask=padding_mask)
        else:
            for block in self.blocks:
                x = block(x, mask=padding_mask)
        outputs = self.projection(self.pooling(x, mask=padding_mask))
        super().__init__(inputs=token_ids, outputs=outputs, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.kind = kind
        self.sequence_length = sequence_length
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocabulary_size": self.vocabulary_size,
            "embedding_dim": self.embedding_dim,
            "kind": self.kind,
            "sequence_length": self.sequence_length,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="mmrec")
class AudioEncoder(keras.Model):
    """A small CNN over log-mel spectrograms: ``[B, samples]`` float32 → ``[B, embedding_dim]``.

    `AudioPreprocessor` (STFT → log-mel, ``[B, frames, num_mel_bins]``) → batch
    norm (log-mel values are far from unit scale) → one conv block per entry of
    ``filters`` over the (time, frequency) plane → global average pooling → a
    linear projection (float32 output).

    Args:
        embedding_dim: size of the output embedding.
        filters: conv filters per block.
        sample_rate: sampling rate of the waveforms in Hz.
        num_mel_bins: mel bands of the spectrogram.
        dtype: the dtype policy (or its name) of every layer but the float32
            output projection; ``None`` takes the global policy.

    Example:

    >>> encoder = AudioEncoder(embedding_dim=8, filters=(4, 8), num_mel_bins=16)
    >>> waves = np.random.uniform(-1, 1, size=(2, 1600)).astype("float32")
    >>> tuple(encoder(waves).shape)
    (2, 8)
    """

    def __init__(
        self,
        embedding_dim=64,
        filters=(16, 32, 64),
        sample_rate=16000,
        num_mel_bins=64,
        dtype=None,
        **kwargs,
    ):
        _check_positive_int("embedding_dim", embedding_dim)
        _check_positive_int("sample_rate", sample_rate)
        _check_positive_int("num_mel_bins", num_mel_bins)
        filters = _check_filters(filters)
        policy = resolve_policy(dtype)
        # === Layers ===
        self.preprocessor = AudioPreprocessor(
            sample_rate=sample_rate,
            frame_length=sample_rate // 40,  # 25 ms windows
            frame_step=sample_rate // 100,  # every 10 ms
            num_mel_bins=num_mel_bins,
            name="preprocessor",
            dtype=policy,
        )
        self.to_image = keras.layers.Reshape((-1, num_mel_bins, 1), name="to_image", dtype=policy)
        self.input_norm = batch_norm("input_norm", policy)
        self.conv_blocks = [
            layer
            for i, f in enumerate(filters)
            for layer in _conv_block(f, name=f"block{i}", dtype=policy)
        ]
        self.pooling = keras.layers.GlobalAveragePooling2D(name="pooling", dtype=policy)
        self.projection = keras.layers.Dense(embedding_dim, name="projection", dtype="float32")

        # === Functional Model ===
        waveforms = keras.Input(shape=(None,), dtype="float32", name="audio")
        x = self.input_norm(self.to_image(self.preprocessor(waveforms)))
        for layer in self.conv_blocks:
            x = layer(x)
        outputs = self.projection(self.pooling(x))
        super().__init__(inputs=waveforms, outputs=outputs, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.embedding_dim = embedding_dim
        self.filters = filters
        self.sample_rate = sample_rate
        self.num_mel_bins = num_mel_bins

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "embedding_dim": self.embedding_dim,
            "filters": list(self.filters),
            "sample_rate": self.sample_rate,
            "num_mel_bins": self.num_mel_bins,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
