"""Conditionings: what a generator is asked for (attributes, a description, a user, an item...).

``ConditionalGAN.from_dataset(data, condition="user", user_encoder=...)`` picks
a conditioning by its registered name; ``register_conditioning`` adds a kind
(docs/extending.md). Names are imported on first use, so that importing the
attribute conditioning does not import TensorFlow through the text one.
"""

import importlib

from mmrec.models.conditioning.base import (
    Conditioning,
    EvaluationConditions,
    conditioning_from_dataset,
    conditioning_names,
    get_conditioning,
    register_conditioning,
)

_LAZY = {
    "AttributeConditioner": "attributes",
    "AttributeConditioning": "attributes",
    "TextConditioner": "text",
    "TextConditioning": "text",
    "AttributePreferenceModel": "user",
    "UserConditioning": "user",
    "ItemConditioning": "item",
    "pretrain_item_encoder": "item",
    "ExplanationConditioner": "explanation",
    "ExplanationConditioning": "explanation",
}

__all__ = [
    "Conditioning",
    "EvaluationConditions",
    "conditioning_from_dataset",
    "conditioning_names",
    "get_conditioning",
    "register_conditioning",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"mmrec.models.conditioning.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'mmrec.models.conditioning' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
