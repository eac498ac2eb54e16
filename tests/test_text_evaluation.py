"""Evaluation of generated text (mmrec.evaluation.text): the text judge, n-gram perplexity,
diversity, attribute mentions, explanation faithfulness and the reports."""

import doctest
import math

import numpy as np
import pytest
import tensorflow as tf

import mmrec
from mmrec.data import synthetic
from mmrec.evaluation import text as text_module
from mmrec.evaluation.generation import judge_split
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
from mmrec.testing import check_config_round_trip, check_saving

SHAPES = {name: list(classes) for name, classes in synthetic.ATTRIBUTES.items()}
FASHION = {
    "category": ["t-shirt", "sandal", "ankle boot", "dress"],
    "brightness": ["dark", "mid-tone", "light"],
}


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


@pytest.fixture(scope="module")
def judge(data):
    return train_text_judge(data, epochs=30, batch_size=16)


class MentionJudge:
    """A stand-in judge that reads the attributes a text names (exact on real descriptions)."""

    def __init__(self, attributes):
        self.attributes = attributes

    def predict_attributes(self, texts):
        texts = texts.numpy() if isinstance(texts, tf.Tensor) else texts
        found = [mentioned_attributes(t, self.attributes) for t in texts]
        return {n: np.array([f[n][0] if f[n] else -1 for f in found]) for n in self.attributes}

    def accuracy(self, texts, labels):
        predicted = self.predict_attributes(texts)
        return {n: float(np.mean(predicted[n] == np.asarray(labels[n]))) for n in labels}


def test_docstring_examples_run():
    for module in (text_module, synthetic):
        result = doctest.testmod(module, extraglobs={"np": np, "tf": tf}, verbose=False)
        assert result.failed == 0 and result.attempted > 0, module.__name__


# --- perplexity ------------------------------------------------------------------------------


def test_perplexity_from_log_likelihood():
    assert perplexity_from_log_likelihood(10 * math.log(7.0), 10) == pytest.approx(7.0)
    with pytest.raises(ValueError, match="Expected num_tokens > 0"):
        perplexity_from_log_likelihood(1.0, 0)


def test_a_uniform_unigram_over_v_tokens_has_perplexity_v():
    # Tokens 1..5 equally often after the start token 0; V = 6 with add-k and k = 0.
    lm = NGramLanguageModel(order=1, k=0.0, vocabulary_size=6).fit([[0, 1, 2, 3, 4, 5]] * 3)
    assert lm.perplexity([[0, 5, 1, 3], [0, 2, 4]]) == pytest.approx(5.0)
    # Fit on nothing useful but smoothed: add-1 over a corpus of one of each of V = 4 tokens.
    flat = NGramLanguageModel(order=1, k=1.0, vocabulary_size=4).fit([[0, 0, 1, 2, 3]])
    assert flat.perplexity([[3, 2, 1, 0]]) == pytest.approx(4.0)


def test_add_one_unigram_by_hand():
    lm = NGramLanguageModel(order=1, k=1.0, vocabulary_size=3).fit([[0, 1, 1, 2]])
    # Predicted tokens 1, 1, 2: P(1) = (2 + 1) / (3 + 3), P(2) = 2 / 6, P(0) = 1 / 6.
    np.testing.assert_allclose(lm.log_prob([[0, 1, 2], [2, 0]]), [math.log(1 / 6), math.log(1 / 6)])
    assert lm.perplexity([[0, 1, 2]]) == pytest.approx(math.sqrt(6.0))


def test_a_deterministic_bigram_corpus_has_perplexity_one_plus_the_smoothing():
    corpus = [[0, 1, 2, 3]] * 10
    lm = NGramLanguageModel(order=2, k=0.1).fit(corpus)
    assert lm.vocabulary_size == 4
    # P(next | previous) = (10 + 0.1) / (10 + 0.1 · 4) for each of the three predicted tokens.
    assert lm.perplexity([[0, 1, 2, 3]]) == pytest.approx(10.4 / 10.1)
    exact = NGramLanguageModel(order=2, k=0.0).fit(corpus)
    assert exact.perplexity([[0, 1, 2, 3]]) == pytest.approx(1.0)
    # The unigram on the same corpus is uniform over the three predicted tokens (k = 0).
    assert NGramLanguageModel(order=1, k=0.0).fit(corpus).perplexity(corpus) == pytest.approx(3.0)


def test_jelinek_mercer_interpolation_by_hand():
    corpus = [[0, 1, 2, 3]] * 10
    lm = NGramLanguageModel(order=2, smoothing="interpolated", interpolation=0.9).fit(corpus)
    unigram = 0.9 * (10 / 30) + 0.1 / 4  # P(1) = P(2) = P(3) = 0.325; P(0) = 0.025
    assert lm.perplexity(corpus) == pytest.approx(1.0 / (0.9 + 0.1 * unigram))
    # Token 3 never precedes anything: its row falls back to the unigram.
    np.testing.assert_allclose(lm.log_prob([[3, 1], [3, 0]]), np.log([unigram, 0.025]))
    # An unseen pair after a seen context: (1 - λ) · P(w).
    np.testing.assert_allclose(lm.log_prob([[1, 3]]), [math.log(0.1 * unigram)])
    uni = NGramLanguageModel(order=1, smoothing="interpolated", interpolation=0.9).fit(corpus)
    np.testing.assert_allclose(uni.log_prob([[2, 0, 1]]), [math.log(0.025) + math.log(unigram)])


def test_log_prob_is_per_sequence_and_single_tokens_predict_nothing():
    lm = NGramLanguageModel(order=2).fit([[0, 1, 2, 3], [0, 2, 1, 3]])
    log_p = lm.log_prob([[0, 1, 2, 3], [0], [0, 1]])
    assert log_p.shape == (3,) and log_p[1] == 0.0
    assert log_p[2] == pytest.approx(lm.log_prob([[0, 1, 2, 3]])[0] - lm.log_prob([[1, 2, 3]])[0])


def test_language_model_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="Expected order to be 1 or 2. Received: order=3"):
        NGramLanguageModel(order=3)
    with pytest.raises(ValueError, match="Expected smoothing in"):
        NGramLanguageModel(smoothing="kneser_ney")
    with pytest.raises(ValueError, match="Call `fit"):
        NGramLanguageModel().log_prob([[0, 1]])
    lm = NGramLanguageModel(vocabulary_size=4).fit([[0, 1, 2, 3]])
    with pytest.raises(ValueError, match=r"Expected token ids in \[0, 4\)"):
        lm.perplexity([[0, 7]])
    with pytest.raises(ValueError, match="two or more tokens"):
        NGramLanguageModel().fit([[0]])


# --- diversity -------------------------------------------------------------------------------


def test_split_words_lower_cases_and_splits_punctuation():
    assert split_words(b"Star (big); size: SMALL, plus-sign") == [
        "star", "(", "big", ")", ";", "size", ":", "small", ",", "plus-sign",
    ]  # fmt: skip


def test_distinct_n_by_hand():
    texts = ["a red star", "a red heart, big"]
    # Words: a red star | a red heart , big → 6 unique of 8.
    assert distinct_n(texts, 1) == pytest.approx(6 / 8)
    # Bigrams: (a red) ×2, (red star), (red heart), (heart ,), (, big) → 5 unique of 6.
    assert distinct_n(texts, 2) == pytest.approx(5 / 6)
    assert distinct_n(["a red star"] * 4, 1) == pytest.approx(3 / 12)
    assert distinct_n(["a red star"] * 4, 2) == pytest.approx(2 / 8)
    assert distinct_n(["star"], 2) == 0.0
    with pytest.raises(ValueError, match="Expected n >= 1"):
        distinct_n(texts, 0)


def reference_bleu(hypothesis, references, max_order=4):
    """A plain sentence BLEU (add-1 smoothing above order 1) to check `self_bleu` against."""
    hyp, refs = split_words(hypothesis), [split_words(r) for r in references]
    if not hyp:
        return 0.0
    log_p = 0.0
    for n in range(1, max_order + 1):
        grams = [tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1)]
        matches = 0
        for g in set(grams):
            in_refs = max(sum(tuple(r[i : i + n]) == g for i in range(len(r))) for r in refs)
            matches += min(grams.count(g), in_refs)
        if n == 1 and matches == 0:
            return 0.0
        log_p += math.log(matches / len(grams) if n == 1 else (matches + 1) / (len(grams) + 1))
    closest = min((abs(len(r) - len(hyp)), len(r)) for r in refs)[1]
    return math.exp(min(0.0, 1 - closest / len(hyp)) + log_p / max_order)


def test_self_bleu_by_hand():
    # Each against the other: p1 = 2/3; p2 = (1 + 1) / (2 + 1) (add-1); equal lengths → 2/3.
    assert self_bleu(["the cat sat", "the cat ran"], max_order=2) == pytest.approx(2 / 3)
    # "the cat" vs "the cat sat": p1 = 1, brevity exp(1 - 3/2); the other way p1 = 2/3.
    expected = (math.exp(-0.5) + 2 / 3) / 2
    assert self_bleu(["the cat", "the cat sat"], max_order=1) == pytest.approx(expected)
    # Clipping: "the the the" matches "the" once; the closest reference length (3, not 9) wins.
    texts = ["the the the", "the cat sat", "a cat sat on a mat by a door"]
    scores = [reference_bleu(t, texts[:i] + texts[i + 1 :], 1) for i, t in enumerate(texts)]
    assert scores[0] == pytest.approx(1 / 3)
    assert self_bleu(texts, max_order=1) == pytest.approx(np.mean(scores))


def test_self_bleu_is_one_for_identical_texts_and_zero_for_disjoint_ones():
    assert self_bleu(["a large red heart on a dotted background"] * 5) == pytest.approx(1.0)
    assert self_bleu(["red star", "blue heart", "green ring dotted"]) == 0.0
    with pytest.raises(ValueError, match="Expected at least two texts"):
        self_bleu(["alone"])


def test_self_bleu_equals_the_mean_bleu_against_the_others():
    rng = np.random.default_rng(0)
    words = ["red", "star", "blue", "heart", "on", "a", "big"]
    texts = [" ".join(rng.choice(words, rng.integers(2, 8))) for _ in range(12)]
    texts += [texts[0]]  # a duplicate: its best count comes from another text
    expected = [reference_bleu(t, texts[:i] + texts[i + 1 :]) for i, t in enumerate(texts)]
    assert self_bleu(texts) == pytest.approx(np.mean(expected))
    chosen = np.sort(np.random.default_rng(3).choice(len(texts), 5, replace=False))
    assert self_bleu(texts, sample=5, seed=3) == pytest.approx(
        np.mean([expected[i] for i in chosen])
    )


# --- attribute mentions ----------------------------------------------------------------------


def test_mentioned_attributes_reads_the_synonyms_of_real_descriptions(data):
    catalogue = data.catalogue()
    attributes = data.metadata.attributes
    for i, text in enumerate(catalogue.texts.numpy()):
        found = mentioned_attributes(text, attributes)
        assert found == {n: [int(catalogue.labels[n][i])] for n in attributes}, text


def test_mentioned_attributes_matches_whole_words_longest_first():
    found = mentioned_attributes("a huge three-sided shape in emerald, blank background", SHAPES)
    assert found == {"shape": [2], "colour": [3], "pattern": [0], "size": [2]}
    # "blueish" is not "blue"; "plus sign" is one mention of cross; "polka-dot" is dots.
    found = mentioned_attributes("a blueish plus sign on a polka-dot background", SHAPES)
    assert found == {"shape": [5], "colour": [], "pattern": [2], "size": []}
    # Plurals, and two classes of one attribute.
    found = mentioned_attributes("Crosses and RED STARS and crimson hearts", SHAPES)
    assert found == {"shape": [4, 5, 7], "colour": [0], "pattern": [], "size": []}
    assert mentioned_attributes("medium-sized lozenge", SHAPES)["size"] == [1]


def test_mentioned_attributes_with_other_attributes_and_custom_synonyms():
    assert mentioned_attributes("a light ankle boot", FASHION) == {
        "category": [2],
        "brightness": [2],
    }
    synonyms = {"category": {"sandal": ["open shoe"]}, "brightness": {"dark": ["shadowy"]}}
    found = mentioned_attributes("a shadowy open shoe", FASHION, synonyms=synonyms)
    assert found == {"category": [1], "brightness": [0]}
    with pytest.raises(ValueError, match="Expected class names for attribute .shape.. Received: 8"):
        mentioned_attributes("a star", {"shape": 8})


def test_attribute_synonyms_is_a_copy():
    table = synthetic.attribute_synonyms()
    table["shape"]["cross"].append("x")
    assert synthetic.attribute_synonyms()["shape"]["cross"] == ["cross", "plus sign", "plus"]


# --- explanations ----------------------------------------------------------------------------


def test_explanation_faithfulness_on_crafted_explanations():
    history = [{"shape": {4, 7}, "colour": {0}}] * 5
    items = {"shape": np.full(5, 7), "colour": np.zeros(5, int), "pattern": np.full(5, 2)}
    texts = [
        "You often pick scarlet starbursts; this is a crimson love heart on a spotted backdrop.",
        "you often pick blue stars; this is a red heart",  # blue is not in the history
        "you often pick red stars; this is a large red star",  # the item is a heart
        "this is a red heart you will like",  # no history clause
        "you often pick things; this is a thing",  # names nothing: faithful, not specific
    ]
    report = explanation_faithfulness(texts, history, items, SHAPES)
    assert report == {
        "faithful": 2 / 5,
        "history_clause_faithful": 3 / 5,
        "item_clause_faithful": 3 / 5,
        "malformed": 1 / 5,
        "specific": 3 / 5,
    }
    with pytest.raises(ValueError, match="Expected a non-empty list of explanations"):
        explanation_faithfulness(texts[:2], history, items, SHAPES)


# --- the judge -------------------------------------------------------------------------------


def test_text_judge_learns_the_descriptions_and_beats_chance_on_held_out_ones(data, judge):
    catalogue = data.catalogue()
    train_ids, held_out_ids = judge_split(catalogue.num_items)
    train = judge.accuracy(
        tf.gather(catalogue.texts, train_ids),
        {n: v[train_ids] for n, v in catalogue.labels.items()},
    )
    assert min(train.values()) >= 0.95, train
    held_out = text_judge_held_out_accuracy(judge, data)
    assert set(held_out) == set(data.metadata.attributes)
    # 48 training texts with a 90-token vocabulary: held-out synonyms are often unseen, so the
    # floor is only above chance (mean chance 0.21; measured 0.44 with seed 0).
    assert np.mean(list(held_out.values())) >= 0.35, held_out
    labels = {f"label_{n}": v[held_out_ids] for n, v in catalogue.labels.items()}
    assert judge.accuracy(tf.gather(catalogue.texts, held_out_ids), labels) == held_out


def test_text_judge_takes_strings_bytes_and_tensors(judge):
    texts = ["a big red star on a dotted background", "tiny blue ring, plain"]
    from_list = judge.predict_attributes(texts)
    from_bytes = judge.predict_attributes(np.array([t.encode() for t in texts], dtype=object))
    from_tensor = judge.predict_attributes(tf.constant(texts), batch_size=1)
    for name in judge.heads:
        assert from_list[name].shape == (2,)
        np.testing.assert_array_equal(from_list[name], from_bytes[name])
        np.testing.assert_array_equal(from_list[name], from_tensor[name])
    assert judge.predict_attributes([])["shape"].shape == (0,)


def test_text_judge_config_round_trip_and_keras_file(judge, tmp_path):
    texts = tf.constant(["a big red star on a dotted background", "tiny blue ring, plain"])
    check_config_round_trip(judge, texts)
    check_saving(judge, texts, tmp_path)
    outputs = judge(texts)
    assert all(outputs[n].dtype == tf.float32 for n in outputs)
    np.testing.assert_allclose(outputs["colour"].numpy().sum(-1), 1.0, rtol=1e-5)


def test_text_judge_validates_its_dataset():
    class NoVocabulary:
        path = "/data/without/vocab"
        vocabulary_path = None

    with pytest.raises(ValueError, match="Expected a dataset with a WordPiece vocabulary"):
        TextJudge.from_dataset(NoVocabulary())
    with pytest.raises(ValueError, match="Expected attributes to be a non-empty dict"):
        TextJudge(["[PAD]", "[UNK]", "[CLS]", "[SEP]"], {})


# --- reports ---------------------------------------------------------------------------------


def _favourite_text(users, user, hit):
    """A description naming one of the user's favourite (or, with hit=False, other) classes."""
    row = int(np.searchsorted(users["user_id"], user))
    pick = {}
    for name in ("colour", "shape"):
        favourites = set(users[f"pref_{name}"][row].tolist())
        classes = [c for c in range(len(SHAPES[name])) if (c in favourites) == hit]
        pick[name] = SHAPES[name][classes[0]]
    return f"a small {pick['colour']} {pick['shape']} on a plain background"


def test_text_personalisation_report_on_a_crafted_case(data):
    users = data.users()
    catalogue = data.catalogue()
    test_users = users["user_id"][:6]
    user_ids = np.repeat(test_users, 2)
    # The first text of each user names favourites, the second names other classes.
    texts = [_favourite_text(users, u, hit=k == 0) for u in test_users for k in range(2)]
    targets = np.arange(6) * 7
    report = text_personalisation_report(
        MentionJudge(data.metadata.attributes), data, texts, user_ids, targets
    )
    assert report["hit_attributes"] == ["colour", "shape"]
    assert report["hit_rate"] == 0.5
    assert report["hit_rate_colour"] == 0.5 and report["hit_rate_shape"] == 0.5
    assert report["hit_rate_pattern"] == pytest.approx(
        np.mean([users["pref_pattern"][u][0] == 0 for u in user_ids])
    )
    # The stand-in judge reads real descriptions exactly: judged = true labels.
    assert report["hit_rate_held_out_items"] == report["hit_rate_held_out_items_true_labels"]
    expected = mmrec.evaluation.preference_hits(
        {n: catalogue.labels[n][targets] for n in ("colour", "shape")}, test_users, users
    )
    assert report["hit_rate_held_out_items_true_labels"] == pytest.approx(np.mean(expected))
    assert 0.0 < report["hit_rate_random_items"] < 0.5
    with pytest.raises(ValueError, match="Expected one user id per text"):
        text_personalisation_report(MentionJudge(SHAPES), data, texts[:-1], user_ids, targets)


def test_text_personalisation_report_with_the_trained_judge(data, judge):
    catalogue = data.catalogue()
    users = data.users()
    targets = np.array([0, 5, 10])
    user_ids = users["user_id"][:3]
    real = [t.decode() for t in catalogue.texts.numpy()[targets]]
    report = text_personalisation_report(judge, data, real, user_ids, targets)
    # Generated texts that are the held-out items' own descriptions score like them.
    assert report["hit_rate"] == report["hit_rate_held_out_items"]
    assert {"hit_rate_colour", "hit_rate_shape", "hit_rate_pattern"} <= set(report)


def test_evaluate_text_generation(data, judge):
    catalogue = data.catalogue()
    texts = ["a large red heart on a dotted background"] * 3 + ["a small blue ring"]
    requested = {"shape": [7, 7, 7, 6], "colour": [0, 0, 0, 5]}
    report = evaluate_text_generation(MentionJudge(SHAPES), texts, requested)
    assert report["conditional_accuracy"] == {"shape": 1.0, "colour": 1.0}
    assert report["distinct_1"] == pytest.approx(10 / 28)
    assert report["num_texts"] == 4 and 0.7 < report["self_bleu"] < 1.0
    assert "reference_self_bleu" not in report
    reference = catalogue.texts.numpy()[:4]
    report = evaluate_text_generation(judge, texts, requested, reference_texts=reference)
    assert set(report["conditional_accuracy"]) == {"shape", "colour"}
    assert report["reference_distinct_1"] == pytest.approx(distinct_n(reference, 1))
    assert report["reference_self_bleu"] < report["self_bleu"]
