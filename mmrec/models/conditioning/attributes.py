"""Attribute conditioning: "an item with these attributes" → one learned embedding per attribute.

`AttributeConditioner` is the network (``keras.ops`` only); `AttributeConditioning`
the conditioning object that generators take (``condition="attributes"``).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.models.attributes import check_attributes, check_positive_int, label_key, num_classes
from mmrec.models.conditioning.base import Conditioning, dataset_attributes, register_conditioning


@keras.saving.register_keras_serializable(package="mmrec")
class AttributeConditioner(keras.Model):
    """Attribute ids → one learned embedding per attribute, concatenated.

    Inputs: a dict ``{"label_<attribute>": int [B]}`` (the keys of the data layer's
    batches). Output: float32 ``[B, len(attributes) * embedding_dim]``.

    Args:
        attributes: attribute name → number of classes (or list of class names),
            e.g. ``{"shape": 8, "colour": 8}``.
        embedding_dim: width of each attribute's embedding.
        dtype: the embeddings' dtype policy (``None``: the global policy).

    Example:

    >>> conditioner = AttributeConditioner({"shape": 8, "colour": 8}, embedding_dim=4)
    >>> tuple(conditioner({"label_shape": np.array([3]), "label_colour": np.array([1])}).shape)
    (1, 8)
    """

    def __init__(self, attributes, embedding_dim=32, dtype=None, **kwargs):
        attributes = check_attributes(attributes)
        check_positive_int("embedding_dim", embedding_dim)
        policy = resolve_policy(dtype)
        # === Layers ===
        self.embeddings = {
            name: keras.layers.Embedding(
                classes, embedding_dim, name=f"{name}_embedding", dtype=policy
            )
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
        self.dtype_policy = policy

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
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register_conditioning("attributes")
class AttributeConditioning(Conditioning):
    """Condition on attribute ids (or names): ``{"shape": "star", "colour": "red", ...}``.

    Trains on the chosen items' own labels; serves ``label_<attribute>`` int32 ``[B]``
    inputs, one per attribute.

    Args:
        network: an `AttributeConditioner` (or any `keras.Model` that takes
            ``{"label_<attribute>": int32 [B]}``).
        attributes: attribute name → number of classes or class names; ``None``
            takes the network's.

    Example:

    >>> conditioning = AttributeConditioning.from_attributes({"shape": 8, "colour": 8}, 4)
    >>> inputs, single = conditioning.parse({"shape": 3, "colour": 1}, num=2, seed_generator=None)
    >>> inputs["label_shape"].tolist(), single, conditioning.condition_dim
    ([3, 3], True, 8)
    """

    takes_labels = True

    def __init__(self, network, attributes=None, **kwargs):
        if attributes is None:
            attributes = getattr(network, "attributes", None)
        super().__init__(network, attributes, **kwargs)

    @classmethod
    def from_attributes(cls, attributes, embedding_dim=32, dtype=None):
        """An attribute conditioning with a new `AttributeConditioner`."""
        network = AttributeConditioner(attributes, embedding_dim, dtype=dtype, name="conditioner")
        return cls(network, name="conditioning", dtype=dtype)

    @classmethod
    def from_dataset(cls, data, embedding_dim=32, dtype=None):
        """Over the dataset's attributes (with their class names)."""
        return cls.from_attributes(dataset_attributes(data), embedding_dim, dtype)

    def training_inputs(self, batch, labels):
        return self.labels_as_inputs(labels)

    def serving_inputs(self):
        return {label_key(name): ((), "int32") for name in self.attributes}

    def example_inputs(self):
        counts = num_classes(self.attributes)
        return {
            label_key(name): np.array([0, min(1, classes - 1)], dtype="int32")
            for name, classes in counts.items()
        }

    def resolve(self, inputs, sample):
        return {label_key(n): ops.cast(inputs[label_key(n)], "int32") for n in self.attributes}, {}
