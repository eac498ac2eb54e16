"""mmrec layers: preprocessing → per-modality encoders → fusion → item and user embeddings.

Everything here is a Keras 3 layer or functional model, registered for
``.keras`` saving under the ``mmrec`` package. See ``docs/layers.md``.

The networks (encoders, fusion, item and user towers) are written with
``keras.ops`` and run under any Keras backend; only `TextTokenizer` (in
`mmrec.layers.preprocessing`, tensorflow-text) and `HubEncoder` (in
`mmrec.layers.hub`, TF Hub) need TensorFlow. Names are imported from their
module on first use, so ``from mmrec.layers import UserEncoder`` does not
import TensorFlow. As for any custom Keras object, a class is registered for
``keras.saving.load_model`` once its module is imported (e.g. by
``from mmrec.layers import MultimodalItemEncoder``).
"""

import importlib

# Public name → the module that defines it.
_EXPORTS = {
    "ImageEncoder": "mmrec.layers.encoders",
    "TextEncoder": "mmrec.layers.encoders",
    "AudioEncoder": "mmrec.layers.encoders",
    "HubEncoder": "mmrec.layers.hub",
    "Fusion": "mmrec.layers.fusion",
    "ConcatFusion": "mmrec.layers.fusion",
    "WeightedFusion": "mmrec.layers.fusion",
    "GatedFusion": "mmrec.layers.fusion",
    "AttentionFusion": "mmrec.layers.fusion",
    "FUSIONS": "mmrec.layers.fusion",
    "register_fusion": "mmrec.layers.fusion",
    "MODALITIES": "mmrec.layers.item_encoder",
    "MultimodalItemEncoder": "mmrec.layers.item_encoder",
    "ImagePreprocessor": "mmrec.layers.image_audio_preprocessing",
    "AudioPreprocessor": "mmrec.layers.image_audio_preprocessing",
    "RESERVED_TOKENS": "mmrec.layers.preprocessing",
    "TextTokenizer": "mmrec.layers.preprocessing",
    "load_vocabulary": "mmrec.layers.preprocessing",
    "MaskedMeanPooling": "mmrec.layers.sequence",
    "PositionEmbedding": "mmrec.layers.sequence",
    "TransformerBlock": "mmrec.layers.sequence",
    "PAD_ID": "mmrec.layers.user",
    "UserEncoder": "mmrec.layers.user",
}
# Learning and writing a vocabulary is a data-preparation step, now in
# `mmrec.data.vocabulary`; these names still resolve so that old imports work.
_MOVED = {
    "learn_wordpiece_vocabulary": "mmrec.data.vocabulary",
    "save_vocabulary": "mmrec.data.vocabulary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name) or _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'mmrec.layers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted({*globals(), *_EXPORTS, *_MOVED})
