"""`Conditioning`: what a generated item is asked to show, as one object, and its registry.

Every generator (image GAN/VAE, and the text and audio generators) takes a
conditioning. It owns everything that depends on the kind of condition:

* its **network**, trained with the generator: raw condition inputs → one
  conditioning vector ``[B, condition_dim]`` (EMA'd by the GAN);
* its **batch inputs**: which features of a training batch it reads
  (`batch_keys`) and how they become the network's inputs (`training_inputs`);
* its **auxiliary loss** (trained with the generator) and, optionally, a part
  that trains with an optimizer of its own (`own_variables`, `own_loss`);
* its **served inputs** (`serving_inputs`, `example_inputs`, `resolve`), which
  export turns into a signature;
* its **sampling**: `parse` turns what a person asks for into network inputs
  (a user's preferred attributes are sampled at a temperature);
* its **evaluation hook** (`evaluation_conditions`, `grid_conditions`).

Adding a kind of condition is one subclass plus `register_conditioning("name")`;
see docs/extending.md. Conditionings use `keras.ops` only; TensorFlow stays in
the training steps and in export.
"""

from __future__ import annotations

import dataclasses
import importlib

import keras
import numpy as np

from mmrec.layers.dtypes import serialize_policy
from mmrec.models.attributes import attribute_ids, check_attributes, label_key, num_classes
from mmrec.models.losses import per_example_cross_entropy

# name → class, or "module:Class" for the built-ins (imported on first use, so that
# the attribute conditioning never imports TensorFlow through the text one).
_REGISTRY: dict[str, object] = {
    "attributes": "mmrec.models.conditioning.attributes:AttributeConditioning",
    "text": "mmrec.models.conditioning.text:TextConditioning",
    "user": "mmrec.models.conditioning.user:UserConditioning",
    "item": "mmrec.models.conditioning.item:ItemConditioning",
    "explanation": "mmrec.models.conditioning.explanation:ExplanationConditioning",
}


def register_conditioning(name, package="mmrec"):
    """Class decorator: makes a `Conditioning` subclass available as ``condition=name``.

    It also registers the class for `.keras` saving under ``package``.
    """

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Conditioning)):
            raise ValueError(f"Expected a Conditioning subclass. Received: {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and not isinstance(existing, str) and existing is not cls:
            raise ValueError(
                f"Expected a new conditioning name. Received: {name!r}, already registered "
                f"by {existing.__name__}"
            )
        cls.kind = name
        _REGISTRY[name] = cls
        return keras.saving.register_keras_serializable(package=package)(cls)

    return decorate


def conditioning_names() -> tuple[str, ...]:
    """The registered kinds of condition (``"attributes"``, ``"text"``, ``"user"``, …)."""
    return tuple(_REGISTRY)


def get_conditioning(name) -> type[Conditioning]:
    """The `Conditioning` class registered as ``name``.

    Example:

    >>> get_conditioning("attributes").__name__, "user" in conditioning_names()
    ('AttributeConditioning', True)
    """
    entry = _REGISTRY.get(name)
    if entry is None:
        raise ValueError(
            f"Expected condition to be one of {list(_REGISTRY)}. Received: condition={name!r}"
        )
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = getattr(importlib.import_module(module), attribute)
        _REGISTRY[name] = entry
    return entry


def conditioning_from_dataset(
    data, condition="attributes", user_encoder=None, **kwargs
) -> Conditioning:
    """The conditioning of kind ``condition`` for a dataset.

    ``condition`` is a registered name or a `Conditioning` (returned as it is).
    ``user_encoder`` goes to the kinds that need one (and is refused by the
    others); ``kwargs`` (e.g. ``dtype``, ``embedding_dim``) to its ``from_dataset``.
    """
    if isinstance(condition, Conditioning):
        return condition
    cls = get_conditioning(condition)
    if cls.requires_user_encoder:
        kwargs["user_encoder"] = user_encoder
    elif user_encoder is not None:
        raise ValueError(
            f"Expected no user_encoder for condition={condition!r} (only a conditioning on "
            "users takes one). Received: a user_encoder"
        )
    return cls.from_dataset(data, **kwargs)


def dataset_attributes(data) -> dict[str, list[str]]:
    """A dataset's attributes, checked: the generators need images and attribute labels."""
    info = data.metadata
    if "image" not in info.modalities:
        raise ValueError(
            "Expected a dataset with images (dataset.json modalities). "
            f"Received: modalities={list(info.modalities)}"
        )
    if not info.attributes:
        raise ValueError(
            "Expected a dataset with attribute labels (dataset.json attributes). Received: none"
        )
    return {name: list(classes) for name, classes in info.attributes.items()}


@dataclasses.dataclass
class EvaluationConditions:
    """What an evaluation asks a generator for, from a conditioning's evaluation hook.

    Attributes:
        conditions: what ``model.generate(conditions, num=num)`` takes.
        num: images per condition.
        requested: ``{attribute: int [images]}``, the attributes each generated
            image should show (for conditional accuracy), in generation order.
        diversity: conditions for the diversity check (8 images each).
        diversity_kwargs: extra arguments of that ``generate`` call.
        user_ids: for personalised conditions, the user of each image (then the
            evaluation also reports personalisation hit-rates); else None.
        targets: for personalised conditions, each user's held-out item id.
        report: extra entries for the report (e.g. the sampling temperature).
        explained: for explanations, ``(histories [N, L] padded with -1, item ids [N])``,
            one row per generated text (then faithfulness is reported).
    """

    conditions: object
    num: int
    requested: dict
    diversity: object
    diversity_kwargs: dict = dataclasses.field(default_factory=dict)
    user_ids: np.ndarray | None = None
    targets: np.ndarray | None = None
    report: dict = dataclasses.field(default_factory=dict)
    explained: tuple | None = None


class Conditioning(keras.layers.Layer):
    """Base class of the kinds of condition a generator can be asked for (see the module doc).

    A conditioning is a Keras layer, so its networks' weights are tracked, trained
    and saved with the model that holds it. Subclasses set `network` (a
    `keras.Model` whose output is float32 ``[B, condition_dim]``) and
    `attributes` (the item attributes the generator's auxiliary heads predict)
    and override the hooks below.

    Class attributes:
        kind: the registered name (set by `register_conditioning`).
        requires_user_encoder: its ``from_dataset`` needs a user encoder
            (``recommender.build_user_encoder()``).
        pretrains_encoder: its ``from_dataset`` takes ``pretrain_epochs`` (an item
            encoder pretrained as an attribute classifier, then frozen).
        jit_compatible: its network can run inside an XLA-compiled step.
        takes_labels: its network takes ``{"label_<attribute>": int32 [B]}`` (then
            ``generate`` also accepts a dict of attributes).
    """

    kind = None
    requires_user_encoder = False
    pretrains_encoder = False
    jit_compatible = True
    takes_labels = False  # the network takes {label_<attribute>: int32 [B]}

    def __init__(self, network, attributes, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(network, keras.Model):
            raise ValueError(f"Expected network to be a keras.Model. Received: network={network!r}")
        self.network = network
        self.attributes = check_attributes(attributes)

    @property
    def condition_dim(self) -> int:
        return int(self.network.output.shape[-1])

    # --- training ---------------------------------------------------------------------------

    def batch_keys(self) -> list[str]:
        """The features of a training batch this conditioning reads (besides images, labels)."""
        return []

    def training_inputs(self, batch, labels):
        """The network's inputs for a training batch (``labels``: ``{attribute: int32 [B]}``)."""
        raise NotImplementedError

    def add_attribute_heads(self):
        """Adds auxiliary heads, one per attribute, on the condition vector.

        Trained with the generator (`auxiliary_loss`), they make the condition
        carry the attributes of what it stands for (a description, an item's
        content) — supervision the data has anyway, which teaches the
        conditioning network far faster than the generator's own signal alone.
        """
        self.heads = {}
        for name, classes in num_classes(self.attributes).items():
            head = keras.layers.Dense(classes, name=f"condition_{name}", dtype="float32")
            head.build((None, self.condition_dim))
            self.heads[name] = head

    def auxiliary_loss(self, condition, labels):
        """Per-example auxiliary loss trained with the generator, or None (no heads)."""
        heads = getattr(self, "heads", None)
        if not heads:
            return None
        logits = {name: head(condition) for name, head in heads.items()}
        return per_example_cross_entropy(logits, labels)

    def auxiliary_variables(self) -> list:
        """Variables of the auxiliary loss (trained with the generator)."""
        heads = getattr(self, "heads", None) or {}
        return [v for head in heads.values() for v in head.trainable_variables]

    @property
    def reports_condition_loss(self) -> bool:
        """Whether the model reports a ``condition_loss`` metric for this conditioning."""
        return False

    # A part that trains with an optimizer of its own (the task builds the optimizer).
    own_learning_rate = 1e-3

    def own_variables(self) -> list:
        """Variables trained on `own_loss` with their own Adam(`own_learning_rate`)."""
        return []

    def own_loss(self, batch, labels):
        """Per-example loss of the part with its own optimizer, or None."""
        return None

    # --- serving, sampling --------------------------------------------------------------------

    def serving_inputs(self) -> dict[str, tuple]:
        """Served input name → ``(shape without batch, dtype)``."""
        raise NotImplementedError

    def example_inputs(self) -> dict[str, np.ndarray]:
        """Two rows of valid served inputs (warm-up requests and validation)."""
        raise NotImplementedError

    def resolve(self, inputs, sample):
        """Served inputs → ``(network inputs, sampled)``.

        ``sample(logits, stream)`` draws int32 class ids from ``[B, C]`` logits (a
        different ``stream`` per attribute); ``sampled`` is ``{label_key: int32 [B]}``
        for what was drawn (served as outputs), or ``{}``.
        """
        raise NotImplementedError

    def parse(self, condition, num, seed_generator, temperature=1.0):
        """What a person asks for → ``(network inputs repeated ``num`` times, single)``.

        The base class takes a dict of attributes (names or ids), for the
        conditionings whose network takes attribute labels.
        """
        if isinstance(condition, dict) and self.takes_labels:
            inputs, single = attribute_ids(self.attributes, condition)
            return {k: np.repeat(v, num) for k, v in inputs.items()}, single
        raise ValueError(
            f"Expected condition to be {self.describe_condition()} for a model with "
            f"condition={self.kind!r}. Received: condition={condition!r}"
        )

    def describe_condition(self) -> str:
        """What `parse` accepts, in words (for error messages)."""
        return "a dict of attributes, e.g. {'shape': 'star', 'colour': 'red'}"

    def labels_as_inputs(self, labels):
        """``{attribute: ids}`` → ``{label_<attribute>: int32 ids}``."""
        return {label_key(name): labels[name] for name in self.attributes}

    # --- evaluation ---------------------------------------------------------------------------

    def evaluation_conditions(self, model, data, item_ids, num, seed, temperature, diversity):
        """Conditions for evaluating ``model`` on the held-out items ``item_ids``.

        The default asks for the held-out items' attributes.
        """
        labels = data.catalogue().labels
        conditions = {name: labels[name][item_ids] for name in self.attributes}
        first = {k: v[:diversity] for k, v in conditions.items()}
        requested = {n: np.repeat(labels[n][item_ids], num) for n in self.attributes}
        return EvaluationConditions(conditions, num, requested, first)

    @classmethod
    def grid_conditions(cls, data, rows=None):
        """Fixed conditions for a dataset's training-time sample grids (one row each).

        The default: ``rows`` (``None``: as many as the first attribute has
        classes) attribute sets, the first attribute cycling through its classes
        and the others stepped so that rows do not repeat combinations.
        """
        sizes = num_classes(data.info.attributes)
        rows = rows or next(iter(sizes.values()))
        # The second attribute steps by 3 (when that still reaches every class), so that
        # rows do not pair the same values of the first two attributes.
        steps = [
            3 if k == 1 and np.gcd(3, count) == 1 else 1 for k, count in enumerate(sizes.values())
        ]
        return {
            name: [(i * step) % count for i in range(rows)]
            for step, (name, count) in zip(steps, sizes.items())
        }

    # --- Keras ---------------------------------------------------------------------------------

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": serialize_policy(self.dtype_policy),
            "network": keras.saving.serialize_keras_object(self.network),
            "attributes": self.attributes,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)
