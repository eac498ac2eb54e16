"""The ``"judge"`` run kind: the `AttributeJudge` that scores generated images.

Trains on the real images of the judge's training items (``item_id % 5 != 0``,
augmented) and reports its accuracy per attribute on the held-out ones. Generator
runs train one of these into ``RUN/judge`` unless they are given one.
"""

from __future__ import annotations

import keras

from mmrec.evaluation.generation import (
    AttributeJudge,
    held_out_accuracy,
    judge_dataset,
    judge_split,
)
from mmrec.training.kinds.base import RunKind, RunPlan, register_run_kind, set_learning_rate

SETTINGS = {
    "epochs": int,
    "batch_size": int,
    "learning_rate": float | None,
    "filters": list | None,
    "feature_dim": int | None,
}

# Adam with a cosine decay; 60 epochs read every attribute of held-out items.
BASE = {
    "epochs": 60,
    "batch_size": 64,
    "learning_rate": None,
    "filters": None,
    "feature_dim": None,
}

# Shape is the hard attribute: ~30 epochs at a higher learning rate to read it.
TINY = {"epochs": 30, "learning_rate": 3e-3, "filters": [16, 32, 64], "feature_dim": 64}


def build_judge(plan: RunPlan, user_encoder, dtype) -> AttributeJudge:
    # The judge takes the global policy, which the driver sets to ``dtype``.
    return AttributeJudge.from_dataset(
        plan.data, name="attribute_judge", **plan.given("filters", "feature_dim")
    )


def compile_judge(model, plan: RunPlan, jit_compile) -> None:
    """The judge's default optimizer, its rate decayed to 1% over the run (cosine)."""
    model.compile(jit_compile=True if jit_compile else "auto")
    rate = plan.settings["learning_rate"]
    if rate is None:
        rate = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
    schedule = keras.optimizers.schedules.CosineDecay(
        rate, decay_steps=plan.epochs * plan.steps, alpha=0.01
    )
    set_learning_rate(model.optimizer, schedule)


def judge_examples(data) -> tuple[int, int]:
    train_ids, held_out = judge_split(data.info.num_items)
    return len(train_ids), len(held_out)


def judge_datasets(plan: RunPlan):
    """(augmented training items, repeated; held-out items)."""
    train = judge_dataset(plan.data, "train", plan.batch_size, plan.seed).repeat()
    return train, judge_dataset(plan.data, "held_out", plan.valid_batch_size)


def evaluate_judge(model, plan: RunPlan) -> dict:
    accuracy = held_out_accuracy(model, plan.data)
    print("judge held-out accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    return {"held_out_accuracy": accuracy}


JUDGE = register_run_kind(
    RunKind(
        name="judge",
        build=build_judge,
        evaluate=evaluate_judge,
        datasets=judge_datasets,
        settings=SETTINGS,
        presets={"base": BASE, "tiny": TINY},
        compile=compile_judge,
        examples=judge_examples,
        # The judge's batches keep their remainder.
        drop_remainder=False,
    )
)
