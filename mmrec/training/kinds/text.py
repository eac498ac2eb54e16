"""The ``"text"`` run kind: a `ConditionalTextGenerator`, scored on what it writes.

Trains on ``data.generation_pairs`` batches (teacher-forced cross-entropy, as
`ConditionalTextGenerator.fit` does). What it is conditioned on is the
``condition`` setting, a registered `Conditioning` name (``"attributes"``,
``"user"`` …); a conditioning that needs a user encoder gets the recommender's
(``train(..., recommender=...)``), as the image generators do.

The evaluation reports the validation loss and perplexity (``model.evaluate``),
a few sample descriptions, and — with ``judge_epochs`` set — the verdict of an
independent `mmrec.evaluation.text.TextJudge` trained for the run on real
descriptions (`mmrec.evaluation.text_report.evaluate_text_model`): conditional
accuracy, perplexity next to n-gram baselines, diversity (distinct-n,
self-BLEU), and for users the personalisation hit-rate, for explanations their
faithfulness.
"""

from __future__ import annotations

import os

from mmrec.evaluation.text_report import flatten_texts
from mmrec.models.conditioning import get_conditioning
from mmrec.models.text_generation import ConditionalTextGenerator
from mmrec.training import samples
from mmrec.training.kinds.base import RunKind, RunPlan, register_run_kind
from mmrec.training.kinds.generators import generation_datasets
from mmrec.training.reports import text_generation_table
from mmrec.training.runs import load_run_model

SETTINGS = {
    "epochs": int,
    "batch_size": int,
    "steps_per_epoch": int | None,
    "learning_rate": float | None,
    "condition": str,
    # The decoder's (`TextDecoder`) and the conditioning's; None: the model's default.
    "hidden_dim": int | None,
    "num_layers": int | None,
    "num_heads": int | None,
    "prefix_length": int | None,
    "dropout": float | None,
    "embedding_dim": int | None,
    "sampler": str | None,
    # condition "item": first train a new item encoder as an attribute classifier for this
    # many epochs (`pretrain_item_encoder`), then caption from it, frozen.
    "pretrain_epochs": int | None,
    # A local keras-hub preset directory (GPT-2 / Gemma) to start from, and its LoRA rank.
    "pretrained": str | None,
    "lora_rank": int | None,
    # The text judge of the evaluation: its epochs; None trains no judge.
    "judge_epochs": int | None,
}
BASE = {
    "epochs": 10,
    "batch_size": 64,
    "steps_per_epoch": 300,
    "learning_rate": None,
    # Descriptions of requested attributes; "user" needs --recommender RUN.
    "condition": "attributes",
    "hidden_dim": None,
    "num_layers": None,
    "num_heads": None,
    "prefix_length": None,
    "dropout": None,
    "embedding_dim": None,
    "sampler": None,
    "pretrain_epochs": None,
    "pretrained": None,
    "lora_rank": None,
    "judge_epochs": 6,
}
# A few hundred steps write readable shapes descriptions; the judge reads them after 3 epochs.
TINY = {"epochs": 3, "batch_size": 32, "steps_per_epoch": 100, "judge_epochs": 3}

DECODER_SETTINGS = ("hidden_dim", "num_layers", "num_heads", "prefix_length", "dropout")
NUM_SAMPLES = 5  # sample descriptions in the report


def build_text_generator(plan: RunPlan, user_encoder, dtype) -> ConditionalTextGenerator:
    condition = plan.settings["condition"]
    pretrains = get_conditioning(condition).pretrains_encoder
    if plan.settings["pretrain_epochs"] is not None and not pretrains:
        raise ValueError(
            "Expected the setting pretrain_epochs only with condition 'item' (it pretrains the "
            f"captioner's item encoder). Received: condition {condition!r}"
        )
    return ConditionalTextGenerator.from_dataset(
        plan.data,
        condition=plan.settings["condition"],
        user_encoder=user_encoder,
        decoder=plan.given(*DECODER_SETTINGS) or None,
        preset=plan.settings["pretrained"],
        lora_rank=plan.settings["lora_rank"],
        dtype=dtype,
        seed=plan.seed,
        **plan.given("embedding_dim", "sampler", "pretrain_epochs"),
    )


TEXT_JUDGE_FILE = "text_judge.keras"  # the run's judge, kept for reuse (e.g. by mmrec item)


def evaluate_text_generator(model, plan: RunPlan) -> dict:
    """Validation loss and perplexity, sample descriptions, the judge's verdict; prints a table."""
    _, valid = generation_datasets(plan)
    scores = model.evaluate(valid, steps=plan.valid_steps, return_dict=True, verbose=0)
    report = {
        "condition": model.condition,
        "valid": {name: float(value) for name, value in scores.items()},
        "samples": sample_descriptions(model, plan.data, NUM_SAMPLES, plan.seed),
    }
    if plan.settings["judge_epochs"] is not None:
        report.update(judge_text_generator(model, plan))
    print(text_generation_table(report), flush=True)
    return report


def sample_descriptions(model, data, rows, seed) -> list[dict]:
    """One description for each of the conditioning's first ``rows`` grid conditions."""
    conditions = samples.grid_conditions(data, model, rows)
    texts = flatten_texts(model.generate(conditions, num=1, seed=seed))
    attributes = data.info.attributes
    out = []
    for index, text in enumerate(texts):
        if isinstance(conditions, dict) and set(conditions) <= set(attributes):
            condition = {k: attributes[k][int(v[index])] for k, v in conditions.items()}
        elif isinstance(conditions, dict):  # content (captioning): the grid's row
            condition = f"grid row {index}"
        else:  # a history, or a (history, item id) pair
            condition = conditions[index]
        out.append({"condition": condition, "text": text})
    return out


def judge_text_generator(model, plan: RunPlan) -> dict:
    """The verdict of a `TextJudge` trained for the run (`evaluate_text_model`).

    The conditions are those the image generators are scored on
    (`Conditioning.evaluation_conditions`): the judge's held-out items, or the
    test split's users (with their held-out item, for explanations).
    """
    from mmrec.evaluation.text import (
        TextJudge,
        text_judge_held_out_accuracy,
        train_text_judge,
    )
    from mmrec.evaluation.text_report import evaluate_text_model

    path = plan.path(TEXT_JUDGE_FILE)
    if os.path.exists(path):
        judge = load_run_model(path, TextJudge)
    else:
        epochs = plan.settings["judge_epochs"]
        print(f"\ntraining the text judge ({epochs} epochs) into {path}", flush=True)
        judge = train_text_judge(plan.data, epochs=epochs, seed=plan.seed)
        judge.save(path)
    return {
        "judge": {
            "path": path,
            "held_out_accuracy": text_judge_held_out_accuracy(judge, plan.data),
        },
        "generation": evaluate_text_model(model, plan.data, judge, seed=plan.seed),
    }


TEXT = register_run_kind(
    RunKind(
        name="text",
        build=build_text_generator,
        evaluate=evaluate_text_generator,
        datasets=generation_datasets,
        settings=SETTINGS,
        presets={"base": BASE, "tiny": TINY},
    )
)
