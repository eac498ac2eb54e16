"""Ranking metrics against hand-computed cases, NumPy brute force and keras-rs."""

import keras_rs
import numpy as np
import pytest

from mmrec.data import ShapesConfig, load, write_shapes
from mmrec.evaluation.baselines import (
    OracleBaseline,
    PopularityBaseline,
    PosteriorBaseline,
    residual_popularity,
)
from mmrec.evaluation.metrics import (
    ndcg_at_k,
    paired_recall_difference,
    recall_at_k,
    target_ranks,
)
from mmrec.evaluation.ranking import evaluate_ranking, ranking_table


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("rank") / "ds")
    write_shapes(path, ShapesConfig(num_items=120, num_users=80, seed=2), progress=False)
    return load(path)


def test_hand_computed_ranks_exclude_the_history():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [0.1, 0.9, 0.5, 0.3]])
    history = np.array([[1, -1], [3, -1]])
    # Row 0: item 1 (0.9) is history, so target 2 (0.5) is first. Row 1: target 0 has
    # items 1 and 2 above it (item 3 is history).
    np.testing.assert_array_equal(target_ranks(scores, history, np.array([2, 0])), [0, 2])


def test_ties_count_at_their_midpoint():
    ranks = target_ranks(np.zeros((1, 5)), np.full((1, 1), -1), np.array([3]))
    assert ranks.tolist() == [2.0]  # four tied items: the expected rank is 2


def test_metrics_of_no_examples_are_none():
    assert recall_at_k(np.zeros(0), 10) is None and ndcg_at_k(np.zeros(0), 10) is None


def test_recall_and_ndcg_hand_computed():
    ranks = np.array([0.0, 1.0, 5.0])
    assert recall_at_k(ranks, 2) == pytest.approx(2 / 3)
    assert ndcg_at_k(ranks, 2) == pytest.approx((1.0 + 1.0 / np.log2(3.0)) / 3)
    assert ndcg_at_k(ranks, 10) == pytest.approx((1.0 + 1.0 / np.log2(3.0) + 1 / np.log2(7)) / 3)


def test_paired_recall_difference_and_its_standard_error():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 100, 400), rng.integers(0, 100, 400)
    diff, se = paired_recall_difference(a, b, 20)
    assert diff == pytest.approx(recall_at_k(a, 20) - recall_at_k(b, 20))
    per_user = (a < 20).astype(float) - (b < 20).astype(float)
    assert se == pytest.approx(np.std(per_user, ddof=1) / 20)
    # The same model against itself: no difference, no error.
    assert paired_recall_difference(a, a, 20) == (0.0, 0.0)
    with pytest.raises(ValueError, match=r"same examples .*Received: shapes \(400,\) and \(3,\)"):
        paired_recall_difference(a, b[:3], 20)


def test_metrics_agree_with_numpy_loops_and_keras_rs():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(64, 40))
    target = rng.integers(0, 40, 64)
    history = np.full((64, 3), -1)
    ranks = target_ranks(scores, history, target)
    for k in (1, 5, 10):
        loop_recall = np.mean([(scores[i] > scores[i, target[i]]).sum() < k for i in range(64)])
        assert recall_at_k(ranks, k) == pytest.approx(loop_recall)
        relevance = np.eye(40)[target]
        recall, ndcg = keras_rs.metrics.RecallAtK(k=k), keras_rs.metrics.NDCG(k=k)
        recall.update_state(relevance, scores)
        ndcg.update_state(relevance, scores)
        assert recall_at_k(ranks, k) == pytest.approx(float(recall.result()), abs=1e-6)
        assert ndcg_at_k(ranks, k) == pytest.approx(float(ndcg.result()), abs=1e-6)


def test_cold_segment_holds_only_cold_targets(data):
    cold = set(data.info.cold_items)

    def cold_first(batch):  # ranks cold items above everything else
        scores = np.zeros((len(batch["target"]), data.info.num_items))
        scores[:, sorted(cold)] = 1.0 + np.arange(len(cold))
        return scores

    result = evaluate_ranking(cold_first, data, "test", ks=(20,))
    targets = np.concatenate([b["target"].numpy() for b in data.interactions("test")])
    n_cold = int(np.isin(targets, list(cold)).sum())
    assert result["cold_examples"] == n_cold > 0
    assert result["examples"] == len(targets)
    # 12 cold items in the top 12, so every cold target is a hit; no warm target is.
    assert result["cold"]["recall@20"] == 1.0
    assert result["overall"]["recall@20"] == pytest.approx(n_cold / len(targets))
    # keep_ranks: every example's target rank, the recall's source.
    kept = evaluate_ranking(cold_first, data, "test", ks=(20,), keep_ranks=True)
    assert len(kept["ranks"]) == len(targets) and "ranks" not in result
    assert recall_at_k(kept["ranks"], 20) == result["overall"]["recall@20"]


def test_oracle_beats_popularity_and_chance(data):
    results = {
        "popularity": evaluate_ranking(PopularityBaseline(data), data, "test"),
        "oracle": evaluate_ranking(OracleBaseline(data), data, "test"),
    }
    chance = 20 / data.info.num_items
    assert results["oracle"]["overall"]["recall@20"] > 2 * chance
    assert results["oracle"]["overall"]["recall@20"] > results["popularity"]["overall"]["recall@20"]
    table = ranking_table(results)
    assert table.splitlines()[0].split()[:3] == ["model", "R@10", "R@20"]
    assert "oracle" in table and "with a cold target" in table
    assert "cold R@20" in table.splitlines()[0]  # this split has cold targets


def test_posterior_finds_the_favourites_a_history_shows(data):
    posterior = PosteriorBaseline(data)
    labels = data.catalogue().labels
    # Every item that is red (colour 0) or green (3): a history that only shows those two.
    shown = np.flatnonzero(np.isin(labels["colour"], [0, 3]))[:30]
    history = np.full((2, 50), -1)
    history[0, : len(shown)] = shown
    p = posterior.favourite_probabilities(history)
    colour = p["colour"]
    # Users have exactly two favourite colours: the probabilities sum to 2.
    np.testing.assert_allclose(colour.sum(axis=1), 2.0, rtol=1e-6)
    assert colour[0, 0] > 0.99 and colour[0, 3] > 0.99
    assert colour[0, [1, 2, 4, 5, 6, 7]].max() < 0.01
    # An empty history leaves the prior: every colour possible, none certain.
    assert 0.0 < colour[1].min() and colour[1].max() < 0.9
    # Scores: favourite-coloured items above the others, and the true popularity adds on.
    batch = {"history": history, "target": np.zeros(2, int)}
    scores = posterior(batch)
    red_or_green = np.isin(labels["colour"], [0, 3])
    assert scores[0, red_or_green].mean() > scores[0, ~red_or_green].mean() + 2.0
    with_popularity = PosteriorBaseline(data, popularity="true")(batch)
    info = data.info
    expected = (
        info.affinity["popularity"]
        / info.affinity["temperature"]
        * np.log(data.catalogue().popularity)
    )
    np.testing.assert_allclose(with_popularity - scores, np.tile(expected, (2, 1)), atol=1e-6)
    with pytest.raises(ValueError, match="Expected popularity='none', 'true', 'counts' or an"):
        PosteriorBaseline(data, popularity="estimated")


def test_posterior_with_count_popularity_adds_the_residual_of_the_training_counts(data):
    counts = PopularityBaseline(data).scores
    residual = residual_popularity(data, counts)
    cold = np.asarray(data.info.cold_items)
    np.testing.assert_array_equal(residual[cold], 0.0)  # never counted: the average
    # Within a group of equal preference labels the residual orders items as counts do.
    labels = data.catalogue().labels
    group = np.zeros(data.info.num_items, np.int64)
    for name in data.info.user_preferences:
        group = group * len(data.info.attributes[name]) + labels[name]
    warm = np.ones(data.info.num_items, bool)
    warm[cold] = False
    for g in np.unique(group[warm]):
        members = np.flatnonzero((group == g) & warm)
        np.testing.assert_allclose(residual[members].mean(), 0.0, atol=1e-9)
        shift = residual[members] - np.log(counts[members] + 1)  # one constant per group
        np.testing.assert_allclose(shift, shift[0], atol=1e-9)
    batch = next(iter(data.interactions("test", batch_size=4, shuffle=False)))
    plain = PosteriorBaseline(data)(batch)
    with_counts = PosteriorBaseline(data, popularity="counts")(batch)
    np.testing.assert_allclose(with_counts - plain, np.tile(0.5 * residual, (4, 1)), atol=1e-9)


def test_posterior_with_true_popularity_sits_between_popularity_and_oracle(data):
    recall = {
        name: evaluate_ranking(scorer, data, "test")["overall"]["recall@50"]
        for name, scorer in {
            "popularity": PopularityBaseline(data),
            "posterior": PosteriorBaseline(data, popularity="true"),
            "oracle": OracleBaseline(data),
        }.items()
    }
    assert recall["popularity"] < recall["posterior"] <= recall["oracle"] + 0.05


def test_swapping_the_popularity_half_between_a_model_and_the_posterior(data):
    """The two rows that say where a model loses against posterior+count_pop."""
    from mmrec.evaluation.ranking import ModelScorer
    from mmrec.models.recommender import Recommender

    model = Recommender.from_dataset(data, modalities=(), item_id_embedding=True, embedding_dim=8)
    rng = np.random.default_rng(0)
    model.item_bias.assign(rng.normal(size=data.info.num_items).astype("float32"))
    batch = next(iter(data.interactions("test", batch_size=4, shuffle=False)))
    own = ModelScorer(model)(batch)
    count_pop = PosteriorBaseline(data, popularity="counts").bias
    swapped = ModelScorer(model, item_bias=count_pop)(batch)
    # The towers' part is kept; the learned bias is replaced, item by item.
    expected = own - model.item_bias.numpy()[None, :] + count_pop[None, :]
    np.testing.assert_allclose(swapped, expected, atol=1e-5)
    # The posterior takes any per-item log-popularity, e.g. the model's bias.
    plain = PosteriorBaseline(data)(batch)
    with_bias = PosteriorBaseline(data, popularity=model.item_bias.numpy())(batch)
    np.testing.assert_allclose(with_bias - plain, np.tile(model.item_bias.numpy(), (4, 1)))
    with pytest.raises(ValueError, match=r"Expected item_bias of shape \(120,\)"):
        ModelScorer(model, item_bias=np.zeros(3))
    with pytest.raises(ValueError, match=r"popularity per item, shape \(120,\)"):
        PosteriorBaseline(data, popularity=np.zeros(5))
