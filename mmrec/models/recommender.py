"""The multimodal two-tower recommender: item tower over content, user tower over history.

Where it sits in the data flow: training batches come from
``data.interactions(split, content=True)`` — ids plus the content of the batch's
targets (and of ``negatives=M`` sampled items), gathered by tf.data — so a
training step runs the item tower (`MultimodalItemEncoder`, optionally plus an
item-id embedding) on the batch's items only: its cost follows the batch, not
the catalogue. The user tower (`UserEncoder` → MLP) reads the history's items
from the item table (`mmrec.models.item_table`), which ``fit`` refreshes every
epoch. The loss is a softmax over the batch's candidates (global under
`tf.distribute`), log-Q corrected (keras-rs `SamplingProbabilityCorrection`),
accidental hits removed. A score is ``cos(user, item) / temperature +
item_bias[item]``; `recommend` ranks the table with `top_k_excluding`.
`build_user_encoder()` is what the personalised generators condition on.
Design and numbers: docs/recommender.md.

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
from mmrec.layers.user import UserEncoder, user_encoder_model
from mmrec.models.catalogue import ItemKeys, ItemKeysMixin, content_spec, target_frequencies
from mmrec.models.item_table import (
    RefreshItemEmbeddings,
    blank_items,
    catalogue_batches,
    check_content_spec,
    embed_catalogue,
)
from mmrec.models.retrieval import (  # noqa: F401  (top_k_excluding: also public here)
    REMOVED_LOGIT,
    check_history_ids,
    gather_across_replicas,
    remove_accidental_hits,
    top_k_excluding,
)


@keras.saving.register_keras_serializable(package="mmrec")
class Recommender(ItemKeysMixin, keras.Model):
    """Multimodal two-tower retrieval model trained with a (global) in-batch softmax.

    Build it with `Recommender.from_dataset(data)`; the constructor takes the
    parts. Content-free (ID-only) models are the same class with
    `item_encoder=None, item_id_embedding=True`.

    Args:
        num_items: N, the catalogue's size.
        item_encoder: a `MultimodalItemEncoder` taking the items' content (text
            as token ids; `tokenizer` turns raw text into them), or None for an
            ID-only model.
        content_spec: what the item tower takes per item, by modality, e.g.
            ``{"image": {"shape": [32, 32, 3], "dtype": "uint8"}, "text":
            {"shape": [], "dtype": "string"}}`` (raw text needs `tokenizer`).
        item_id_embedding: add a learned per-item embedding to the item tower.
        item_bias: add a learned per-item bias to the logits.
        item_bias_l2: the L2 penalty on the biases, per training batch.
        unseen_bias_neighbours: content models: at the end of ``fit`` an item never a
            target gets the mean bias of this many look-alikes (0: it keeps 0).
        user_pooling: `UserEncoder` pooling, "mean" or "transformer".
        temperature: softmax temperature on cosine similarities.
        item_frequencies: how often each item is a training target (for the
            sampling-probability correction); uniform if None.
        tokenizer: the `TextTokenizer` that turns the items' texts into the
            token ids the text encoder takes.
        item_keys: the items' external keys (``item_keys[i]`` is item i's key, a
            non-empty string), or None. Saved in the config, so a reloaded (or
            exported) model still speaks them.
        refresh_every: refresh the item table every this many training steps as
            well as at every epoch's start (None: per epoch only).
        dtype: the dtype policy (e.g. ``"mixed_bfloat16"``) of the model and of
            every layer it builds; None for the global policy. It is saved in the
            config, so a reloaded model computes as it was trained.

    Example:

    ```python
    data = mmrec.data.load("tf_records/shapes")
    rec = mmrec.models.Recommender.from_dataset(data)
    rec.compile()
    rec.fit(data.interactions("train", content=True), epochs=5)
    ids, scores = rec.recommend(history=[[3, 17, 42]], k=10)
    # A dataset with id maps (e.g. imported from MovieLens): external keys in and out.
    history = rec.item_ids_for([["1", "296", "593"]])
    ids, scores, keys = rec.recommend(history, k=10, return_keys=True)
    ```
    """

    def __init__(
        self,
        num_items,
        item_encoder=None,
        content_spec=None,
        item_id_embedding=False,
        item_bias=False,
        item_bias_l2=1e-4,
        unseen_bias_neighbours=5,
        user_pooling="mean",
        temperature=0.2,
        item_frequencies=None,
        tokenizer=None,
        max_history=50,
        embedding_dim=None,
        item_keys=None,
        refresh_every=None,
        dtype=None,
        **kwargs,
    ):
        policy = resolve_policy(dtype)
        super().__init__(dtype=policy, **kwargs)
        content_spec = {m: dict(v) for m, v in (content_spec or {}).items()}
        if not isinstance(num_items, int) or isinstance(num_items, bool) or num_items < 1:
            raise ValueError(f"Expected num_items to be a positive int. Received: {num_items!r}")
        if item_encoder is None and not item_id_embedding:
            raise ValueError(
                "Expected an item_encoder, item_id_embedding=True, or both. Received neither."
            )
        if item_encoder is not None:
            check_content_spec(content_spec, item_encoder.modalities, tokenizer)
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

        # === Weights: the item-embedding table, the candidates' sampling probabilities ===
        # The catalogue's embeddings as of the last refresh: what the user tower reads
        # the history's items from, and what recommend / evaluation / export rank.
        self.item_table = self.add_weight(
            shape=(num_items, embedding_dim),
            initializer="zeros",
            trainable=False,
            autocast=False,
            name="item_embedding_table",
        )
        frequencies = (
            np.ones(num_items) if item_frequencies is None else np.asarray(item_frequencies)
        )
        probability = (frequencies + 1.0) / (frequencies + 1.0).sum()  # add-one: finite
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
        # Where refresh_item_embeddings() reads the catalogue from (not saved): set by
        # from_dataset, or by use_catalogue(data) on a loaded model.
        self.catalogue_source = None

        # === Config ===
        self.num_items = num_items
        self.item_id_embedding = item_id_embedding
        self.item_bias_l2 = float(item_bias_l2)
        self.unseen_bias_neighbours = int(unseen_bias_neighbours)
        self.unseen_items = np.flatnonzero(frequencies == 0)  # never a target; not saved
        self.user_pooling = user_pooling
        self.temperature = temperature
        self.max_history = max_history
        self.embedding_dim = embedding_dim
        self.content_spec = content_spec
        self.refresh_every = refresh_every
        self.build()

    def build(self, input_shape=None):
        """Creates every weight now (by embedding one blank item and one empty history),
        so that a saved model always holds all of them."""
        if self.built:
            return
        item = self.embed_items(self.blank_content(1), ops.zeros((1,), "int32"))
        if self.item_encoder is None:
            self.item_table.assign(self.embed_items({}, ops.arange(self.num_items)))
        self.user_embeddings(ops.full((1, self.max_history), PAD_ID, "int32"), item)
        self.built = True

    # --- the towers ---------------------------------------------------------------------

    @property
    def modalities(self) -> tuple[str, ...]:
        """The content modalities the item tower takes (empty for an ID-only model)."""
        return () if self.item_encoder is None else tuple(self.item_encoder.modalities)

    def embed_items(self, content, item_ids=None, training=False):
        """The item tower on a batch of items: unit-norm float32 [B, D].

        Args:
            content: the items' content by modality, as `content_spec` describes
                it (`image` uint8 [B, H, W, 3], `text` raw strings [B] or token ids,
                `audio` float32 [B, samples]); ``{}`` for an ID-only model.
            item_ids: int [B], needed when the model has an item-id embedding.
        """
        embedding = 0.0
        if self.item_encoder is not None:
            missing = [m for m in self.modalities if m not in content]
            if missing:
                raise ValueError(
                    f"Expected the items' content for the modalities {list(self.modalities)}. "
                    f"Missing: {missing}. Train on data.interactions(split, content=True)."
                )
            features = {m: content[m] for m in self.modalities}
            if "text" in features and self.content_spec["text"]["dtype"] == "string":
                features["text"] = self.tokenizer(features["text"])
            embedding = self.item_encoder(features, training=training)
        if self.item_ids is not None:
            if item_ids is None:
                raise ValueError("Expected item_ids: this model has an item-id embedding.")
            # In float32: under mixed precision the two towers' outputs differ in dtype.
            ids = self.item_ids(ops.cast(item_ids, "int32"))
            embedding = ops.cast(embedding, "float32") + ops.cast(ids, "float32")
        return ops.normalize(ops.cast(embedding, "float32"), axis=-1)

    def blank_content(self, rows):
        """``rows`` blank items (zeros, empty text) in `content_spec`'s shapes and dtypes."""
        return blank_items(self.content_spec, rows)

    def item_embeddings(self):
        """The catalogue's embeddings, [N, D], unit norm: the table as of the last
        `refresh_item_embeddings` (``fit`` refreshes it every epoch and at its end): a
        snapshot, which later refreshes leave alone (not the table's variable)."""
        return ops.copy(self.item_table)

    def use_catalogue(self, items):
        """Where `refresh_item_embeddings` reads the catalogue from by default: a
        dataset from `mmrec.data.load` or batches of items (see `catalogue_batches`).
        `from_dataset` sets its dataset; a loaded model needs this to train."""
        self.catalogue_source = items

    def refresh_item_embeddings(self, items=None, batch_size=1024, verbose=0):
        """Embeds the whole catalogue into the item table, ``batch_size`` items at a time,
        and returns it (float32 [N, D]).

        Args:
            items: batches ``{"item_id": [B], <modality>: [B, ...]}`` covering the
                catalogue (e.g. ``data.items(1024)``); by default `use_catalogue`'s.
            verbose: 1 for a progress bar.
        """
        if self.item_encoder is None:  # ID-only: no content, one pass over the ids
            self.item_table.assign(self.embed_items({}, ops.arange(self.num_items)))
            return self.item_embeddings()
        if items is None:
            items = catalogue_batches(self.catalogue_source, self.modalities, batch_size)
        embed_catalogue(self._embed_for_table, items, self.item_table, verbose)
        return self.item_embeddings()

    @tf.function(reduce_retracing=True)
    def _embed_for_table(self, batch, ids):
        return self.embed_items({m: batch[m] for m in self.modalities}, ids)

    def user_embeddings(self, history, item_embeddings, training=False):
        """User embeddings [B, D] from padded histories [B, L] (`PAD_ID` = -1)."""
        history = ops.cast(history, "int32")
        gathered = ops.take(item_embeddings, ops.maximum(history, 0), axis=0)
        return self._users_from(gathered, history, training)

    def _users_from(self, gathered, history, training):
        pooled = self.user_tower(gathered, item_ids=history, training=training)
        user = self.user_projection(self.user_hidden(pooled), training=training)
        return ops.normalize(ops.cast(user, "float32"), axis=-1)

    def call(self, inputs, training=False):
        """`{"history": [B, L]}` (or the history tensor) → user embeddings [B, D]."""
        history = inputs["history"] if isinstance(inputs, dict) else inputs
        return self.user_embeddings(history, self._history_table(), training)

    def _history_table(self):
        # ID-only models embed the history live (a lookup: cheap, and it trains the id
        # embeddings from both sides); content models read the table (stop-gradient).
        if self.item_encoder is None:
            return self.embed_items({}, ops.arange(self.num_items))
        return ops.stop_gradient(self.item_embeddings())

    def build_user_encoder(self, frozen=True) -> keras.Model:
        """The user tower as a functional model: ``{"history": int32 [B, L]}`` → float32 [B, D].

        What the personalised generators condition on. Histories are padded with
        -1. The output equals ``user_embeddings(history, item_embeddings())``
        (unit norm, float32 under every policy), over a copy of the item table
        (`ItemEmbeddingTable`); it saves to ``.keras`` and loads with
        ``safe_mode=True`` without this recommender.

        Args:
            frozen: True for an independent, non-trainable snapshot of the user
                tower; False to share (and train) the recommender's layers. The
                item embeddings are a snapshot in both cases.

        Example:

        ```python
        encoder = rec.build_user_encoder()
        users = encoder({"history": np.array([[3, 17, 42, -1]], "int32")})  # [1, D]
        encoder.save("user_encoder.keras")
        ```
        """
        tower = (self.user_tower, self.user_hidden, self.user_projection)
        if frozen:
            tower = tuple(type(layer).from_config(layer.get_config()) for layer in tower)
        encoder = user_encoder_model(ops.convert_to_numpy(self.item_embeddings()), *tower)
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

    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit` on ``data.interactions(split, content=True, ...)`` batches,
        refreshing the item table at every epoch's start, before validation and at the end."""
        callbacks = [*(callbacks or []), RefreshItemEmbeddings(self.refresh_every)]
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def _loss(self, batch, training):
        users = self._batch_users(batch, training)
        target = ops.cast(batch["target"], "int32")
        items = self.embed_items(batch, target, training)
        # The candidates of every replica (a global softmax under tf.distribute).
        (items, candidates), offset = gather_across_replicas(items, target)
        probability = ops.take(self.sampling_probability, candidates)
        logits = self._candidate_logits(users, items, candidates, probability)
        positives = offset + ops.arange(ops.shape(users)[0])
        logits = remove_accidental_hits(logits, candidates, target, positives)
        if "negatives" in batch:  # mixed negative sampling: uniform draws, corrected as such
            ids = ops.cast(batch["negatives"]["item_id"], "int32")
            sampled = self.embed_items(batch["negatives"], ids, training)
            uniform = ops.full(ops.shape(ids), 1.0 / self.num_items)
            sampled = self._candidate_logits(users, sampled, ids, uniform)
            accidental = ops.equal(target[:, None], ids[None, :])
            sampled = ops.where(accidental, ops.cast(REMOVED_LOGIT, sampled.dtype), sampled)
            logits = ops.concatenate([logits, sampled], axis=1)
        loss = self.loss_fn(ops.one_hot(positives, ops.shape(logits)[1]), logits)
        if self.item_bias is not None and self.item_bias_l2:
            # Divided like the loss (Keras' Loss divides by the replica count), so the
            # summed replica gradients carry the penalty once.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss = loss + self.item_bias_l2 * ops.sum(ops.square(self.item_bias)) / replicas
        return loss

    def _batch_users(self, batch, training):
        # History items whose content the batch carries (history_items) go through the
        # item tower, with gradient; the others are read from the item table.
        history = ops.cast(batch["history"], "int32")
        gathered = ops.take(self._history_table(), ops.maximum(history, 0), axis=0)
        if "history_items" in batch:
            items = batch["history_items"]
            fresh = self.embed_items(items, ops.cast(items["item_id"], "int32"), training)
            index = ops.cast(batch["history_index"], "int32")
            fresh = ops.take(fresh, ops.maximum(index, 0), axis=0)
            gathered = ops.where(index[..., None] >= 0, fresh, gathered)
        return self._users_from(gathered, history, training)

    def _candidate_logits(self, users, items, ids, probability):
        """Logits of users against candidate items, log-Q corrected by their probability."""
        logits = ops.matmul(users, ops.transpose(items)) / self.temperature
        if self.item_bias is not None:
            logits = logits + ops.take(self.item_bias, ids)[None, :]
        return self.correction(logits, probability)

    def train_step(self, batch):
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            # Per global batch already: Keras' Loss divides each replica's mean by the
            # replica count, so the replicas' summed gradients are the global batch's.
            loss = self._loss(batch, training=True)
            # Under mixed_float16 the optimizer is a LossScaleOptimizer, whose apply()
            # unscales the gradients: the loss is scaled to match (else a no-op).
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
            batch_size: users scored at a time.
            item_embeddings: the items to rank, [N, D] (default: `item_embeddings()`).
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
        items = self.item_embeddings() if item_embeddings is None else item_embeddings
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

    def score_items(self, history, item_embeddings=None):
        """Scores of every catalogue item for each history: float32 [B, N].

        A score is the logit the model was trained with:
        ``cos(user, item) / temperature + item_bias[item]``.
        """
        history = pad_histories(history, self.max_history)[0]
        items = self.item_embeddings() if item_embeddings is None else item_embeddings
        users = self.user_embeddings(history, items)
        scores = ops.matmul(users, ops.transpose(items)) / self.temperature
        if self.item_bias is not None:
            scores = scores + self.item_bias[None, :]
        return ops.convert_to_numpy(scores)

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
        """Wires content spec, vocabulary, sizes and target frequencies from a dataset.

        `modalities=None` uses every modality the dataset has; `modalities=()` with
        `item_id_embedding=True` gives the ID-only baseline. A per-item bias is on
        by default (`item_bias=True`). The dataset's item keys, if it has id maps,
        become `item_keys`. Warns when the text encoder's ``sequence_length``
        truncates more than 5% of the catalogue's texts. The model reads the
        catalogue from ``data`` when it refreshes its item table (`use_catalogue`).
        Other keyword arguments go to the constructor, e.g.
        `dtype="mixed_bfloat16"` (the item encoder gets the same policy).
        """
        policy = resolve_policy(kwargs.pop("dtype", None))
        modalities = tuple(data.info.modalities if modalities is None else modalities)
        spec, tokenizer, encoder_config = content_spec(data, modalities, encoder_config)
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
        model = cls(
            num_items=data.info.num_items,
            item_encoder=item_encoder,
            content_spec=spec,
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
        model.use_catalogue(data)
        model.refresh_item_embeddings()
        return model

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
            "content_spec": self.content_spec,
            "item_id_embedding": self.item_id_embedding,
            "item_bias": self.item_bias is not None,
            "item_bias_l2": self.item_bias_l2,
            "unseen_bias_neighbours": self.unseen_bias_neighbours,
            "user_pooling": self.user_pooling,
            "temperature": self.temperature,
            "tokenizer": (
                None
                if self.tokenizer is None
                else keras.saving.serialize_keras_object(self.tokenizer)
            ),
            "max_history": self.max_history,
            "embedding_dim": self.embedding_dim,
            "item_keys": self.item_keys,
            "refresh_every": self.refresh_every,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("item_encoder", "tokenizer"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
