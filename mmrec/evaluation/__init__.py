"""mmrec evaluation: ranking metrics and the independent judge of generated images."""

from mmrec.evaluation.generation import (
    AttributeJudge,
    conditional_accuracy,
    diversity,
    evaluate_generation,
    frechet_distance,
    kernel_distance,
    personalisation_hit_rate,
    random_item_hit_rate,
    train_judge,
)

__all__ = [
    "AttributeJudge",
    "conditional_accuracy",
    "diversity",
    "evaluate_generation",
    "frechet_distance",
    "kernel_distance",
    "personalisation_hit_rate",
    "random_item_hit_rate",
    "train_judge",
]
