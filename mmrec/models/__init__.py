"""mmrec models: the recommender and the generators (functional networks + task models)."""

from mmrec.models.gan import ConditionalGAN
from mmrec.models.generator import (
    AttributeConditioner,
    AttributePreferenceModel,
    ConditionalBatchNormalization,
    Discriminator,
    Generator,
    ScaleImages,
    TextConditioner,
    VAEEncoder,
)
from mmrec.models.recommender import Recommender
from mmrec.models.vae import ConditionalVAE

__all__ = [
    "AttributeConditioner",
    "AttributePreferenceModel",
    "ConditionalBatchNormalization",
    "ConditionalGAN",
    "ConditionalVAE",
    "Discriminator",
    "Generator",
    "Recommender",
    "ScaleImages",
    "TextConditioner",
    "VAEEncoder",
]
