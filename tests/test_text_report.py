"""The report of a trained text generator (mmrec.evaluation.text_report)."""

import keras
import numpy as np
import pytest

import mmrec
from mmrec.evaluation.text import train_text_judge
from mmrec.evaluation.text_report import (
    evaluate_text_model,
    faithfulness_report,
    flatten_texts,
    perplexity_report,
    token_sequences,
)
from mmrec.models import ConditionalTextGenerator

TINY_DECODER = {"hidden_dim": 16, "num_layers": 1, "num_heads": 2}


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


@pytest.fixture(scope="module")
def judge(data):
    return train_text_judge(data, epochs=2)


def _model(data, condition):
    keras.utils.set_random_seed(0)
    model = ConditionalTextGenerator.from_dataset(
        data, condition=condition, decoder=TINY_DECODER, embedding_dim=8
    )
    model.compile()
    model.fit(data.generation_pairs("train", batch_size=16).take(2), verbose=0)
    return model


def test_flatten_texts():
    assert flatten_texts([["a", "b"], ["c"]]) == ["a", "b", "c"]
    assert flatten_texts(["a", "b"]) == ["a", "b"]


def test_token_sequences_are_the_models_training_targets(data):
    model = _model(data, "attributes")
    sequences = token_sequences(model, data, "valid")
    assert len(sequences) == data.info.splits["valid"]
    start, end = model.tokenizer.start_token_id, model.tokenizer.end_token_id
    assert all(s[0] == start and s[-1] == end and end not in s[1:-1] for s in sequences)


def test_perplexity_report_puts_the_model_beside_the_baselines(data):
    model = _model(data, "attributes")
    report = perplexity_report(model, data, "valid")
    assert report["perplexity_bigram"] < report["perplexity_unigram"]
    assert report["perplexity_ratio_to_bigram"] == pytest.approx(
        report["perplexity"] / report["perplexity_bigram"]
    )
    # Two steps in, the model is far from the bigram baseline; the vocabulary bounds it.
    assert report["perplexity_bigram"] < report["perplexity"] < model.decoder.vocabulary_size * 2


def test_reference_explanations_are_faithful_and_perturbed_ones_are_not(data):
    model = _model(data, "explanation")
    asked = model.conditioning.evaluation_conditions(model, data, None, 1, 0, 1.0, 4)
    histories, items = asked.explained
    written = model.conditioning.explanations(histories, items)
    report = faithfulness_report(written, asked.explained, data)
    assert report["explanation_faithful"] == 1.0 and report["explanation_malformed"] == 0.0
    # Swap in an item from elsewhere: its clause now names attributes the item lacks.
    shuffled = model.conditioning.explanations(histories, np.roll(items, 1))
    wrong = faithfulness_report(shuffled, asked.explained, data)
    assert wrong["explanation_item_clause_faithful"] < 0.5
    assert wrong["explanation_history_clause_faithful"] == 1.0


@pytest.mark.parametrize("condition", ["attributes", "explanation"])
def test_evaluate_text_model_reports_every_measure(data, judge, condition):
    report = evaluate_text_model(_model(data, condition), data, judge)
    assert report["condition"] == condition
    assert set(report["conditional_accuracy"]) == set(data.info.attributes)
    assert all(0.0 <= v <= 1.0 for v in report["conditional_accuracy"].values())
    for key in ("distinct_1", "distinct_2", "reference_distinct_2", "self_bleu"):
        assert 0.0 <= report[key] <= 1.0
    assert report["perplexity_unigram"] > report["perplexity_bigram"] > 1.0
    assert len(report["samples"]) == min(8, report["num_texts"])
    assert ("explanation_faithful" in report) == (condition == "explanation")
