"""The multimodal two-tower recommender: item tower over catalogue content, user tower over history.

Where it sits in the data flow: it holds the catalogue's content (decoded once by
`mmrec.data`) as non-trainable weights, so interaction batches carry only ids.
Each training step embeds the whole catalogue with the item tower
(`MultimodalItemEncoder`, optionally plus an item-id embedding), gathers the
history's item embeddings for the user tower (`UserEncoder` → projection), and
scores each user against the batch's targets with an in-batch softmax whose logits
are corrected for the candidates' sampling probability (keras-rs
`SamplingProbabilityCorrection`) and whose accidental hits (the same item as the
positive, elsewhere in the batch) are removed.

A score is the model's logit, ``cos(user, item) / temperature + item_bias[item]``.
The optional per-item bias carries what content cannot show: how popular an item
is beyond its attributes (see docs/recommender.md for how much that is worth).
Items never seen in training (cold items) keep a bias of 0, the average, because
an L2 penalty holds the learned biases around 0.

`recommend` ranks the whole catalogue in chunks (bounded memory), excluding the
user's history. A model built from a dataset with id maps keeps the items'
external keys (`item_keys`), so it takes and returns those as well
(`item_ids_for`, ``recommend(..., return_keys=True)``).

The generators personalise through `build_user_encoder()`, a saveable
functional model of the user tower over a snapshot of the catalogue's item
embeddings (`ItemEmbeddingTable`).

Mixed precision: the recommender builds every sublayer with its own ``dtype``
policy and saves it in its config, so a model trained under ``mixed_bfloat16``
reloads (and exports) computing in bfloat16 whatever the global policy then is.
"""

from __future__ import annotations

import keras
import keras_rs
import numpy as np
import tensorflow as tf
from keras import ops

from mmrec.formats import PAD_ID, pad_histories
from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.layers.item_encoder import MultimodalItemEncoder
from mmrec.layers.user import ItemEmbeddingTable, UserEncoder
from mmrec.models.catalogue import (
    ItemKeys,
    catalogue_content,
    target_frequencies,
)
from mmrec.models.retrieval import (  # noqa: F401  (top_k_excluding: also public here)
    check_history_ids,
    remove_accidental_hits,
    top_k_excluding,
)

_CATALOGUE_DTYPES = {"image": "uint8", "text": "int32", "audio": "float32"}


@keras.saving.register_keras_serializable(package="mmrec")
class Recommender(keras.Model):
    """Multimodal two-tower retrieval model trained with an in-batch softmax.

    Build it with `Recommender.from_dataset(data)`; the constructor takes the
    parts. Content-free (ID-only) models are the same class with
    `item_encoder=None, item_id_embedding=True`.

    Args:
        catalogue: content features by modality, arrays indexed by item id:
            `image` uint8 [N, H, W, 3], `text` int32 token ids [N, T] (see
            `tokenizer`), `audio` float32 [N, samples]. Stored as non-trainable
            weights, so a saved model carries its catalogue.
        num_items: N (needed when `catalogue` is empty).
        item_encoder: a `MultimodalItemEncoder` taking those features (text as
            token ids), or None for an ID-only model.
        item_id_embedding: add a learned per-item embedding to the item tower.
        item_bias: add a learned per-item bias to the logits (0 for items never
            seen in training).
        item_bias_l2: the L2 penalty on the biases, per training batch.
        user_pooling: `UserEncoder` pooling, "mean" or "transformer".
        temperature: softmax temperature on cosine similarities.
        item_frequencies: how often each item is a training target (for the
            sampling-probability correction); uniform if None.
        tokenizer: the `TextTokenizer` that made the catalogue's token ids (kept
            for exports that take raw text).
        item_keys: the items' external keys (``item_keys[i]`` is item i's key, a
            non-empty string), or None. Saved in the config, so a reloaded (or
            exported) model still speaks them.
        dtype: the dtype policy (e.g. ``"mixed_bfloat16"``) of the model and of
            every layer it builds; None for the global policy. It is saved in the
            config, so a reloaded model computes as it was trained.

    Example:

    ```python
    data = mmrec.data.load("tf_records/shapes")
    rec = mmrec.models.Recommender.from_dataset(data)
    rec.compile()
    rec.fit(data.interactions("train"), epochs=5)
    ids, scores = rec.recommend(history=[[3, 17, 42]], k=10)
    # A dataset with id maps (e.g. imported from MovieLens): external keys in and out.
    history = rec.item_ids_for([["1", "296", "593"]])
    ids, scores, keys = rec.recommend(history, k=10, return_keys=True)
    ```
    """

    def __init__(
        self,
        catalogue=None,
        num_items=None,
        item_encoder=None,
        item_id_embedding=False,
        item_bias=False,
        item_bias_l2=1e-4,
        user_pooling="mean",
        temperature=0.2,
        item_frequencies=None,
        tokenizer=None,
        max_history=50,
        embedding_dim=None,
        catalogue_spec=None,
        item_keys=None,
        dtype=None,
        **kwargs,
    ):
        policy = resolve_policy(dtype)
        super().__init__(dtype=policy, **kwargs)
        catalogue = dict(catalogue or {})
        if catalogue_spec is None:
            catalogue_spec = {
                name: {"shape": list(np.shape(v)), "dtype": _CATALOGUE_DTYPES[name]}
                for name, v in catalogue.items()
            }
        if num_items is None:
            if not catalogue_spec:
                raise ValueError("Expected num_items or a catalogue. Received neither.")
            num_items = next(iter(catalogue_spec.values()))["shape"][0]
        if item_encoder is None and not item_id_embedding:
            raise ValueError(
                "Expected an item_encoder, item_id_embedding=True, or both. Received neither."
            )
        if item_encoder is not None:
            missing = sorted(set(item_encoder.modalities) - set(catalogue_spec))
            if missing:
                raise ValueError(
                    f"Expected the catalogue to hold the item encoder's modalities "
                    f"{list(item_encoder.modalities)}. Missing: {missing}"
                )
            embedding_dim = item_encoder.embedding_dim
        embedding_dim = embedding_dim or 64
        if temperature <= 0:
            raise ValueError(f"Expected temperature > 0. Received: temperature={temperature}")
        if item_bias_l2 < 0:
            raise ValueError(f"Expected item_bias_l2 >= 0. Received: item_bias_l2={item_bias_l2}")

        # Checked here (not only in from_dataset), so that a bad list never gets saved.
        self._item_keys = None if item_keys is None else ItemKeys(item_keys, num_items)

        # === Layers ===
        self.item_encoder = item_encoder
        self.tokenizer = tokenizer
        self.item_ids = None
        if item_id_embedding:
            self.item_ids = keras.layers.Embedding(
                num_items,
                embedding_dim,
                embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05),
                name="item_id_embedding",
                dtype=policy,
            )
        self.user_tower = UserEncoder(
            pooling=user_pooling, max_length=max_history, name="users", dtype=policy
        )
        # An MLP after pooling: a dot product with the *mean* of the history is additive in
        # the item features; the hidden layer lets the tower sharpen that mean into "the
        # few things this user likes", which is what the ranking rewards.
        self.user_hidden = keras.layers.Dense(
            4 * embedding_dim, activation="gelu", name="user_hidden", dtype=policy
        )
        self.user_projection = keras.layers.Dense(
            embedding_dim, name="user_projection", dtype=policy
        )
        # float32 whatever the policy: it acts on the logits, which the softmax loss needs
        # at full precision (a bfloat16 logit keeps 3 significant digits).
        self.correction = keras_rs.layers.SamplingProbabilityCorrection(
            name="logq_correction", dtype="float32"
        )
        self.loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True)

        # === Weights: the catalogue and the candidates' sampling probabilities ===
        self.catalogue = {}
        for name, spec in catalogue_spec.items():
            # Not autocast: the content goes to the item encoder as it is stored (the
            # encoders cast it themselves), also inside a mixed-precision call().
            variable = self.add_weight(
                shape=tuple(spec["shape"]),
                dtype=spec["dtype"],
                initializer="zeros",
                trainable=False,
                autocast=False,
                name=f"catalogue_{name}",
            )
            if name in catalogue:
                variable.assign(np.asarray(catalogue[name], dtype=spec["dtype"]))
            self.catalogue[name] = variable
        frequencies = (
            np.ones(num_items) if item_frequencies is None else np.asarray(item_frequencies)
        )
        # Add-one smoothing: items never seen as targets keep a finite correction.
        probability = (frequencies + 1.0) / (frequencies + 1.0).sum()
        self.sampling_probability = self.add_weight(
            shape=(num_items,), initializer="zeros", trainable=False, name="sampling_probability"
        )
        self.sampling_probability.assign(probability.astype("float32"))
        self.item_bias = None
        if item_bias:
            self.item_bias = self.add_weight(
                shape=(num_items,), initializer="zeros", trainable=True, name="item_bias"
            )
        self.loss_tracker = keras.metrics.Mean(name="loss")

        # === Config ===
        self.num_items = num_items
        self.item_id_embedding = item_id_embedding
        self.item_bias_l2 = float(item_bias_l2)
        self.user_pooling = user_pooling
        self.temperature = temperature
        self.max_history = max_history
        self.embedding_dim = embedding_dim
        self.catalogue_spec = catalogue_spec
        self.build()

    def build(self, input_shape=None):
        """Creates every weight now (by embedding one item and one empty history), so
        that a saved model always holds all of them."""
        if self.built:
            return
        item = self._embed_items(ops.zeros((1,), "int32"), training=False)
        self.user_embeddings(ops.full((1, self.max_history), PAD_ID, "int32"), item)
        self.built = True

    # --- the towers ---------------------------------------------------------------------

    def item_embeddings(self, training=False, batch_size=None):
        """Embeddings of the whole catalogue, [N, D], unit norm."""
        if batch_size is None:
            return self._embed_items(None, training)
        parts = [
            self._embed_items(tf.range(s, min(s + batch_size, self.num_items)), training)
            for s in range(0, self.num_items, batch_size)
        ]
        return ops.concatenate(parts, axis=0)

    def _embed_items(self, ids, training):
        embedding = 0.0
        if self.item_encoder is not None:
            features = {
                m: (v if ids is None else ops.take(v, ids, axis=0))
                for m, v in self.catalogue.items()
                if m in self.item_encoder.modalities
            }
            embedding = self.item_encoder(features, training=training)
        if self.item_ids is not None:
            all_ids = ops.arange(self.num_items) if ids is None else ids
            # In float32: under mixed precision the two towers' outputs differ in dtype.
            embedding = ops.add(
                ops.cast(embedding, "float32"), ops.cast(self.item_ids(all_ids), "float32")
            )
        return ops.normalize(ops.cast(embedding, "float32"), axis=-1)

    def user_embeddings(self, history, item_embeddings, training=False):
        """User embeddings [B, D] from padded histories [B, L] (`PAD_ID` = -1)."""
        history = ops.cast(history, "int32")
        gathered = ops.take(item_embeddings, ops.maximum(history, 0), axis=0)
        pooled = self.user_tower(gathered, item_ids=history, training=training)
        user = self.user_projection(self.user_hidden(pooled), training=training)
        return ops.normalize(ops.cast(user, "float32"), axis=-1)

    def call(self, inputs, training=False):
        """`{"history": [B, L]}` (or the history tensor) → user embeddings [B, D]."""
        history = inputs["history"] if isinstance(inputs, dict) else inputs
        return self.user_embeddings(history, self.item_embeddings(training), training)

    def build_user_encoder(self, frozen=True, batch_size=1024) -> keras.Model:
        """The user tower as a functional model: ``{"history": int32 [B, L]}`` → float32 [B, D].

        What the personalised generators condition on. Histories are padded with
        -1 (any ``L``; ``recommend`` keeps the ``max_history`` most recent items).
        The output equals ``user_embeddings(history, item_embeddings())``: unit
        norm, float32 also under mixed precision.

        The catalogue is embedded once, here, into an `ItemEmbeddingTable` (a
        non-trainable weight), so a call costs one lookup and one user-tower
        pass. The model holds only registered layers: it saves to ``.keras`` and
        loads with ``safe_mode=True`` without this recommender.

        Args:
            frozen: True for an independent snapshot: copies of the user-tower
                layers with this model's weights, not trainable (training the
                recommender later leaves it unchanged, and freezing it never
                freezes the recommender). False to share the recommender's
                user-tower layers: the encoder then follows (and trains) them.
                The item embeddings are a snapshot in both cases.
            batch_size: items embedded at a time when computing the table.

        Example:

        ```python
        encoder = rec.build_user_encoder()
        users = encoder({"history": np.array([[3, 17, 42, -1]], "int32")})  # [1, D]
        encoder.save("user_encoder.keras")
        ```
        """
        items = ops.convert_to_numpy(self.item_embeddings(batch_size=batch_size))
        tower = (self.user_tower, self.user_hidden, self.user_projection)
        if frozen:
            tower = tuple(type(layer).from_config(layer.get_config()) for layer in tower)
        pooling, hidden, projection = tower

        # === Layers ===
        table = ItemEmbeddingTable(self.num_items, items.shape[1], name="item_embeddings")
        normalize = keras.layers.UnitNormalization(name="user_embedding", dtype="float32")

        # === Functional Model ===
        history = keras.Input(shape=(None,), dtype="int32", name="history")
        pooled = pooling(table(history), item_ids=history)
        user = normalize(projection(hidden(pooled)))
        encoder = keras.Model({"history": history}, user, name="user_encoder")

        # === Weights ===
        table.embeddings.assign(items)
        if frozen:
            originals = (self.user_tower, self.user_hidden, self.user_projection)
            for copy, original in zip(tower, originals, strict=True):
                copy.set_weights(original.get_weights())
            encoder.trainable = False
        return encoder

    # --- training -----------------------------------------------------------------------

    def compile(self, optimizer=None, **kwargs):
        """Adam(1e-3) by default; the loss is the model's own in-batch softmax."""
        super().compile(optimizer=optimizer or keras.optimizers.Adam(1e-3), **kwargs)

    def compile_from_config(self, config):
        optimizer = config.get("optimizer")
        self.compile(
            optimizer=keras.saving.deserialize_keras_object(optimizer) if optimizer else None
        )
        # Built now, so that the saved optimizer state loads into it (training resumes
        # where it stopped instead of Keras skipping the state with a warning).
        self.optimizer.build(self.trainable_variables)

    def _loss(self, batch, training):
        items = self.item_embeddings(training)
        users = self.user_embeddings(batch["history"], items, training)
        target = ops.cast(batch["target"], "int32")
        logits = ops.matmul(users, ops.transpose(ops.take(items, target, axis=0)))
        logits = logits / self.temperature
        if self.item_bias is not None:
            logits = logits + ops.take(self.item_bias, target)[None, :]
        logits = self.correction(logits, ops.take(self.sampling_probability, target))
        logits = remove_accidental_hits(logits, target)
        labels = ops.eye(ops.shape(logits)[0])
        loss = self.loss_fn(labels, logits)
        if self.item_bias is not None and self.item_bias_l2:
            # Divided like the loss (Keras' Loss divides by the replica count), so the
            # summed replica gradients carry the penalty once.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = loss + self.item_bias_l2 * ops.sum(ops.square(self.item_bias)) / replicas
        return loss

    def train_step(self, batch):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            # Per global batch already: under tf.distribute, Keras' Loss divides each
            # replica's mean by the replica count (keras.losses.Loss, "sum_over_batch_size"),
            # so the replicas' summed gradients are those of the global batch.
            loss = self._loss(batch, training=True)
            # Under mixed_float16, compile() wraps the optimizer in a LossScaleOptimizer,
            # whose apply() unscales the gradients: the loss must be scaled to match
            # (a no-op for other optimizers).
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        self.loss_tracker.update_state(loss * replicas)  # the replica's own mean loss
        return {"loss": self.loss_tracker.result()}

    def test_step(self, batch):
        # Keras' Loss divides by the replica count; undo that so val_loss is per example.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.loss_tracker.update_state(self._loss(batch, training=False) * replicas)
        return {"loss": self.loss_tracker.result()}

    @property
    def metrics(self):
        return [self.loss_tracker]

    # --- inference ----------------------------------------------------------------------

    def recommend(
        self,
        history,
        k=10,
        exclude_history=True,
        batch_size=1024,
        item_embeddings=None,
        return_keys=False,
    ):
        """Top-k item ids and scores for each history, excluding the history's items.

        Args:
            history: int [B, L] (padded with -1) or a list of lists of item ids
                (`item_ids_for` turns external keys into ids).
            k: how many items to return per user.
            exclude_history: never recommend an item the user already has.
            item_embeddings: the catalogue's embeddings from `item_embeddings()`, to
                reuse across calls (they are computed here if not given).
            return_keys: also return the items' external keys (the model needs
                `item_keys`).
        Returns:
            `(ids int32 [B, k], scores float32 [B, k])`, best first; a score is
            the model's logit (see `score_items`). With ``return_keys=True``,
            `(ids, scores, keys)`, ``keys`` a NumPy array of str [B, k].
        """
        if return_keys:
            self._keys("return_keys=True")
        history = pad_histories(history, self.max_history)[0]
        check_history_ids(history, self.num_items)
        items = item_embeddings
        if items is None:
            items = self.item_embeddings(batch_size=batch_size)
        ids, scores = [], []
        for start in range(0, len(history), batch_size):
            rows = history[start : start + batch_size]
            users = self.user_embeddings(rows, items)
            exclude = rows if exclude_history else np.full_like(rows, PAD_ID)
            top_ids, top_scores = top_k_excluding(
                users / self.temperature, items, exclude, k, item_bias=self.item_bias
            )
            ids.append(top_ids.numpy())
            scores.append(top_scores.numpy())
        ids, scores = np.concatenate(ids), np.concatenate(scores)
        if return_keys:
            return ids, scores, self._item_keys.keys_for(ids)
        return ids, scores

    def score_items(self, history, batch_size=1024, item_embeddings=None):
        """Scores of every catalogue item for each history: float32 [B, N].

        A score is the logit the model was trained with:
        ``cos(user, item) / temperature + item_bias[item]``.
        """
        history = pad_histories(history, self.max_history)[0]
        items = item_embeddings
        if items is None:
            items = self.item_embeddings(batch_size=batch_size)
        users = self.user_embeddings(history, items)
        scores = ops.matmul(users, ops.transpose(items)) / self.temperature
        if self.item_bias is not None:
            scores = scores + self.item_bias[None, :]
        return ops.convert_to_numpy(scores)

    # --- external item keys -------------------------------------------------------------

    @property
    def item_keys(self):
        """The items' external keys (``item_keys[i]`` is item i's), or None."""
        return None if self._item_keys is None else list(self._item_keys.keys)

    @property
    def item_key_to_id(self):
        """External key → item id (a dict; raises `ValueError` without `item_keys`)."""
        return self._keys("item_key_to_id").to_id

    def item_ids_for(self, keys):
        """Item ids of external keys, nested like ``keys`` (a key, a list, a list of lists).

        Raises:
            ValueError: naming the keys the catalogue does not have.

        Example:

        ```python
        ids, scores = rec.recommend(rec.item_ids_for([["1", "296"], ["593"]]))
        ```
        """
        return self._keys("item_ids_for").ids_for(keys)

    def _keys(self, what):
        if self._item_keys is None:
            raise ValueError(
                f"{what} needs the items' external keys, and this Recommender has none "
                "(item_keys=None: its dataset has no id maps, e.g. a synthetic benchmark). "
                "Use item ids, or build it from a dataset imported with `mmrec data import`."
            )
        return self._item_keys

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_dataset(
        cls,
        data,
        modalities=None,
        fusion="concat",
        embedding_dim=64,
        item_id_embedding=False,
        item_bias=True,
        user_pooling="mean",
        encoder_config=None,
        **kwargs,
    ):
        """Wires catalogue, vocabulary, sizes and target frequencies from a dataset.

        `modalities=None` uses every modality the dataset has; `modalities=()` with
        `item_id_embedding=True` gives the ID-only baseline. A per-item bias is on
        by default (`item_bias=True`). The dataset's item keys, if it has id maps,
        become `item_keys`. Warns when the text encoder's ``sequence_length``
        truncates more than 5% of the catalogue's texts. Other keyword arguments
        go to the constructor, e.g. `dtype="mixed_bfloat16"` (the item encoder
        gets the same policy).
        """
        policy = resolve_policy(kwargs.pop("dtype", None))
        modalities = tuple(data.info.modalities if modalities is None else modalities)
        content, tokenizer, encoder_config = catalogue_content(data, modalities, encoder_config)
        item_encoder = None
        if modalities:
            item_encoder = MultimodalItemEncoder(
                modalities=modalities,
                fusion=fusion,
                embedding_dim=embedding_dim,
                encoder_config=encoder_config,
                name="item_encoder",
                dtype=policy,
            )
        kwargs.setdefault("item_keys", data.item_keys())  # None without id maps
        return cls(
            catalogue=content,
            num_items=data.info.num_items,
            item_encoder=item_encoder,
            item_id_embedding=item_id_embedding,
            item_bias=item_bias,
            user_pooling=user_pooling,
            item_frequencies=target_frequencies(data),
            tokenizer=tokenizer,
            max_history=data.info.max_history,
            embedding_dim=embedding_dim,
            dtype=policy,
            **kwargs,
        )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "num_items": self.num_items,
            "item_encoder": (
                None
                if self.item_encoder is None
                else keras.saving.serialize_keras_object(self.item_encoder)
            ),
            "item_id_embedding": self.item_id_embedding,
            "item_bias": self.item_bias is not None,
            "item_bias_l2": self.item_bias_l2,
            "user_pooling": self.user_pooling,
            "temperature": self.temperature,
            "tokenizer": (
                None
                if self.tokenizer is None
                else keras.saving.serialize_keras_object(self.tokenizer)
            ),
            "max_history": self.max_history,
            "embedding_dim": self.embedding_dim,
            "catalogue_spec": self.catalogue_spec,
            "item_keys": self.item_keys,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("item_encoder", "tokenizer"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
