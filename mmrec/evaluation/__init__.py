"""mmrec evaluation: ranking metrics and the independent judge of generated images."""

from mmrec.evaluation.generation import (
    AttributeJudge,
    conditional_accuracy,
    diversity,
    evaluate_generation,
    frechet_distance,
    kernel_distance,
    train_judge,
)
from mmrec.evaluation.personalisation import (
    personalisation_hit_rate,
    personalisation_report,
    preference_hits,
    random_item_hit_rate,
)
from mmrec.evaluation.ranking import (
    OracleBaseline,
    PopularityBaseline,
    PosteriorBaseline,
    evaluate_ranking,
    ndcg_at_k,
    ranking_table,
    recall_at_k,
)

__all__ = [
    "AttributeJudge",
    "conditional_accuracy",
    "OracleBaseline",
    "PopularityBaseline",
    "PosteriorBaseline",
    "diversity",
    "evaluate_ranking",
    "ndcg_at_k",
    "ranking_table",
    "recall_at_k",
    "evaluate_generation",
    "frechet_distance",
    "kernel_distance",
    "personalisation_hit_rate",
    "personalisation_report",
    "preference_hits",
    "random_item_hit_rate",
    "train_judge",
]
