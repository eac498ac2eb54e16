"""mmrec layers: preprocessing → per-modality encoders → fusion → item and user embeddings.

Everything here is a Keras 3 layer or functional model, registered for
``.keras`` saving under the ``mmrec`` package. See ``docs/layers.md``.
"""

from mmrec.layers.encoders import AudioEncoder, HubEncoder, ImageEncoder, TextEncoder
from mmrec.layers.fusion import (
    AttentionFusion,
    ConcatFusion,
    Fusion,
    GatedFusion,
    WeightedFusion,
)
from mmrec.layers.item_encoder import FUSIONS, MODALITIES, MultimodalItemEncoder
from mmrec.layers.preprocessing import (
    RESERVED_TOKENS,
    AudioPreprocessor,
    ImagePreprocessor,
    TextTokenizer,
    learn_wordpiece_vocabulary,
    load_vocabulary,
    save_vocabulary,
)
from mmrec.layers.sequence import MaskedMeanPooling, PositionEmbedding, TransformerBlock
from mmrec.layers.user import PAD_ID, UserEncoder

__all__ = [
    "FUSIONS",
    "MODALITIES",
    "PAD_ID",
    "RESERVED_TOKENS",
    "AttentionFusion",
    "AudioEncoder",
    "AudioPreprocessor",
    "ConcatFusion",
    "Fusion",
    "GatedFusion",
    "HubEncoder",
    "ImageEncoder",
    "ImagePreprocessor",
    "MaskedMeanPooling",
    "MultimodalItemEncoder",
    "PositionEmbedding",
    "TextEncoder",
    "TextTokenizer",
    "TransformerBlock",
    "UserEncoder",
    "WeightedFusion",
    "learn_wordpiece_vocabulary",
    "load_vocabulary",
    "save_vocabulary",
]
