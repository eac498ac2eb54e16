"""The ``"recommender"`` run kind: the multimodal two-tower `Recommender`, ranked on the test split.

Trains on ``data.interactions`` batches that carry the targets' content (a step
runs the item tower on the batch's items only); the report is `evaluate_ranking` for the
model next to the popularity, ID-only two-tower and oracle baselines.

A preset's ``modalities`` are what it would like (``tiny``: image and text, the
cheap ones); the run keeps those the dataset has, and says so, so that ``--config
tiny`` trains on a text-only catalogue too. Modalities set explicitly (a config
file, a dict) are used as given: one the dataset lacks is an error.
"""

from __future__ import annotations

import sys
import warnings

import keras

from mmrec.evaluation.ranking import (
    OracleBaseline,
    PopularityBaseline,
    evaluate_ranking,
    ranking_table,
)
from mmrec.layers.item_encoder import ENCODERS, encoder_arguments
from mmrec.models.recommender import Recommender
from mmrec.training.kinds.base import (
    RunKind,
    RunPlan,
    best_checkpoint,
    register_run_kind,
    set_learning_rate,
)

# The model arguments a config may set (None: the model's default).
MODEL_KEYS = (
    "fusion",
    "embedding_dim",
    "item_id_embedding",
    "item_bias",
    "item_bias_l2",
    "unseen_bias_neighbours",
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
    "unseen_bias_neighbours": int | None,
    "user_pooling": str | None,
    "temperature": float | None,
    "encoder_config": dict | None,
    "id_only_baseline": bool,
    # Uniformly sampled negatives per batch beside the in-batch ones (0: in-batch only).
    "negatives": int,
    # History items through the item tower per batch: true for all of them, K for a
    # random K (constant cost at any catalogue size), false for the item table only.
    "history_content": bool | int,
    # Stop when the validation loss has not improved for this many epochs and keep the
    # best epoch's weights (null: train every epoch).
    "early_stopping": int | None,
}

# What "encoder_config" may hold: a modality, then its encoder's constructor arguments.
OBJECT_KEYS = {
    "encoder_config": {m: dict.fromkeys(encoder_arguments(cls)) for m, cls in ENCODERS.items()}
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
    "embedding_dim": 32,
    "item_id_embedding": None,
    "item_bias": None,
    "item_bias_l2": None,
    "unseen_bias_neighbours": None,
    "user_pooling": None,
    "temperature": None,
    "encoder_config": {
        "image": {"filters": [16, 32, 64]},
        "text": {"hidden_dim": 32, "sequence_length": 24},
        "audio": {"filters": [8, 16, 32], "num_mel_bins": 32},
    },
    # Also train the ID-only two-tower (same settings, no content) as a baseline.
    "id_only_baseline": True,
    "negatives": 0,
    "history_content": True,
    "early_stopping": None,
}

TINY = {
    "epochs": 6,
    # Image (at 16×16) + text: audio and full-size images cost most of a step.
    "modalities": ["image", "text"],
    "encoder_config": {
        "image": {"filters": [8, 16], "image_size": 16},
        "text": {"hidden_dim": 16, "sequence_length": 16},
    },
}


def build_recommender(plan: RunPlan, user_encoder, dtype) -> Recommender:
    return Recommender.from_dataset(
        plan.data,
        modalities=run_modalities(plan),
        dtype=dtype,
        name="recommender",
        **plan.given(*MODEL_KEYS),
    )


def run_modalities(plan: RunPlan, quiet: bool = False) -> tuple[str, ...] | None:
    """The run's modalities: as configured, or the preset's that the dataset has.

    ``None`` (every modality of the dataset) stays ``None``. A preset's list is
    cut to the dataset's modalities (all of them if none is left), with a line
    in the log; an explicitly configured list is returned as it is, so that
    `Recommender.from_dataset` refuses a modality the dataset lacks.
    """
    from mmrec.training.configs import explicit_keys  # configs imports the kinds

    wanted = plan.settings["modalities"]
    if wanted is None:
        return None
    if "modalities" in explicit_keys(plan.settings):
        return tuple(wanted)
    available = tuple(plan.data.info.modalities)
    kept = tuple(m for m in wanted if m in available) or available
    if kept != tuple(wanted) and not quiet:
        print(
            f"mmrec: the preset's modalities {list(wanted)} → {list(kept)}: the dataset "
            f"'{plan.data.info.name}' has {list(available)} (set \"modalities\" in a --config "
            "file to choose)",
            flush=True,
        )
    return kept


def interaction_datasets(plan: RunPlan):
    """(training, validation) batches of ``data.interactions`` with the targets' content
    (the run's modalities), their history items' (``history_content``) and ``negatives``
    sampled items; training repeats, seeded."""
    content = run_modalities(plan, quiet=True)
    content = True if content is None else list(content)
    history = plan.settings["history_content"] if content else False
    if history is not False and plan.replicas > 1:
        # A batch's history items are not split with its rows across replicas (their
        # positions index the whole batch): each replica reads the table instead.
        print(
            f"mmrec: history_content needs one replica; on {plan.replicas} the user tower "
            'reads the history from the item table (set "history_content": false to '
            "silence this)",
            flush=True,
        )
        history = False
    train = plan.data.interactions(
        "train",
        batch_size=plan.batch_size,
        content=content,
        negatives=plan.settings["negatives"],
        history_content=history,
        repeat=True,
        drop_remainder=True,
        cache=True,
        seed=plan.seed,
    )
    valid = plan.data.interactions(
        "valid",
        batch_size=plan.valid_batch_size,
        content=content,
        history_content=history,
        drop_remainder=True,
        cache=True,
    )
    return train, valid


def recommender_callbacks(model, plan: RunPlan) -> list:
    """The best checkpoint by ``val_loss``, and early stopping if ``early_stopping`` is set
    (`Recommender.fit` re-embeds the catalogue from the restored weights at the end)."""
    callbacks = best_checkpoint(model, plan)
    patience = plan.settings["early_stopping"]
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True, verbose=1
            )
        )
    return callbacks


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
    """The ID-only two-tower baseline: the same settings without content (default strategy).

    Its epochs print like the main model's (``plan.verbose`` where the plan has
    it, else a progress bar on a terminal and a line per epoch otherwise).
    """
    print(
        "\nmmrec: training the ID-only baseline 'id_only' for the comparison: the same "
        f"two-tower with item-id embeddings and no content ({plan.epochs} epoch(s) × "
        f"{plan.steps} step(s))",
        flush=True,
    )
    verbose = plan.verbose
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
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
    with warnings.catch_warnings():
        # Keras warns that shuffle=True is ignored for a tf.data.Dataset (ours is shuffled).
        warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
        model.fit(train_data, epochs=plan.epochs, steps_per_epoch=plan.steps, verbose=verbose)
    return model


RECOMMENDER = register_run_kind(
    RunKind(
        name="recommender",
        build=build_recommender,
        evaluate=evaluate_recommender,
        datasets=interaction_datasets,
        callbacks=recommender_callbacks,
        settings=SETTINGS,
        presets={"base": BASE, "tiny": TINY},
        object_keys=OBJECT_KEYS,
    )
)
