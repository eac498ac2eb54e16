"""The user tower: a history of item embeddings → one user embedding.

Where it sits in the data flow: the recommender gathers the embeddings of the
items in a user's history (padded item ids, ``PAD_ID = -1``, looked up in the
catalogue's item embeddings) and `UserEncoder` pools them into a vector in the
same space as the item embeddings, so that ``dot(user, item)`` scores items.
`ItemEmbeddingTable` is that lookup as a layer, for models that embed the
catalogue once (`Recommender.build_user_encoder`).
"""

import keras
from keras import ops

from mmrec.formats import PAD_ID
from mmrec.layers.sequence import MaskedMeanPooling, PositionEmbedding, TransformerBlock

USER_POOLINGS = ("mean", "transformer")


@keras.saving.register_keras_serializable(package="mmrec")
class UserEncoder(keras.layers.Layer):
    """Pools a history of item embeddings ``[B, L, D]`` into a user embedding ``[B, D]``.

    * ``pooling="mean"``: the mean of the real (unpadded) items; no weights.
    * ``pooling="transformer"``: learned position embeddings (position 0 is
      the first item of the history) → ``num_layers`` pre-norm transformer
      blocks in which padded items are never attended to → the mean of the
      real items' outputs.

    Padding is given either as ``mask`` (``[B, L]``, bool or 0/1, ``True`` =
    a real item) or as the padded ``item_ids`` (``[B, L]``, ``PAD_ID = -1``
    marks padding). The embeddings at padded positions are never read, and a
    row with no real item gives a zero vector (never NaN). The output is
    float32, also under mixed precision.

    Args:
        pooling: ``"mean"`` or ``"transformer"``.
        max_length: the longest history (transformer: size of the position table).
        num_layers: transformer blocks.
        num_heads: attention heads; the embedding width ``D`` must be divisible by it.

    Example:

    >>> history = np.random.normal(size=(2, 4, 8)).astype("float32")
    >>> item_ids = np.array([[3, 17, 42, -1], [-1, -1, -1, -1]])
    >>> user = UserEncoder(pooling="transformer", max_length=4)(history, item_ids=item_ids)
    >>> tuple(user.shape), bool(np.all(keras.ops.convert_to_numpy(user)[1] == 0))
    ((2, 8), True)
    """

    def __init__(self, pooling="mean", max_length=50, num_layers=1, num_heads=2, **kwargs):
        super().__init__(**kwargs)
        if pooling not in USER_POOLINGS:
            raise ValueError(
                f"Expected pooling to be one of {USER_POOLINGS}. Received: pooling={pooling!r}"
            )
        for name, value in [
            ("max_length", max_length),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
        ]:
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"Expected {name} to be a positive int. Received: {name}={value!r}"
                )
        self.pooling = pooling
        self.max_length = max_length
        self.num_layers = num_layers
        self.num_heads = num_heads
        # `mask` is the history's padding mask; the user embedding carries none.
        self.supports_masking = True

    def build(self, input_shape):
        self.pool = MaskedMeanPooling(name="pool", dtype=self.dtype_policy)
        if self.pooling == "transformer":
            width = input_shape[-1]
            if width % self.num_heads:
                raise ValueError(
                    "Expected the item embedding width to be divisible by num_heads. "
                    f"Received: width={width}, num_heads={self.num_heads}"
                )
            self.position_embedding = PositionEmbedding(
                self.max_length, name="position_embedding", dtype=self.dtype_policy
            )
            self.position_embedding.build(input_shape)
            self.blocks = []
            for i in range(self.num_layers):
                block = TransformerBlock(
                    self.num_heads, 2 * width, name=f"block{i}", dtype=self.dtype_policy
                )
                block.build(input_shape)
                self.blocks.append(block)

    def call(self, history, mask=None, item_ids=None):
        if mask is not None and item_ids is not None:
            raise ValueError("Expected either mask or item_ids, not both. Received: both")
        if item_ids is not None:
            mask = ops.not_equal(item_ids, PAD_ID)
        history = ops.cast(history, self.compute_dtype)
        if mask is None:
            mask = ops.ones(ops.shape(history)[:2], dtype="bool")
        mask = ops.cast(mask, "bool")
        # Padded positions may hold anything (e.g. the embedding of a clipped id).
        history = ops.where(mask[:, :, None], history, ops.zeros_like(history))
        if self.pooling == "transformer":
            history = self.position_embedding(history)
            for block in self.blocks:
                history = block(history, padding_mask=mask)
        return ops.cast(self.pool(history, mask=mask), "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "pooling": self.pooling,
                "max_length": self.max_length,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="mmrec")
class ItemEmbeddingTable(keras.layers.Layer):
    """A fixed table of item embeddings: padded item ids ``[B, L]`` → embeddings ``[B, L, D]``.

    The table is a non-trainable weight (saved with the model), set once from
    `Recommender.item_embeddings()`, so a model built on it looks items up
    instead of re-embedding the catalogue at every call. Padding (``PAD_ID =
    -1``) maps to zero vectors. The layer is float32 whatever the global policy:
    the table holds the embeddings exactly as the item tower produced them (a
    mixed-precision user tower casts them to its compute dtype itself).

    Args:
        num_items: N, the number of rows.
        embedding_dim: D, the width of an embedding.

    Example:

    >>> table = ItemEmbeddingTable(num_items=3, embedding_dim=2)
    >>> _ = table.embeddings.assign(np.eye(3, 2, dtype="float32"))
    >>> ops.convert_to_numpy(table(np.array([[1, -1]]))).tolist()
    [[[0.0, 1.0], [0.0, 0.0]]]
    """

    def __init__(self, num_items, embedding_dim, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        for name, value in [("num_items", num_items), ("embedding_dim", embedding_dim)]:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"Expected {name} to be a positive int. Received: {name}={value!r}"
                )
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.embeddings = self.add_weight(
            shape=(num_items, embedding_dim),
            initializer="zeros",
            trainable=False,
            name="embeddings",
        )
        self.built = True

    def call(self, item_ids):
        item_ids = ops.cast(item_ids, "int32")
        rows = ops.take(self.embeddings, ops.maximum(item_ids, 0), axis=0)
        real = ops.not_equal(item_ids, PAD_ID)[..., None]
        return ops.where(real, rows, ops.zeros_like(rows))

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config.update({"num_items": self.num_items, "embedding_dim": self.embedding_dim})
        return config


def user_encoder_model(item_embeddings, pooling, hidden, projection) -> keras.Model:
    """A functional user encoder ``{"history": int32 [B, L]}`` → unit-norm float32 [B, D]
    over a fixed `ItemEmbeddingTable` holding ``item_embeddings`` [N, D]: the table, then
    the given pooling (`UserEncoder`), hidden and projection layers (what
    `Recommender.build_user_encoder` wires from its user tower)."""
    # === Layers ===
    num_items, dim = item_embeddings.shape
    table = ItemEmbeddingTable(int(num_items), int(dim), name="item_embeddings")
    normalize = keras.layers.UnitNormalization(name="user_embedding", dtype="float32")

    # === Functional Model ===
    history = keras.Input(shape=(None,), dtype="int32", name="history")
    pooled = pooling(table(history), item_ids=history)
    user = normalize(projection(hidden(pooled)))
    encoder = keras.Model({"history": history}, user, name="user_encoder")

    # === Weights ===
    table.embeddings.assign(item_embeddings)
    return encoder
