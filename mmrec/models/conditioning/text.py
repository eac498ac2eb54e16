"""Text conditioning: a description → WordPiece ids → a small transformer → a vector.

`TextConditioner` is the network: it tokenises inside the graph (tensorflow-text,
a TF preprocessor: the one TF-only part of the conditionings), so an exported
model takes raw strings. `TextConditioning` adds auxiliary heads that make the
text embedding predict the attributes the description names.
"""

from __future__ import annotations

import keras
import numpy as np

from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.layers.encoders import TextEncoder
from mmrec.layers.preprocessing import TextTokenizer
from mmrec.models.attributes import check_attributes
from mmrec.models.conditioning.base import (
    Conditioning,
    EvaluationConditions,
    dataset_attributes,
    register_conditioning,
)

# Descriptions for warm-up requests; words missing from a vocabulary become [UNK],
# which is still a valid request.
EXAMPLE_TEXTS = ("a large red star on a striped background", "small heart, teal, dotted backdrop")


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
            number of classes or class names).
        dtype: the encoder's dtype policy (``None``: the global policy).

    Example:

    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "red", "blue", "star", "heart"]
    >>> conditioner = TextConditioner(vocab, embedding_dim=8, sequence_length=6, hidden_dim=8)
    >>> tuple(conditioner(np.array(["a red star", "a blue heart"])).shape)
    (2, 8)
    """

    def __init__(
        self,
        vocabulary,
        embedding_dim=64,
        sequence_length=24,
        hidden_dim=64,
        num_layers=1,
        attributes=None,
        dtype=None,
        **kwargs,
    ):
        if attributes is not None:
            attributes = check_attributes(attributes)
        policy = resolve_policy(dtype)
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
            dtype=policy,
        )

        # === Functional Model ===
        text = keras.Input(shape=(), dtype="string", name="text")
        outputs = self.encoder(self.tokenizer(text))
        super().__init__(inputs=text, outputs=outputs, **kwargs)
        self.dtype_policy = policy

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
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register_conditioning("text")
class TextConditioning(Conditioning):
    """Condition on a description: ``"a large crimson star on a striped background"``.

    Trains on the chosen items' descriptions; auxiliary heads (one per attribute,
    trained with the generator) make the text embedding predict the attributes the
    description names — supervision the data has anyway, which teaches the text
    encoder far faster than the adversarial signal alone. Serves ``text``
    tf.string ``[B]``. Not XLA-compatible (tensorflow-text ops have no XLA kernels).

    Args:
        network: a `TextConditioner`.
        attributes: the attributes the descriptions name; ``None`` takes the network's.
    """

    jit_compatible = False

    def __init__(self, network, attributes=None, **kwargs):
        if attributes is None:
            attributes = getattr(network, "attributes", None)
        if attributes is None:
            raise ValueError(
                "Expected the attributes the descriptions name (TextConditioner(..., "
                "attributes=...) or TextConditioning(..., attributes=...)). Received: None"
            )
        super().__init__(network, attributes, **kwargs)
        self.add_attribute_heads()

    @classmethod
    def from_dataset(cls, data, embedding_dim=128, dtype=None):
        """Over the dataset's ``vocab.txt`` and attributes."""
        attributes = dataset_attributes(data)
        if data.vocabulary_path is None:
            raise ValueError(
                f"Expected a vocab.txt in {data.path} for condition='text'. Received: none"
            )
        network = TextConditioner(
            data.vocabulary_path,
            embedding_dim=embedding_dim,
            attributes=attributes,
            dtype=dtype,
            name="conditioner",
        )
        return cls(network, name="conditioning", dtype=dtype)

    def batch_keys(self):
        return ["text"]

    def training_inputs(self, batch, labels):
        return batch["text"]

    @property
    def reports_condition_loss(self):
        return True

    def serving_inputs(self):
        return {"text": ((), "string")}

    def example_inputs(self):
        return {"text": np.array(EXAMPLE_TEXTS, dtype=object)}

    def resolve(self, inputs, sample):
        return inputs["text"], {}

    def describe_condition(self):
        return "a description or a list of descriptions"

    def parse(self, condition, num, seed_generator, temperature=1.0):
        if isinstance(condition, dict):
            return super().parse(condition, num, seed_generator, temperature)
        single = isinstance(condition, (str, bytes))
        texts = [condition] if single else list(condition)
        if not texts or not all(isinstance(t, (str, bytes)) for t in texts):
            return super().parse(condition, num, seed_generator, temperature)
        return np.repeat(np.array(texts, dtype=object), num), single

    def evaluation_conditions(self, model, data, item_ids, num, seed, temperature, diversity):
        catalogue = data.catalogue()
        conditions = list(catalogue.texts.numpy()[item_ids])
        labels = catalogue.labels
        requested = {n: np.repeat(labels[n][item_ids], num) for n in self.attributes}
        return EvaluationConditions(conditions, num, requested, conditions[:diversity])

    @classmethod
    def grid_conditions(cls, data, rows=None):
        rows = rows or 8
        catalogue = data.catalogue()
        ids = np.arange(0, catalogue.num_items, 5)[:rows]
        return [t.decode() for t in catalogue.texts.numpy()[ids]]
