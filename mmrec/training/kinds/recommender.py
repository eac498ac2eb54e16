"""The ``"recommender"`` run kind: the multimodal two-tower `Recommender`, ranked on the test split.

Trains on ``data.interactions`` batches; the report is `evaluate_ranking` for the
model next to the popularity, ID-only two-tower and oracle baselines.
"""

from __future__ import annotations

import keras

from mmrec.evaluation.ranking import (
    OracleBaseline,
    PopularityBaseline,
    evaluate_ranking,
    ranking_table,
)
from mmrec.models.recommender import Recommender
from mmrec.training.kinds.base import RunKind, RunPlan, register_run_kind, set_learning_rate

# The model arguments a config may set (None: the model's default).
MODEL_KEYS = (
    "fusion",
    "embedding_dim",
    "item_id_embedding",
    "item_bias",
    "item_bias_l2",
    "user_pooling",
    "encoder_config",
    "temperature",
)

SETTINGS = {
    "epochs": int,
    "batch_size": int,
    "steps_per_epoch": int | None,
    "learning_rate": float | None,
    "modalities": list | None,
    "fusion": str | None,
    "embedding_dim": int | None,
    "item_id_embedding": bool | None,
    "item_bias": bool | None,
    "item_bias_l2": float | None,
    "user_pooling": str | None,
    "temperature": float | None,
    "encoder_config": dict | None,
    "id_only_baseline": bool,
}

BASE = {
    "epochs": 10,
    "batch_size": 512,
    # None: one pass over the training interactions per epoch.
    "steps_per_epoch": None,
    # Faster than the model's default for these small encoders and large batches.
    "learning_rate": 3e-3,
    # None: every modality the dataset has.
    "modalities": None,
    "fusion": None,
    # Small: the whole catalogue is embedded at every training step.
    "embedding_dim": 32,
    "item_id_embedding": None,
    "item_bias": None,
    "item_bias_l2": None,
    "user_pooling": None,
    "temperature": None,
    "encoder_config": {
        "image": {"filters": [16, 32, 64]},
        "text": {"hidden_dim": 32, "sequence_length": 24},
        "audio": {"filters": [8, 16, 32], "num_mel_bins": 32},
    },
    # Also train the ID-only two-tower (same settings, no content) as a baseline.
    "id_only_baseline": True,
}

TINY = {
    "epochs": 6,
    # Image (at 16×16) + text: each step embeds the whole catalogue, and audio and
    # full-size images cost most of that.
    "modalities": ["image", "text"],
    "encoder_config": {
        "image": {"filters": [8, 16], "image_size": 16},
        "text": {"hidden_dim": 16, "sequence_length": 16},
    },
}


def build_recommender(plan: RunPlan, user_encoder, dtype) -> Recommender:
    modalities = plan.settings["modalities"]
    return Recommender.from_dataset(
        plan.data,
        modalities=None if modalities is None else tuple(modalities),
        dtype=dtype,
        name="recommender",
        **plan.given(*MODEL_KEYS),
    )


def interaction_datasets(plan: RunPlan):
    """(training, validation) batches of ``data.interactions``; training repeats, seeded."""
    train = plan.data.interactions(
        "train",
        batch_size=plan.batch_size,
        repeat=True,
        drop_remainder=True,
        cache=True,
        seed=plan.seed,
    )
    valid = plan.data.interactions(
        "valid", batch_size=plan.valid_batch_size, drop_remainder=True, cache=True
    )
    return train, valid


def evaluate_recommender(model, plan: RunPlan) -> dict:
    """Test-split ranking of the model and its baselines; prints the table."""
    data = plan.data
    scorers = {"popularity": PopularityBaseline(data)}
    if plan.settings["id_only_baseline"]:
        scorers["id_only"] = train_id_only(plan)
    scorers["recommender"] = model
    if data.info.affinity and data.info.user_preferences:
        scorers["oracle"] = OracleBaseline(data)
    results = {name: evaluate_ranking(s, data, "test") for name, s in scorers.items()}
    table = ranking_table(results)
    print(f"\n{data.info.name}: test split\n{table}", flush=True)
    return {"test": results, "table": table}


def train_id_only(plan: RunPlan) -> Recommender:
    """The ID-only two-tower baseline: the same settings without content (default strategy)."""
    keras.utils.set_random_seed(plan.seed)
    model = Recommender.from_dataset(
        plan.data,
        modalities=(),
        item_id_embedding=True,
        name="id_only",
        **plan.given("embedding_dim", "user_pooling", "temperature"),
    )
    model.compile()
    set_learning_rate(model.optimizer, plan.settings["learning_rate"])
    train_data = plan.data.interactions(
        "train", batch_size=plan.batch_size, repeat=True, drop_remainder=True, seed=plan.seed
    )
    model.fit(train_data, epochs=plan.epochs, steps_per_epoch=plan.steps, verbose=0)
    return model


RECOMMENDER = register_run_kind(
    RunKind(
        name="recommender",
        build=build_recommender,
        evaluate=evaluate_recommender,
        datasets=interaction_datasets,
        settings=SETTINGS,
        presets={"base": BASE, "tiny": TINY},
    )
)
