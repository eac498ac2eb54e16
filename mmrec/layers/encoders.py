"""Per-modality encoders: raw item content → one embedding per item.

Where they sit in the data flow: after ``mmrec.data`` has decoded an item and
before fusion. The three content encoders are small functional models that
include their own preprocessing, so they take what the data layer produces:

* `ImageEncoder`: ``uint8``-range images ``[B, H, W, 3]`` → a small CNN;
* `TextEncoder`: WordPiece token ids ``[B, L]`` (from `TextTokenizer`) → a
  small transformer (or a bidirectional LSTM, the article's alternative);
* `AudioEncoder`: float32 waveforms ``[B, samples]`` → log-mel → a small CNN;
* `HubEncoder`: any TF Hub handle or local SavedModel, as a Keras 3 layer.

All share one call convention, ``encoder(inputs) -> [B, embedding_dim]``
(float32 outputs, also under mixed precision), so that they plug into the
fusion layers interchangeably.
"""

import inspect

import keras
import tensorflow as tf
import tensorflow_hub as hub
from keras import ops

# No public accessor exists; keras.layers.TFSMLayer uses the same check.
from keras.src.saving.serialization_lib import in_safe_mode

from mmrec.layers.preprocessing import AudioPreprocessor, ImagePreprocessor
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


def _conv_block(filters, name):
    """Conv 3×3 → batch norm → ReLU → 2×2 max-pool, as a list of layers."""
    return [
        keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv"),
        keras.layers.BatchNormalization(name=f"{name}_norm"),
        keras.layers.ReLU(name=f"{name}_relu"),
        keras.layers.MaxPooling2D(2, padding="same", name=f"{name}_pool"),
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

    Example:

    >>> encoder = ImageEncoder(embedding_dim=8, filters=(4, 8))
    >>> images = np.random.randint(0, 256, size=(2, 16, 16, 3), dtype="uint8")
    >>> encoder(images).shape
    TensorShape([2, 8])
    """

    def __init__(self, embedding_dim=64, filters=(32, 64, 128), image_size=None, **kwargs):
        _check_positive_int("embedding_dim", embedding_dim)
        filters = _check_filters(filters)
        # === Layers ===
        self.preprocessor = ImagePreprocessor(image_size=image_size, name="preprocessor")
        self.conv_blocks = [
            layer for i, f in enumerate(filters) for layer in _conv_block(f, name=f"block{i}")
        ]
        self.pooling = keras.layers.GlobalAveragePooling2D(name="pooling")
        self.projection = keras.layers.Dense(embedding_dim, name="projection", dtype="float32")

        # === Functional Model ===
        images = keras.Input(shape=(None, None, 3), dtype="float32", name="image")
        x = self.preprocessor(images)
        for layer in self.conv_blocks:
            x = layer(x)
        outputs = self.projection(self.pooling(x))
        super().__init__(inputs=images, outputs=outputs, **kwargs)

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

    Example:

    >>> encoder = TextEncoder(vocabulary_size=50, embedding_dim=8, sequence_length=6,
    ...                       hidden_dim=16)
    >>> encoder(np.array([[5, 6, 7, 0, 0, 0]])).shape
    TensorShape([1, 8])
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
        # === Layers ===
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size, hidden_dim, name="token_embedding"
        )
        if kind == "transformer":
            self.position_embedding = PositionEmbedding(sequence_length, name="position_embedding")
            self.blocks = [
                TransformerBlock(num_heads, intermediate_dim=2 * hidden_dim, name=f"block{i}")
                for i in range(num_layers)
            ]
        else:
            self.position_embedding = None
            self.blocks = [
                keras.layers.Bidirectional(
                    keras.layers.LSTM(hidden_dim // 2, return_sequences=True),
                    name=f"block{i}",
                )
                for i in range(num_layers)
            ]
        self.pooling = MaskedMeanPooling(name="pooling")
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

    Example:

    >>> encoder = AudioEncoder(embedding_dim=8, filters=(4, 8), num_mel_bins=16)
    >>> waves = np.random.uniform(-1, 1, size=(2, 1600)).astype("float32")
    >>> encoder(waves).shape
    TensorShape([2, 8])
    """

    def __init__(
        self, embedding_dim=64, filters=(16, 32, 64), sample_rate=16000, num_mel_bins=64, **kwargs
    ):
        _check_positive_int("embedding_dim", embedding_dim)
        _check_positive_int("sample_rate", sample_rate)
        _check_positive_int("num_mel_bins", num_mel_bins)
        filters = _check_filters(filters)
        # === Layers ===
        self.preprocessor = AudioPreprocessor(
            sample_rate=sample_rate,
            frame_length=sample_rate // 40,  # 25 ms windows
            frame_step=sample_rate // 100,  # every 10 ms
            num_mel_bins=num_mel_bins,
            name="preprocessor",
        )
        self.to_image = keras.layers.Reshape((-1, num_mel_bins, 1), name="to_image")
        self.input_norm = keras.layers.BatchNormalization(name="input_norm")
        self.conv_blocks = [
            layer for i, f in enumerate(filters) for layer in _conv_block(f, name=f"block{i}")
        ]
        self.pooling = keras.layers.GlobalAveragePooling2D(name="pooling")
        self.projection = keras.layers.Dense(embedding_dim, name="projection", dtype="float32")

        # === Functional Model ===
        waveforms = keras.Input(shape=(None,), dtype="float32", name="audio")
        x = self.input_norm(self.to_image(self.preprocessor(waveforms)))
        for layer in self.conv_blocks:
            x = layer(x)
        outputs = self.projection(self.pooling(x))
        super().__init__(inputs=waveforms, outputs=outputs, **kwargs)

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
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def _variables_used_by(function):
    """(trainable, non-trainable) tf.Variables captured by a restored tf.function's traces."""
    if hasattr(function, "concrete_functions"):
        concrete_functions = function.concrete_functions
    else:  # A signature is already a ConcreteFunction.
        concrete_functions = [function]
    trainable, non_trainable, seen = [], [], set()
    for concrete in concrete_functions:
        for v in concrete.trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                trainable.append(v)
    for concrete in concrete_functions:
        for v in concrete.variables:
            if id(v) not in seen:
                seen.add(id(v))
                non_trainable.append(v)
    return trainable, non_trainable


@keras.saving.register_keras_serializable(package="mmrec")
class HubEncoder(keras.layers.Layer):
    """A TF Hub model (or any local SavedModel) as a Keras 3 layer.

    ``tensorflow_hub.load(handle)`` loads the SavedModel; the layer calls
    either the object itself (TF2 "reusable SavedModel": ``obj(inputs)``, with
    ``training`` passed when the function takes it) or one of its
    ``signatures`` (``signature="serving_default"``: called with the input as
    keyword ``signature_input``). When the result is a dict, ``output_key``
    picks the tensor (e.g. ``"pooled_output"`` for BERT-style encoders). The
    output is cast to float32; it should be ``[B, D]``.

    The SavedModel's variables become this layer's weights, so
    ``trainable=True`` fine-tunes them with ``fit`` and ``.keras`` files store
    their current values. ``hub.KerasLayer`` is not used: it is Keras 2 only.

    Deserialisation (``from_config``, ``keras.saving.load_model``) loads and
    runs the SavedModel at ``handle`` again; like ``keras.layers.TFSMLayer``,
    it is refused unless ``safe_mode=False`` is passed (or unsafe
    deserialisation enabled), because a SavedModel is executable graph code.

    Args:
        handle: a TF Hub handle (URL) or the path of a SavedModel directory.
        trainable: whether ``fit`` updates the SavedModel's variables.
        signature: ``None`` to call the object, or a signature name.
        signature_input: the input keyword of the signature (with ``signature``).
        output_key: the key to pick when the model returns a dict.

    Example:

    >>> import tempfile
    >>> class Linear(tf.Module):
    ...     def __init__(self):
    ...         self.w = tf.Variable(tf.ones([4, 2]))
    ...     @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    ...     def __call__(self, x):
    ...         return tf.matmul(x, self.w)
    >>> path = tempfile.mkdtemp()
    >>> tf.saved_model.save(Linear(), path)
    >>> HubEncoder(path, trainable=True)(np.ones((3, 4), "float32")).numpy().tolist()
    [[4.0, 4.0], [4.0, 4.0], [4.0, 4.0]]
    """

    def __init__(
        self,
        handle,
        trainable=False,
        signature=None,
        signature_input="inputs",
        output_key=None,
        **kwargs,
    ):
        # Inputs go to the SavedModel in the dtype it was traced with, so no autocast.
        kwargs.setdefault("autocast", False)
        super().__init__(trainable=trainable, **kwargs)
        self.handle = str(handle)
        self.signature = signature
        self.signature_input = signature_input
        self.output_key = output_key
        # A SavedModel may hold any op; XLA support is unknown.
        self.supports_jit = False

        self._loaded = hub.load(self.handle)
        if signature is None:
            if not callable(self._loaded):
                raise ValueError(
                    "Expected the SavedModel to be callable (a reusable SavedModel), or a "
                    f"signature name. Received: handle={self.handle!r}, signature=None; "
                    f"available signatures: {sorted(self._loaded.signatures)}"
                )
            self._function = self._loaded.__call__
            try:
                parameters = inspect.signature(self._function).parameters
            except (TypeError, ValueError):
                parameters = {}
            self._takes_training = "training" in parameters
        else:
            if signature not in self._loaded.signatures:
                raise ValueError(
                    f"Expected signature to be one of {sorted(self._loaded.signatures)}. "
                    f"Received: signature={signature!r}"
                )
            self._function = self._loaded.signatures[signature]
            self._takes_training = False

        # Wrap (not copy) each tf.Variable in a Keras variable: the SavedModel's
        # functions read the very same storage that the optimizer updates.
        trainable_vars, non_trainable_vars = _variables_used_by(self._function)
        trainable_ids = {id(v) for v in trainable_vars}
        for variable in trainable_vars + non_trainable_vars:
            self._track_variable(
                keras.Variable(
                    initializer=variable,
                    trainable=id(variable) in trainable_ids,
                    dtype=variable.dtype,
                    shape=variable.shape,
                    name=variable.name.split(":")[0].replace("/", "_"),
                )
            )
        # A Keras 3 layer with tracked variables must say that it is built.
        self.built = True

    def call(self, inputs, training=None):
        if self.signature is not None:
            outputs = self._function(**{self.signature_input: inputs})
        elif self._takes_training:
            outputs = self._function(inputs, training=bool(training) and self.trainable)
        else:
            outputs = self._function(inputs)
        if isinstance(outputs, dict):
            if self.output_key is None:
                if len(outputs) != 1:
                    raise ValueError(
                        "Expected output_key to name one of the SavedModel's outputs "
                        f"{sorted(outputs)}. Received: output_key=None"
                    )
                (outputs,) = outputs.values()
            elif self.output_key not in outputs:
                raise ValueError(
                    f"Expected output_key to be one of {sorted(outputs)}. "
                    f"Received: output_key={self.output_key!r}"
                )
            else:
                outputs = outputs[self.output_key]
        return tf.cast(outputs, "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "handle": self.handle,
                "signature": self.signature,
                "signature_input": self.signature_input,
                "output_key": self.output_key,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        if in_safe_mode() is not False:
            raise ValueError(
                "Requested the deserialization of a HubEncoder, which loads and runs the "
                f"SavedModel at handle={config.get('handle')!r}. This is refused in safe mode. "
                "If you trust it, pass safe_mode=False to keras.saving.load_model() or "
                "keras.saving.deserialize_keras_object(), or call "
                "keras.config.enable_unsafe_deserialization()."
            )
        return cls(**config)
