"""The report of a trained `ConditionalTextGenerator`, as runs, benchmark and quickstart print it.

Where it sits: after training, beside `mmrec.evaluation.generation.evaluate_generation`
(images). The model's conditioning picks what to ask for
(`Conditioning.evaluation_conditions`): the judge's held-out items (their attributes,
or their image and sound for captioning), the test users (attributes sampled from
their preferences), or the test users with their held-out item (explanations). The
measures are those of `mmrec.evaluation.text`: the text judge's conditional
accuracy, perplexity next to unigram and bigram baselines, distinct-n and
self-BLEU next to the real descriptions', personalisation hit-rates, explanation
faithfulness.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmrec.evaluation.generation import judge_split
from mmrec.evaluation.text import (
    NGramLanguageModel,
    evaluate_text_generation,
    explanation_faithfulness,
    text_personalisation_report,
)
from mmrec.formats import PAD_ID


def flatten_texts(generated) -> list[str]:
    """``generate``'s output (a list, or a list of lists) → one flat list of strings."""
    if generated and isinstance(generated[0], list):
        return [text for row in generated for text in row]
    return list(generated)


def token_sequences(model, data, split, batch_size=512) -> list[list[int]]:
    """The split's training targets as the model tokenises them, each start … end."""
    pairs = model.preprocess(data.generation_pairs(split, batch_size=batch_size))
    end = model.tokenizer.end_token_id
    sequences = []
    for batch in pairs.map(lambda b: b["token_ids"]).as_numpy_iterator():
        for row in batch.tolist():
            stop = row.index(end, 1) + 1 if end in row[1:] else len(row)
            sequences.append(row[:stop])
    return sequences


def perplexity_report(model, data, split="test", batch_size=512) -> dict:
    """The model's per-token perplexity on a split next to unigram and bigram baselines.

    The baselines (`NGramLanguageModel`, Jelinek-Mercer smoothed) are fitted on the
    train split's targets, tokenised as the model tokenises them, and predict the
    same tokens (each after the start token, the end token included). A model
    loaded without its compile state (``compile=False``) is compiled with its
    defaults: the perplexity is a metric of ``evaluate``.
    """
    if not model.compiled:
        model.compile()
    held_out = data.generation_pairs(split, batch_size=batch_size)
    scores = model.evaluate(held_out, verbose=0, return_dict=True)
    train = token_sequences(model, data, "train", batch_size)
    test = token_sequences(model, data, split, batch_size)
    size = int(model.decoder.vocabulary_size)
    report = {"perplexity": float(scores["perplexity"]), "perplexity_split": split}
    for name, order in (("unigram", 1), ("bigram", 2)):
        baseline = NGramLanguageModel(order, "interpolated", vocabulary_size=size).fit(train)
        report[f"perplexity_{name}"] = baseline.perplexity(test)
    report["perplexity_ratio_to_bigram"] = report["perplexity"] / report["perplexity_bigram"]
    return report


def faithfulness_report(texts, explained, data) -> dict:
    """`explanation_faithfulness` of texts written for ``explained = (histories, item ids)``."""
    histories, items = explained
    labels = data.catalogue().labels
    history_labels = []
    for row in np.asarray(histories):
        ids = row[row != PAD_ID]
        history_labels.append({name: set(values[ids].tolist()) for name, values in labels.items()})
    item_labels = {name: values[np.asarray(items)] for name, values in labels.items()}
    report = explanation_faithfulness(texts, history_labels, item_labels, data.info.attributes)
    return {f"explanation_{k}": v for k, v in report.items()}


def evaluate_text_model(
    model, data, judge, num_per_condition=1, seed=0, temperature=1.0, perplexity_split="test"
) -> dict:
    """Scores a trained `ConditionalTextGenerator` with an independent `TextJudge`.

    Returns ``condition``; ``conditional_accuracy`` (per attribute: the judge reads
    the requested attribute in the text); ``distinct_1``/``_2`` and ``self_bleu`` with
    the real descriptions' (``reference_…``, of the same items); ``perplexity`` on
    ``perplexity_split`` with ``perplexity_unigram``/``_bigram``; for users the
    hit-rates of `text_personalisation_report`; for explanations
    ``explanation_faithful`` and its parts; ``samples`` (the first 8 texts).
    """
    catalogue = data.catalogue()
    _, held_out = judge_split(catalogue.num_items)
    asked = model.conditioning.evaluation_conditions(
        model, data, held_out, num_per_condition, seed, temperature, 8
    )
    texts = flatten_texts(model.generate(asked.conditions, num=asked.num, seed=seed + 1))
    items = held_out if asked.targets is None else asked.targets
    references = [t.decode("utf-8") for t in tf.gather(catalogue.texts, items).numpy()]
    report = {"condition": model.condition}
    report.update(evaluate_text_generation(judge, texts, asked.requested, references))
    if asked.user_ids is not None:
        report.update(
            text_personalisation_report(judge, data, texts, asked.user_ids, asked.targets)
        )
    if asked.explained is not None:
        report.update(faithfulness_report(texts, asked.explained, data))
    report.update(asked.report)
    report.update(perplexity_report(model, data, perplexity_split))
    report["samples"] = texts[:8]
    return report
