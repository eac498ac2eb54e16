"""User conditioning: "an item this user would like", through the recommender's user tower.

`AttributePreferenceModel` is the network: a user's history → a *frozen* user
encoder (``recommender.build_user_encoder()``) → a small head → the attribute
distributions the user prefers. `UserConditioning` samples attributes from it
and feeds them to an attribute network, so the generator trains on the chosen
items' own labels and the head trains (with its own optimizer) to predict them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from mmrec.formats import PAD_ID, pad_histories
from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.models.attributes import check_attributes, check_positive_int, label_key, num_classes
from mmrec.models.conditioning.attributes import AttributeConditioner
from mmrec.models.conditioning.base import (
    Conditioning,
    EvaluationConditions,
    dataset_attributes,
    register_conditioning,
)
from mmrec.models.losses import per_example_cross_entropy


@keras.saving.register_keras_serializable(package="mmrec")
class AttributePreferenceModel(keras.Model):
    """A user's history → the attribute distributions that user prefers, via a frozen user encoder.

    ``{"history": int32 [B, L]}`` (item ids, padded with -1) → ``user_encoder`` →
    a small MLP → one logit vector per attribute, ``{attribute: float32 [B, C]}``.
    The head is trained on the attributes of the items users chose; the user
    encoder stays frozen (``trainable=False``, called in inference mode): it is
    what the recommender knows about the user, and the generator must not pull
    it towards what is easy to draw.

    Args:
        user_encoder: any `keras.Model` ``{"history": int32 [B, L]}`` → float32 ``[B, D]``,
            e.g. ``recommender.build_user_encoder()``.
        attributes: attribute name → number of classes (or class names).
        hidden_dim: width of the head's hidden layer.
        dtype: the head's dtype policy (``None``: the global policy); logits are float32.

    Example:

    >>> history = keras.Input(shape=(None,), dtype="int32", name="history")
    >>> items = keras.layers.Embedding(50, 8)(keras.ops.maximum(history, 0))
    >>> user = mmrec.layers.UserEncoder()(items, item_ids=history)
    >>> user_encoder = keras.Model({"history": history}, user)
    >>> preferences = AttributePreferenceModel(user_encoder, {"shape": 8, "colour": 8})
    >>> logits = preferences({"history": np.array([[3, 17, 42, -1]])})
    >>> tuple(logits["shape"].shape)
    (1, 8)
    """

    def __init__(self, user_encoder, attributes, hidden_dim=64, dtype=None, **kwargs):
        if not isinstance(user_encoder, keras.Model):
            raise ValueError(
                "Expected user_encoder to be a keras.Model mapping {'history': int32 [B, L]} "
                f"to float32 [B, D]. Received: user_encoder={user_encoder!r}"
            )
        attributes = check_attributes(attributes)
        check_positive_int("hidden_dim", hidden_dim)
        policy = resolve_policy(dtype)
        user_encoder.trainable = False
        # === Layers ===
        self.user_encoder = user_encoder
        self.hidden = keras.layers.Dense(hidden_dim, activation="relu", name="hidden", dtype=policy)
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
        self.dtype_policy = policy

        # === Config ===
        self.attributes = attributes
        self.hidden_dim = hidden_dim

    @property
    def history_length(self):
        """The user encoder's history length (``None``: any)."""
        return keras.tree.flatten(self.user_encoder.inputs)[0].shape[1]

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "user_encoder": keras.saving.serialize_keras_object(self.user_encoder),
            "attributes": self.attributes,
            "hidden_dim": self.hidden_dim,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["user_encoder"] = keras.saving.deserialize_keras_object(config["user_encoder"])
        return cls(**config)


@register_conditioning("user")
class UserConditioning(Conditioning):
    """Condition on a user: a history of item ids → attributes sampled from their preferences.

    Training: the generator is conditioned on the chosen item's own labels (through
    the attribute ``network``), and the preference head learns to predict them from
    the history with an Adam(1e-3) of its own (at the generator's 2e-4 it stays far
    from converged within a CPU budget). Generation: the head's distributions,
    divided by a temperature, are sampled once per image. Serves ``history`` int32
    ``[B, L]`` padded with -1, and outputs the sampled ``label_<attribute>``.

    Args:
        network: an `AttributeConditioner`.
        preference_model: an `AttributePreferenceModel` over the same attributes.
    """

    requires_user_encoder = True
    takes_labels = True

    def __init__(self, network, preference_model, attributes=None, **kwargs):
        if not isinstance(preference_model, AttributePreferenceModel):
            raise ValueError(
                "Expected preference_model to be an AttributePreferenceModel. "
                f"Received: {type(preference_model).__name__}"
            )
        if attributes is None:
            attributes = preference_model.attributes
        super().__init__(network, attributes, **kwargs)
        if num_classes(preference_model.attributes) != num_classes(self.attributes):
            raise ValueError(
                "Expected the preference model to predict the conditioning's attributes. "
                f"Received: {num_classes(preference_model.attributes)} and "
                f"{num_classes(self.attributes)}"
            )
        self.preference_model = preference_model

    @classmethod
    def from_dataset(cls, data, user_encoder=None, embedding_dim=32, hidden_dim=64, dtype=None):
        """Over the dataset's attributes, on a frozen user encoder.

        Args:
            user_encoder: a `keras.Model` ``{"history": int32 [B, L]}`` → ``[B, D]``,
                e.g. ``recommender.build_user_encoder()``.
        """
        attributes = dataset_attributes(data)
        if user_encoder is None:
            raise ValueError(
                "Expected a user_encoder (a keras.Model {'history': int32 [B, L]} → [B, D], "
                "e.g. recommender.build_user_encoder()) for condition='user'. "
                "Received: user_encoder=None"
            )
        network = AttributeConditioner(attributes, embedding_dim, dtype=dtype, name="conditioner")
        preferences = AttributePreferenceModel(
            user_encoder, attributes, hidden_dim, dtype=dtype, name="preference_model"
        )
        return cls(network, preferences, name="conditioning", dtype=dtype)

    # --- training -----------------------------------------------------------------------------

    def batch_keys(self):
        return ["history"]

    def training_inputs(self, batch, labels):
        return self.labels_as_inputs(labels)

    @property
    def reports_condition_loss(self):
        return True

    def own_variables(self):
        return self.preference_model.trainable_variables

    def own_loss(self, batch, labels):
        """Per-example loss of the preference head: predict the chosen item's attributes."""
        history = ops.cast(batch["history"], "int32")
        # Always inference mode: a functional model passes `training` down to the
        # frozen user encoder, whose dropout must stay off (the head has none).
        logits = self.preference_model({"history": history}, training=False)
        return per_example_cross_entropy(logits, labels)

    # --- serving, sampling --------------------------------------------------------------------

    @property
    def history_length(self):
        return self.preference_model.history_length

    def serving_inputs(self):
        return {"history": ((None,), "int32")}

    def example_inputs(self):
        return {"history": np.array([[0, 1, 2], [2, PAD_ID, PAD_ID]], dtype="int32")}

    def resolve(self, inputs, sample):
        logits = self.preference_model({"history": inputs["history"]}, training=False)
        sampled = {
            label_key(name): sample(logits[name], stream)
            for stream, name in enumerate(self.attributes, start=1)
        }
        return dict(sampled), sampled

    def describe_condition(self):
        return "a history of item ids, a list of histories, or a dict of attributes"

    def preferred_attributes(self, history, num=1, seed_generator=None, temperature=1.0):
        """Samples the attributes users prefer: ``{attribute: int32 array [users, num]}``.

        Args:
            history: item ids (one user), a list of histories or a 2-D array padded with -1.
            num: samples per user.
            seed_generator: a `keras.random.SeedGenerator` (or an int seed).
            temperature: divides the logits; below 1 favours each user's favourites.
        """
        if not temperature > 0:
            raise ValueError(f"Expected temperature > 0. Received: temperature={temperature!r}")
        history, _ = pad_histories(history, self.history_length)
        out = {name: [] for name in self.attributes}
        for start in range(0, len(history), 1024):
            rows = ops.convert_to_tensor(history[start : start + 1024])
            logits = self.preference_model({"history": rows}, training=False)
            for name in self.attributes:
                scaled = ops.cast(logits[name], "float32") / temperature
                sampled = keras.random.categorical(scaled, num, seed=seed_generator)
                out[name].append(ops.convert_to_numpy(sampled).astype("int32"))
        return {name: np.concatenate(parts) for name, parts in out.items()}

    def parse(self, condition, num, seed_generator, temperature=1.0):
        if isinstance(condition, dict):
            return super().parse(condition, num, seed_generator, temperature)
        _, single = pad_histories(condition)
        sampled = self.preferred_attributes(condition, num, seed_generator, temperature)
        return {label_key(k): v.reshape(-1) for k, v in sampled.items()}, single

    # --- evaluation ---------------------------------------------------------------------------

    def evaluation_conditions(self, model, data, item_ids, num, seed, temperature, diversity):
        """The test split's users: attributes sampled from their preferences, ``num`` per user."""
        batches = list(
            data.interactions("test", batch_size=4096, shuffle=False).as_numpy_iterator()
        )
        interactions = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        histories = interactions["history"]
        generator = keras.random.SeedGenerator(seed)
        sampled = self.preferred_attributes(histories, num, generator, temperature)
        requested = {name: sampled[name].reshape(-1) for name in self.attributes}
        return EvaluationConditions(
            conditions=requested,
            num=1,
            requested=requested,
            diversity=list(histories[:diversity]),
            diversity_kwargs={"temperature": temperature},
            user_ids=np.repeat(interactions["user_id"], num),
            targets=interactions["target"],
            report={"temperature": temperature},
        )

    @classmethod
    def grid_conditions(cls, data, rows=None):
        rows = rows or 8
        batch = next(iter(data.interactions("test", batch_size=rows, shuffle=False)))
        return [[i for i in row if i != PAD_ID] for row in batch["history"].numpy().tolist()]

    # --- Keras ---------------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config["preference_model"] = keras.saving.serialize_keras_object(self.preference_model)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["preference_model"] = keras.saving.deserialize_keras_object(
            config["preference_model"]
        )
        return super().from_config(config)
