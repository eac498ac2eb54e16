"""Explanation conditioning: a user's history and a recommended item → why this item.

The condition is grounded, not guessed: the history's attribute counts and the
item's attributes, read from a table of the catalogue's labels. The generator
learns to write one sentence of the form

    "you often pick red stars; this is a red heart (dots, large)"

whose first clause names the history's most frequent classes of the dataset's
strong-preference attributes (shapes: colour and shape) and whose second clause
names the item's attributes — so every attribute it names is true of the
history or of the item (faithfulness is measured by
`mmrec.evaluation.text.explanation_faithfulness`). Registered as
``condition="explanation"``; served inputs ``history`` int32 ``[B, L]`` (padded
with -1) and ``item_id`` int32 ``[B]``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from mmrec.formats import PAD_ID, pad_histories
from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.models.attributes import check_attributes, check_positive_int, num_classes
from mmrec.models.conditioning.base import (
    Conditioning,
    EvaluationConditions,
    dataset_attributes,
    register_conditioning,
)


@keras.saving.register_keras_serializable(package="mmrec")
class ExplanationConditioner(keras.Model):
    """``{"history": int32 [B, L], "item_id": int32 [B]}`` → float32 ``[B, embedding_dim]``.

    Looks the items' attribute labels up in a (non-trainable) table of the
    catalogue, and encodes, per attribute, the history's class frequencies
    (padding ignored) and the item's class (one-hot), then an MLP.

    Args:
        item_labels: int ``[num_items, num_attributes]``, the catalogue's labels
            (columns in the order of ``attributes``).
        attributes: attribute name → number of classes (or class names).
        embedding_dim: width of the output.
        dtype: the MLP's dtype policy (``None``: the global policy).

    Example:

    >>> labels = np.array([[0, 1], [1, 1], [2, 0]])
    >>> conditioner = ExplanationConditioner(labels, {"shape": 3, "colour": 2}, embedding_dim=4)
    >>> out = conditioner({"history": np.array([[0, 1, -1]]), "item_id": np.array([2])})
    >>> tuple(out.shape)
    (1, 4)
    """

    def __init__(self, item_labels, attributes, embedding_dim=64, dtype=None, **kwargs):
        attributes = check_attributes(attributes)
        check_positive_int("embedding_dim", embedding_dim)
        item_labels = np.asarray(item_labels, dtype="int32")
        if item_labels.ndim != 2 or item_labels.shape[1] != len(attributes):
            raise ValueError(
                f"Expected item_labels of shape [num_items, {len(attributes)}]. "
                f"Received: shape {list(item_labels.shape)}"
            )
        policy = resolve_policy(dtype)
        counts = list(num_classes(attributes).values())
        # === Layers ===
        self.hidden = keras.layers.Dense(embedding_dim, "relu", name="hidden", dtype=policy)
        self.out = keras.layers.Dense(embedding_dim, name="explanation", dtype="float32")

        # === Functional Model ===
        history = keras.Input(shape=(None,), dtype="int32", name="history")
        item_id = keras.Input(shape=(), dtype="int32", name="item_id")
        table = ops.convert_to_tensor(item_labels)
        valid = ops.cast(ops.not_equal(history, PAD_ID), "float32")
        history_labels = ops.take(table, ops.maximum(history, 0), axis=0)  # [B, L, A]
        item = ops.take(table, item_id, axis=0)  # [B, A]
        parts = []
        for k, classes in enumerate(counts):
            hot = ops.one_hot(history_labels[..., k], classes) * valid[..., None]
            frequency = ops.sum(hot, axis=1) / ops.maximum(ops.sum(valid, axis=1), 1.0)[:, None]
            parts += [frequency, ops.one_hot(item[:, k], classes)]
        outputs = self.out(self.hidden(ops.concatenate(parts, axis=-1)))
        super().__init__(inputs={"history": history, "item_id": item_id}, outputs=outputs, **kwargs)
        self.dtype_policy = policy

        # === Config ===
        self.item_labels = item_labels
        self.attributes = attributes
        self.embedding_dim = embedding_dim

    @property
    def num_items(self) -> int:
        return int(self.item_labels.shape[0])

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "item_labels": self.item_labels.tolist(),
            "attributes": self.attributes,
            "embedding_dim": self.embedding_dim,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def class_names(attributes) -> dict[str, list[str]]:
    """attribute → class names (``"<attribute> <id>"`` where only counts are known)."""
    names = {}
    for name, classes in attributes.items():
        count = classes if isinstance(classes, int) else 0
        names[name] = list(classes) if not count else [f"{name} {i}" for i in range(count)]
    return names


def plural(word: str) -> str:
    """English plural of a class name, good enough for catalogue nouns ("cross" → "crosses")."""
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word + "s"


def explanation_parts(attributes, strong):
    """What an explanation names: ``(history attributes, item attributes)``, in writing order.

    The history clause names the strong-preference attributes, the noun last
    (``strong`` lists it first, as datasets do: ``("colour", "shape")`` → "red stars"
    needs colour then shape); the item clause names those, then the others.
    """
    strong = [a for a in strong if a in attributes] or [next(iter(attributes))]
    others = [a for a in attributes if a not in strong]
    return strong, others


def write_explanation(history_classes, item_classes, attributes, strong) -> str:
    """The reference explanation for a history's most frequent classes and an item's classes.

    Args:
        history_classes: ``{attribute: class id}``, the history's most frequent classes.
        item_classes: ``{attribute: class id}``, the item's classes.
        attributes: attribute name → class names.
        strong: the strong-preference attributes (``DatasetInfo.strong_preferences``).

    Example:

    >>> attributes = {"shape": ["star", "heart"], "colour": ["red", "blue"], "size": ["small"]}
    >>> write_explanation({"shape": 0, "colour": 0}, {"shape": 1, "colour": 0, "size": 0},
    ...                   attributes, ("colour", "shape"))
    'you often pick red stars; this is a red heart (small)'
    """
    names = class_names(attributes)
    first, others = explanation_parts(attributes, strong)
    history = [names[a][history_classes[a]] for a in first]
    history[-1] = plural(history[-1])
    item = " ".join(names[a][item_classes[a]] for a in first)
    extra = ", ".join(names[a][item_classes[a]] for a in others)
    article = "an" if item[:1] in "aeiou" else "a"
    return f"you often pick {' '.join(history)}; this is {article} {item}" + (
        f" ({extra})" if extra else ""
    )


@register_conditioning("explanation")
class ExplanationConditioning(Conditioning):
    """Condition on a user's history and a recommended item: explain the recommendation.

    Trains on generation pairs (a user's history, the item they chose next); the
    target sentence is written from the labels (`write_explanation`), so the
    generator learns to name only what is true of the history and the item.

    Args:
        network: an `ExplanationConditioner`.
        strong: the attributes the history clause names (the dataset's strong
            preferences; ``None``: the first attribute).
    """

    extra_text_tokens = 16  # an explanation is a description plus a clause

    def __init__(self, network, attributes=None, strong=None, **kwargs):
        if not isinstance(network, ExplanationConditioner):
            raise ValueError(
                f"Expected an ExplanationConditioner. Received: {type(network).__name__}"
            )
        super().__init__(network, attributes or network.attributes, **kwargs)
        self.strong = list(strong or [])

    @classmethod
    def from_dataset(cls, data, embedding_dim=64, dtype=None):
        attributes = dataset_attributes(data)
        labels = data.catalogue().labels
        table = np.stack([labels[name] for name in attributes], axis=1)
        network = ExplanationConditioner(
            table, attributes, embedding_dim, dtype=dtype, name="conditioner"
        )
        strong = list(data.info.strong_preferences)
        return cls(network, attributes, strong, name="conditioning", dtype=dtype)

    # --- training -----------------------------------------------------------------------------

    def batch_keys(self):
        return ["history", "target"]

    def training_inputs(self, batch, labels):
        return {
            "history": ops.cast(batch["history"], "int32"),
            "item_id": ops.cast(batch["target"], "int32"),
        }

    def explanations(self, history, item_ids) -> list[str]:
        """Reference explanations for histories (padded with -1) and items (NumPy)."""
        history, _ = pad_histories(history)
        table = self.network.item_labels
        out = []
        for row, item in zip(history, np.asarray(item_ids).reshape(-1)):
            ids = row[row != PAD_ID]
            modes = {
                name: int(np.argmax(np.bincount(table[ids, k], minlength=1))) if len(ids) else 0
                for k, name in enumerate(self.attributes)
            }
            classes = {name: int(table[item, k]) for k, name in enumerate(self.attributes)}
            out.append(write_explanation(modes, classes, self.attributes, self.strong))
        return out

    def write_targets(self, history, target) -> np.ndarray:
        """The training targets of a batch (its ``batch_keys``): reference explanations.

        The text generator calls it in its ``tf.data`` preprocessing.
        """
        return np.array(self.explanations(history, target), dtype=object)

    # --- serving, sampling --------------------------------------------------------------------

    def serving_inputs(self):
        return {"history": ((None,), "int32"), "item_id": ((), "int32")}

    def example_inputs(self):
        return {
            "history": np.array([[0, 1, 2], [2, PAD_ID, PAD_ID]], dtype="int32"),
            "item_id": np.array([3, 1], dtype="int32"),
        }

    def resolve(self, inputs, sample):
        return {
            "history": ops.cast(inputs["history"], "int32"),
            "item_id": ops.cast(inputs["item_id"], "int32"),
        }, {}

    def describe_condition(self):
        return "a (history, item_id) pair or a list of them"

    def parse(self, condition, num, seed_generator, temperature=1.0):
        pairs = condition
        single = isinstance(condition, tuple) and len(condition) == 2 and np.ndim(condition[1]) == 0
        if single:
            pairs = [condition]
        try:
            histories = [list(h) for h, _ in pairs]
            items = np.array([int(i) for _, i in pairs], dtype="int32")
        except (TypeError, ValueError):
            raise ValueError(
                f"Expected condition to be {self.describe_condition()}. "
                f"Received: condition={condition!r}"
            ) from None
        limit = self.network.num_items
        flat = [i for h in histories for i in h if i != PAD_ID] + items.tolist()
        if flat and (min(flat) < 0 or max(flat) >= limit):
            raise ValueError(f"Expected item ids in [0, {limit}). Received: {condition!r}")
        history, _ = pad_histories(histories)
        return {
            "history": np.repeat(history, num, axis=0),
            "item_id": np.repeat(items, num),
        }, single

    # --- evaluation ---------------------------------------------------------------------------

    def evaluation_conditions(self, model, data, item_ids, num, seed, temperature, diversity):
        """The test users with their held-out item: what a recommender would have shown them."""
        test = data.interactions("test", batch_size=4096, shuffle=False)
        batches = list(test.as_numpy_iterator())
        interactions = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        pairs = list(zip(interactions["history"].tolist(), interactions["target"].tolist()))
        labels = data.catalogue().labels
        requested = {n: np.repeat(labels[n][interactions["target"]], num) for n in self.attributes}
        return EvaluationConditions(
            [(tuple(h), t) for h, t in pairs],
            num,
            requested,
            [(tuple(h), t) for h, t in pairs[:diversity]],
            targets=interactions["target"],
            explained=(
                np.repeat(interactions["history"], num, axis=0),
                np.repeat(interactions["target"], num),
            ),
        )

    @classmethod
    def grid_conditions(cls, data, rows=None):
        batch = next(iter(data.interactions("test", batch_size=rows or 8, shuffle=False)))
        histories = batch["history"].numpy().tolist()
        return [
            ([i for i in h if i != PAD_ID], int(t))
            for h, t in zip(histories, batch["target"].numpy().tolist())
        ]

    # --- Keras ---------------------------------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config["strong"] = self.strong
        return config
