"""mmrec evaluation: ranking metrics, the baselines to beat, the judge of generated images."""

from mmrec.evaluation.baselines import (
    EASEBaseline,
    ItemKNNBaseline,
    OracleBaseline,
    PopularityBaseline,
    PosteriorBaseline,
)
from mmrec.evaluation.generation import (
    AttributeJudge,
    conditional_accuracy,
    diversity,
    evaluate_generation,
    frechet_distance,
    kernel_distance,
    train_judge,
)
from mmrec.evaluation.metrics import ndcg_at_k, recall_at_k
from mmrec.evaluation.personalisation import (
    personalisation_hit_rate,
    personalisation_report,
    preference_hits,
    random_item_hit_rate,
)
from mmrec.evaluation.ranking import BASELINES, evaluate_ranking, make_baselines, ranking_table

__all__ = [
    "AttributeJudge",
    "BASELINES",
    "EASEBaseline",
    "ItemKNNBaseline",
    "conditional_accuracy",
    "OracleBaseline",
    "PopularityBaseline",
    "PosteriorBaseline",
    "diversity",
    "evaluate_ranking",
    "make_baselines",
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
