"""EASE and item-KNN against their closed forms, the choice on validation, and the protocol's
exclusion of a user's whole history (not only the last `max_history` items)."""

import json
import shutil
import types

import numpy as np
import pytest

from mmrec.data import PAD_ID, ShapesConfig, load, write_shapes
from mmrec.evaluation.baselines import (
    MAX_ITEMS,
    EASEBaseline,
    ItemKNNBaseline,
    ease_weights,
    history_matrix,
    item_cooccurrence,
    item_cosine,
)
from mmrec.evaluation.metrics import (
    exclude,
    ranking_batches,
    recall_at_k,
    seen_items,
    target_ranks,
)
from mmrec.evaluation.ranking import evaluate_ranking, make_baselines, ranking_table

# Five users × four items.
X = np.array(
    [
        [1, 1, 0, 0],
        [1, 0, 1, 0],
        [0, 1, 1, 1],
        [1, 1, 1, 0],
        [0, 0, 1, 1],
    ],
    dtype=np.float64,
)


@pytest.fixture(scope="module")
def tiny(tiny_shapes):
    return load(tiny_shapes)


@pytest.fixture(scope="module")
def short_history(tmp_path_factory):
    """Histories of 3 items (sequences of 10–20), so the records drop a user's older items;
    no cold items, so the cold metrics are undefined."""
    path = str(tmp_path_factory.mktemp("short") / "ds")
    config = ShapesConfig(
        num_items=60, num_users=24, max_history=3, max_sequence=20, cold_fraction=0.0, seed=3
    )
    write_shapes(path, config, progress=False)
    return load(path)


def raw_earlier_items(data, split):
    """{user: every item of the splits before ``split``}, read straight from the records."""
    earlier = {"valid": ["train"], "test": ["train", "valid"]}[split]
    items = {}
    for name in earlier:
        for batch in data.interactions(name, batch_size=64, shuffle=False):
            for user, history, target in zip(
                batch["user_id"].numpy(), batch["history"].numpy(), batch["target"].numpy()
            ):
                items.setdefault(int(user), set()).update(history[history >= 0].tolist())
                items[int(user)].add(int(target))
    return items


def test_cooccurrence_is_x_transpose_x():
    by_user = {u: set(np.flatnonzero(row).tolist()) for u, row in enumerate(X)}
    np.testing.assert_array_equal(item_cooccurrence(by_user, 4, chunk=2), X.T @ X)


def test_ease_equals_the_per_item_ridge_regressions():
    lam = 2.0
    b = ease_weights(X.T @ X, lam)
    np.testing.assert_array_equal(np.diag(b), 0.0)
    # EASE's closed form solves, for each item j, the ridge regression of X[:, j] on
    # the other items' columns (the zero-diagonal constraint).
    for j in range(4):
        others = [i for i in range(4) if i != j]
        xo = X[:, others]
        expected = np.linalg.solve(xo.T @ xo + lam * np.eye(3), xo.T @ X[:, j])
        np.testing.assert_allclose(b[others, j], expected, rtol=1e-5, atol=1e-6)
    # And the formula of the paper, written out.
    p = np.linalg.inv(X.T @ X + lam * np.eye(4))
    paper = np.eye(4) - p @ np.diag(1.0 / np.diag(p))
    np.testing.assert_allclose(b, paper, atol=1e-6)


def test_item_cosine_hand_computed():
    s = item_cosine(X.T @ X)
    # Items 0 and 1: 2 users share them, 3 users each: 2 / √(3·3).
    assert s[0, 1] == pytest.approx(2 / 3)
    assert s[0, 3] == 0.0 and s[2, 3] == pytest.approx(2 / np.sqrt(4 * 2))
    np.testing.assert_array_equal(np.diag(s), 0.0)
    # Scores are cosine sums over the history: history {0, 1} → item 2.
    scores = history_matrix(np.array([[0, 1, PAD_ID]]), 4) @ s
    cos = lambda i, j: X[:, i] @ X[:, j] / np.sqrt(X[:, i].sum() * X[:, j].sum())  # noqa: E731
    assert scores[0, 2] == pytest.approx(cos(0, 2) + cos(1, 2))
    assert scores[0, 3] == pytest.approx(cos(0, 3) + cos(1, 3))
    # k=1: column j keeps only the item most similar to j.
    top1 = item_cosine(X.T @ X, k=1)
    for j in range(4):
        column = s[:, j]
        assert np.count_nonzero(top1[:, j]) == 1
        assert top1[np.argmax(column), j] == pytest.approx(column.max())
    # Shrinkage enlarges the denominator.
    assert item_cosine(X.T @ X, shrinkage=3.0)[0, 1] == pytest.approx(2 / (3 + 3))


def test_the_baselines_score_histories_with_their_weights(tiny):
    ease, knn = EASEBaseline(tiny, lam=10.0), ItemKNNBaseline(tiny, k=None)
    assert ease.lam == 10.0 and str(ease) == "EASEBaseline(lam=10)"
    assert knn.k is None and "k=all" in str(knn)
    # The training matrix: every user's train histories and targets.
    x = np.zeros((tiny.info.num_users, tiny.info.num_items))
    for batch in tiny.interactions("train", batch_size=64, shuffle=False):
        for user, history, target in zip(
            batch["user_id"].numpy(), batch["history"].numpy(), batch["target"].numpy()
        ):
            x[user, history[history >= 0]] = 1.0
            x[user, target] = 1.0
    batch = next(ranking_batches(tiny, "test", batch_size=8))
    rows = history_matrix(batch["history"], tiny.info.num_items)
    np.testing.assert_allclose(ease(batch), rows @ ease_weights(x.T @ x, 10.0), atol=1e-4)
    np.testing.assert_allclose(knn(batch), rows @ item_cosine(x.T @ x), atol=1e-5)
    # After exclusion, the history and every earlier item rank last.
    for scores in (ease(batch), knn(batch)):
        scores = exclude(scores, batch["excluded"])
        for row, excluded in zip(scores, batch["excluded"]):
            excluded = excluded[excluded != PAD_ID]
            assert np.all(row[excluded] == -np.inf)
            assert np.all(np.isfinite(np.delete(row, excluded)))


@pytest.mark.parametrize(
    "make, grid, attribute",
    [
        (lambda data, v: EASEBaseline(data, lam=v), [0.01, 5.0, 200.0], "lam"),
        (lambda data, v: ItemKNNBaseline(data, k=v), [1, 5, None], "k"),
    ],
)
def test_the_hyperparameter_is_chosen_on_the_validation_split(tiny, make, grid, attribute):
    tuned = make(tiny, grid)
    scores = {}
    for value in grid:
        valid = evaluate_ranking(make(tiny, value), tiny, "valid", ks=(20,))["overall"]
        scores[value] = (valid["recall@20"], valid["ndcg@20"])
    assert tuned.validation == {v: s[0] for v, s in scores.items()}
    best = max(grid, key=lambda v: scores[v])  # the first of equals, as the baseline does
    assert getattr(tuned, attribute) == best
    assert tuned.selected == {attribute: best}
    # The chosen model is the one that scores.
    batch = next(ranking_batches(tiny, "test", batch_size=8))
    np.testing.assert_allclose(tuned(batch), make(tiny, best)(batch), atol=1e-5)


def test_a_clearly_better_value_wins_wherever_it_is_in_the_grid(tiny):
    class Rigged(EASEBaseline):
        """λ = 50 ranks every target first, λ = 1 ranks it last."""

        def item_weights(self, gram, lam):
            return lam

        def score(self, lam, batch):
            scores = np.zeros((len(batch["target"]), self.num_items))
            scores[np.arange(len(scores)), batch["target"]] = 1.0 if lam == 50.0 else -1.0
            return scores

    for grid in ([1.0, 50.0], [50.0, 1.0]):
        rigged = Rigged(tiny, lam=grid)
        assert rigged.lam == 50.0
        assert rigged.validation == {50.0: 1.0, 1.0: 0.0}
    assert evaluate_ranking(rigged, tiny, "test")["selected"] == {"lam": 50.0}


def test_invalid_hyperparameters_and_catalogues_too_large(tiny):
    with pytest.raises(ValueError, match="Expected lam to be 'auto', a positive number"):
        EASEBaseline(tiny, lam=0.0)
    with pytest.raises(ValueError, match="Expected k to be 'auto', None, a positive int"):
        ItemKNNBaseline(tiny, k=[10, "all"])
    with pytest.raises(ValueError, match="Expected shrinkage >= 0"):
        ItemKNNBaseline(tiny, shrinkage=-1.0)
    huge = types.SimpleNamespace(info=types.SimpleNamespace(num_items=MAX_ITEMS + 1), path="x")
    with pytest.raises(ValueError, match=f"expected at most {MAX_ITEMS} items"):
        EASEBaseline(huge)


def test_the_users_whole_history_is_excluded(short_history):
    data = short_history
    for split in ("valid", "test"):
        earlier = raw_earlier_items(data, split)
        assert seen_items(data, split) == earlier
        cheater_hits, truncated_hits, examples, truncated = 0, 0, 0, 0
        for batch in ranking_batches(data, split, batch_size=16):
            # Ranks every earlier item of the user first, then the target, then the rest.
            scores = np.zeros((len(batch["target"]), data.info.num_items))
            for row, user, target, history in zip(
                scores, batch["user_id"], batch["target"], batch["history"]
            ):
                row[sorted(earlier[int(user)])] = 2.0
                row[target] = 1.0
                truncated += bool(earlier[int(user)] - set(history.tolist()))
            cheater_hits += (target_ranks(scores, batch["excluded"], batch["target"]) < 1).sum()
            truncated_hits += (target_ranks(scores, batch["history"], batch["target"]) < 1).sum()
            examples += len(batch["target"])
        assert truncated == examples  # every record dropped some of the user's older items
        assert cheater_hits == examples  # every earlier item was excluded
        assert truncated_hits == 0  # the record's history alone would have let them rank


def test_evaluation_ranks_baselines_without_the_earlier_items(short_history):
    data = short_history
    earlier = raw_earlier_items(data, "test")
    ease = EASEBaseline(data, lam=10.0)
    ranks = []
    for batch in data.interactions("test", batch_size=16, shuffle=False):
        batch = {k: v.numpy() for k, v in batch.items()}
        scores = ease(batch).astype(np.float64)
        for row, user, target in zip(scores, batch["user_id"], batch["target"]):
            row[sorted(earlier[int(user)] - {int(target)})] = -np.inf
        rows = np.arange(len(scores))
        target_scores = scores[rows, batch["target"]][:, None]
        ranks.append((scores > target_scores).sum(1) + ((scores == target_scores).sum(1) - 1) / 2)
    ranks = np.concatenate(ranks)
    result = evaluate_ranking(ease, data, "test", ks=(1, 5, 20))
    for k in (1, 5, 20):
        assert result["overall"][f"recall@{k}"] == pytest.approx(recall_at_k(ranks, k))


def test_undefined_metrics_are_null_and_the_table_drops_cold_columns(short_history):
    result = evaluate_ranking(ItemKNNBaseline(short_history, k=5), short_history, "test")
    assert result["cold_examples"] == 0
    assert all(value is None for value in result["cold"].values())
    text = json.dumps(result, allow_nan=False)  # raises on NaN
    assert '"recall@20": null' in text
    table = ranking_table({"itemknn": result})
    assert "cold" not in table.splitlines()[0]
    assert "itemknn: k=5" in table
    # With cold targets elsewhere, an undefined value prints as "-".
    other = {**result, "cold_examples": 3}
    assert ranking_table({"a": other}).splitlines()[1].split()[-1] == "-"


def test_nan_scores_are_never_hits():
    scores = np.array([[np.nan, 1.0, 2.0, 3.0]])
    assert target_ranks(scores, np.full((1, 1), PAD_ID), np.array([0])).tolist() == [3.0]


def test_make_baselines_without_ground_truth(tiny_shapes, tmp_path):
    path = tmp_path / "real"
    shutil.copytree(tiny_shapes, path)
    info = json.loads((path / "dataset.json").read_text())
    info.pop("affinity", None)
    info.pop("user_preferences", None)
    (path / "dataset.json").write_text(json.dumps(info))
    data = load(str(path))
    assert not data.info.affinity
    scorers = make_baselines(data, ["ease", "itemknn", "oracle"])
    assert list(scorers) == ["ease", "itemknn"]  # the oracle needs ground truth
    results = {name: evaluate_ranking(s, data, "test") for name, s in scorers.items()}
    assert results["ease"]["selected"]["lam"] in EASEBaseline.LAMBDAS
    chance = 20 / data.info.num_items
    assert results["itemknn"]["overall"]["recall@20"] > chance
