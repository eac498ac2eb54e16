"""Sequence building blocks shared by `TextEncoder` (tokens) and `UserEncoder` (item histories).

A padding mask is always an explicit boolean ``[B, L]`` tensor (``True`` = a real
element). Every block here honours it and is defined for rows that are all
padding: they pool to zeros instead of producing NaN.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mmrec")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned position embedding to a ``[B, L, D]`` sequence, ``L <= sequence_length``.

    Args:
        sequence_length: the longest sequence the layer accepts.

    Example:

    >>> layer = PositionEmbedding(sequence_length=8)
    >>> tuple(layer(np.zeros((2, 5, 4), "float32")).shape)
    (2, 5, 4)
    """

    def __init__(self, sequence_length, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(sequence_length, int) or sequence_length <= 0:
            raise ValueError(
                "Expected sequence_length to be a positive int. "
                f"Received: sequence_length={sequence_length}"
            )
        self.sequence_length = sequence_length

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
        )

    def call(self, inputs):
        length = ops.shape(inputs)[1]
        positions = ops.cast(self.embeddings[:length], inputs.dtype)
        return inputs + positions[None, :, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"sequence_length": self.sequence_length})
        return config


@keras.saving.register_keras_serializable(package="mmrec")
class TransformerBlock(keras.layers.Layer):
    """A pre-norm transformer encoder block: self-attention then a feed-forward MLP.

    ``x + MHA(LN(x))`` followed by ``x + MLP(LN(x))``. Padded positions are
    never attended to (``padding_mask`` masks the keys); their own outputs are
    left to the caller's pooling to ignore.

    Args:
        num_heads: attention heads; the input width must be divisible by it.
        intermediate_dim: width of the feed-forward hidden layer.
        dropout: dropout rate after attention and in the MLP.

    Example:

    >>> block = TransformerBlock(num_heads=2, intermediate_dim=16)
    >>> x = np.random.normal(size=(2, 5, 8)).astype("float32")
    >>> mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    >>> tuple(block(x, padding_mask=mask).shape)
    (2, 5, 8)
    """

    def __init__(self, num_heads, intermediate_dim, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim % self.num_heads:
            raise ValueError(
                "Expected the input width to be divisible by num_heads. "
                f"Received: width={hidden_dim}, num_heads={self.num_heads}"
            )
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=self.dtype_policy)
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=hidden_dim // self.num_heads,
            dropout=self.dropout,
            dtype=self.dtype_policy,
        )
        self.mlp_norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=self.dtype_policy)
        self.mlp_hidden = keras.layers.Dense(
            self.intermediate_dim, activation="gelu", dtype=self.dtype_policy
        )
        self.mlp_output = keras.layers.Dense(hidden_dim, dtype=self.dtype_policy)
        self.mlp_dropout = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

        self.attention_norm.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.mlp_norm.build(input_shape)
        self.mlp_hidden.build(input_shape)
        self.mlp_output.build((*input_shape[:-1], self.intermediate_dim))

    def call(self, x, padding_mask=None, training=None):
        attention_mask = None
        if padding_mask is not None:
            # [B, 1, L] keys mask, broadcast over the queries: [B, L, L].
            keys = ops.expand_dims(ops.cast(padding_mask, "bool"), axis=1)
            attention_mask = ops.logical_and(keys, ops.ones_like(ops.transpose(keys, (0, 2, 1))))
        y = self.attention_norm(x)
        y = self.attention(y, y, attention_mask=attention_mask, training=training)
        x = x + y
        y = self.mlp_output(self.mlp_hidden(self.mlp_norm(x)))
        return x + self.mlp_dropout(y, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="mmrec")
class MaskedMeanPooling(keras.layers.Layer):
    """Mean over the real (unmasked) steps of ``[B, L, D]`` → ``[B, D]``; all-padding rows → 0.

    Example:

    >>> x = np.ones((2, 3, 4), "float32")
    >>> mask = np.array([[1, 1, 0], [0, 0, 0]], bool)
    >>> keras.ops.convert_to_numpy(MaskedMeanPooling()(x, mask=mask))[:, 0].tolist()
    [1.0, 0.0]
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.mean(inputs, axis=1)
        mask = ops.cast(mask, "bool")[:, :, None]
        # `where`, not a product: padded steps are never read (0 * NaN is NaN).
        total = ops.sum(ops.where(mask, inputs, ops.zeros_like(inputs)), axis=1)
        count = ops.sum(ops.cast(mask, inputs.dtype), axis=1)
        # max(count, 1): a row with no real step pools to 0, not 0 / 0.
        return total / ops.maximum(count, ops.ones_like(count))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def compute_mask(self, inputs, mask=None):
        return None
