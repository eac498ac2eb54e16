"""mmrec models: the recommender and the generators (functional networks + task models).

* networks (``keras.ops`` only, any backend): `mmrec.models.image_networks`
  (`Generator`, `Discriminator`, `VAEEncoder`) and the conditioning networks in
  `mmrec.models.conditioning`;
* tasks (TensorFlow training steps): `Recommender`, `ConditionalGAN`, `ConditionalVAE`,
  `ConditionalTextGenerator` (on `TextDecoder`, keras-hub layers and samplers),
  `ConditionalAudioGenerator` (on `mmrec.models.audio_networks`' `SpectrogramGenerator`
  and `SpectrogramEncoder`, a conditional VAE; `Spectrogram`: STFT and Griffin-Lim),
  and `MultimodalItemGenerator` (one sampled attribute set drives all three).

Names are imported on first use, so that importing a network module does not
import TensorFlow.
"""

import importlib

_LAZY = {
    "ConditionalGAN": "mmrec.models.gan",
    "ConditionalVAE": "mmrec.models.vae",
    "Recommender": "mmrec.models.recommender",
    "ConditionalBatchNormalization": "mmrec.models.image_networks",
    "Discriminator": "mmrec.models.image_networks",
    "Generator": "mmrec.models.image_networks",
    "ScaleImages": "mmrec.models.image_networks",
    "VAEEncoder": "mmrec.models.image_networks",
    "AttributeConditioner": "mmrec.models.conditioning.attributes",
    "AttributeConditioning": "mmrec.models.conditioning.attributes",
    "TextConditioner": "mmrec.models.conditioning.text",
    "TextConditioning": "mmrec.models.conditioning.text",
    "AttributePreferenceModel": "mmrec.models.conditioning.user",
    "UserConditioning": "mmrec.models.conditioning.user",
    "ItemConditioning": "mmrec.models.conditioning.item",
    "pretrain_item_encoder": "mmrec.models.conditioning.item",
    "ExplanationConditioning": "mmrec.models.conditioning.explanation",
    "ConditionalTextGenerator": "mmrec.models.text_generation",
    "TextDecoder": "mmrec.models.text_networks",
    "PretrainedTextDecoder": "mmrec.models.pretrained_text",
    "ConditionalAudioGenerator": "mmrec.models.audio_generation",
    "SpectrogramGenerator": "mmrec.models.audio_networks",
    "SpectrogramEncoder": "mmrec.models.audio_networks",
    "Spectrogram": "mmrec.models.spectrogram",
    "MultimodalItemGenerator": "mmrec.models.item_generation",
    "Conditioning": "mmrec.models.conditioning.base",
    "register_conditioning": "mmrec.models.conditioning.base",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmrec.models' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
