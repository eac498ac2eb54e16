"""mmrec evaluation: ranking metrics, the baselines to beat, the judges of generated images
and text."""

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
from mmrec.evaluation.text import (
    NGramLanguageModel,
    TextJudge,
    distinct_n,
    evaluate_text_generation,
    explanation_faithfulness,
    mentioned_attributes,
    perplexity_from_log_likelihood,
    self_bleu,
    split_words,
    text_judge_held_out_accuracy,
    text_personalisation_report,
    train_text_judge,
)

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
    "NGramLanguageModel",
    "TextJudge",
    "distinct_n",
    "evaluate_text_generation",
    "explanation_faithfulness",
    "mentioned_attributes",
    "perplexity_from_log_likelihood",
    "self_bleu",
    "split_words",
    "text_judge_held_out_accuracy",
    "text_personalisation_report",
    "train_text_judge",
]
