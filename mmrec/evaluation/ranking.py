"""Full-catalogue ranking evaluation: Recall@K and NDCG@K, overall and on cold items.

Protocol (DESIGN.md, "Evaluation protocols"): for every example of a
leave-last-out split, score the *whole* catalogue, exclude the items already in
the user's history, and find the rank of the held-out target. With one relevant
item per example, Recall@K is the fraction of targets ranked in the top K and
NDCG@K the mean of 1/log2(rank + 2) over those. Ties are resolved at their
midpoint (the expected rank under random tie-breaking), so a constant scorer gets
the chance result rather than a lucky or unlucky one.

The same code scores trained models and the baselines: popularity, the ID-only
two-tower model (a `Recommender` without content) and, where ground truth exists,
the oracle (the true affinity the interactions were sampled from) and the
posterior reference (what the simulator's own model infers from a history).
"""

from __future__ import annotations

import itertools

import numpy as np

from mmrec.data import PAD_ID
from mmrec.data.simulation import affinity

DEFAULT_KS = (10, 20, 50)


def target_ranks(scores: np.ndarray, history: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of each target among the items not in its history (midpoint ties)."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    rows = np.arange(len(target))
    hist_rows = np.repeat(rows, history.shape[1])
    hist_ids = history.ravel()
    keep = (hist_ids != PAD_ID) & (hist_ids != np.repeat(target, history.shape[1]))
    scores[hist_rows[keep], hist_ids[keep]] = -np.inf
    target_scores = scores[rows, target][:, None]
    higher = (scores > target_scores).sum(axis=1)
    ties = (scores == target_scores).sum(axis=1) - 1  # the target itself is not a tie
    return higher + ties / 2.0


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks < k)) if len(ranks) else float("nan")


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    if not len(ranks):
        return float("nan")
    return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


class PopularityBaseline:
    """Scores items by how often they were a training target (the same for every user)."""

    name = "popularity"

    def __init__(self, data):
        counts = np.zeros(data.info.num_items)
        for batch in data.interactions("train", batch_size=8192, shuffle=False):
            np.add.at(counts, batch["target"].numpy(), 1)
        self.scores = counts

    def __call__(self, batch) -> np.ndarray:
        return np.broadcast_to(self.scores, (len(batch["target"]), len(self.scores)))


class OracleBaseline:
    """Scores items by the ground-truth affinity the interactions were sampled from."""

    name = "oracle"

    def __init__(self, data):
        info = data.info
        if not info.affinity or not info.user_preferences:
            raise ValueError(f"{data.path}: the dataset has no ground truth for an oracle.")
        catalogue, users = data.catalogue(), data.users()
        preferences = {a: users[f"pref_{a}"] for a in info.user_preferences}
        self.scores = affinity(info.affinity, catalogue.labels, catalogue.popularity, preferences)

    def __call__(self, batch) -> np.ndarray:
        return self.scores[np.asarray(batch["user_id"])]


class PosteriorBaseline:
    """The Bayes posterior over each user's favourites, given only their history.

    A reference for how well *any* model can rank from a history. It knows what
    no trained model is told — the simulator's affinity weights, the catalogue's
    true labels and the population's distribution of favourites — but not the
    user's favourites: for each preference attribute it enumerates the possible
    favourite sets F (the sizes the dataset's users have), weighs each by its
    prior and by the likelihood of the history's label counts under
    softmax(affinity / temperature) sampling (favourite labels weighted
    ``exp(w / temperature)``, popularity averaged out), and scores item i by
    ``Σ_a log E[exp(w_a / T · [label_a(i) ∈ F_a]) | history]``, the log of the
    posterior predictive up to a constant.

    With ``popularity="true"`` the item's true ``w_pop / T · log popularity`` is
    added (the oracle's knowledge of popularity, no model has it); with
    ``"none"`` items with equal labels tie, and the protocol ranks ties at their
    midpoint.
    """

    name = "posterior"

    def __init__(self, data, popularity: str = "none"):
        info = data.info
        if not info.affinity or not info.user_preferences:
            raise ValueError(f"{data.path}: the dataset has no ground truth for a posterior.")
        if popularity not in ("none", "true"):
            raise ValueError(
                f"Expected popularity='none' or 'true'. Received: popularity={popularity!r}"
            )
        catalogue, users = data.catalogue(), data.users()
        self.temperature = info.affinity["temperature"]
        self.labels = catalogue.labels
        self.attributes = {}
        for name in info.user_preferences:
            classes = len(info.attributes[name])
            weight = info.affinity[name] / self.temperature
            favourites = users[f"pref_{name}"]
            self.attributes[name] = _favourite_sets(
                favourites, classes, weight, np.bincount(self.labels[name], minlength=classes)
            )
        self.bias = np.zeros(catalogue.num_items)
        if popularity == "true":
            weight = info.affinity["popularity"] / self.temperature
            self.bias = weight * np.log(catalogue.popularity)

    def favourite_probabilities(self, history: np.ndarray) -> dict[str, np.ndarray]:
        """P(label ∈ favourites | history) per attribute: ``{name: [B, classes]}``."""
        history = np.asarray(history)
        valid = history != PAD_ID
        out = {}
        for name, (sets, log_prior, log_z, weight) in self.attributes.items():
            labels = self.labels[name][np.maximum(history, 0)]
            counts = np.stack(
                [((labels == c) & valid).sum(axis=1) for c in range(sets.shape[1])], axis=1
            )
            log_post = weight * counts @ sets.T - valid.sum(1, keepdims=True) * log_z + log_prior
            post = np.exp(log_post - log_post.max(axis=1, keepdims=True))
            out[name] = (post / post.sum(axis=1, keepdims=True)) @ sets
        return out

    def __call__(self, batch) -> np.ndarray:
        scores = np.broadcast_to(self.bias, (len(batch["target"]), len(self.bias))).copy()
        for name, p in self.favourite_probabilities(batch["history"]).items():
            weight = self.attributes[name][3]
            scores += np.log1p(p * np.expm1(weight))[:, self.labels[name]]
        return scores


# name → (factory of data, needs the simulator's ground truth); `mmrec evaluate --baselines`.
BASELINES = {
    "popularity": (PopularityBaseline, False),
    "oracle": (OracleBaseline, True),
    "posterior": (PosteriorBaseline, True),
    "posterior+true_pop": (lambda data: PosteriorBaseline(data, popularity="true"), True),
}


def make_baselines(data, names) -> dict:
    """The baselines called ``names`` for ``data`` (name → scorer), in that order.

    Baselines that need the simulator's ground truth are left out for datasets
    that have none (real catalogues). Raises `ValueError` for an unknown name.
    """
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(f"Expected baselines among {list(BASELINES)}. Received: {unknown}")
    return {
        name: BASELINES[name][0](data)
        for name in names
        if data.info.affinity or not BASELINES[name][1]
    }


def _favourite_sets(favourites, classes, weight, label_counts):
    """Every favourite set the population has a size for: (sets, log prior, log Z, weight).

    The prior of a set is P(size) · Π P(label is a favourite) (the population's
    frequencies, add-one smoothed); Z(F) = Σ_c P(label c in the catalogue) ·
    exp(weight · [c ∈ F]) normalises one sampled item's label likelihood.
    """
    sizes = (favourites != PAD_ID).sum(axis=1)
    size_prior = np.bincount(sizes, minlength=classes + 1) / len(sizes)
    frequency = np.bincount(favourites[favourites != PAD_ID], minlength=classes) + 1.0
    frequency = frequency / frequency.sum()
    sets, log_prior = [], []
    for size in np.flatnonzero(size_prior):
        for chosen in itertools.combinations(range(classes), int(size)):
            row = np.zeros(classes)
            row[list(chosen)] = 1.0
            sets.append(row)
            log_prior.append(np.log(size_prior[size]) + np.log(frequency[list(chosen)]).sum())
    sets = np.array(sets)
    share = label_counts / label_counts.sum()
    log_z = np.log((share[None, :] * np.exp(weight * sets)).sum(axis=1))
    return sets, np.array(log_prior), log_z, weight


class ModelScorer:
    """Adapts a `Recommender` (anything with `score_items(history)`) to the protocol."""

    def __init__(self, model, name: str | None = None):
        self.model = model
        self.name = name or model.name
        # The catalogue is embedded once per evaluation, not once per batch.
        self.items = model.item_embeddings(batch_size=4096)

    def __call__(self, batch) -> np.ndarray:
        return self.model.score_items(np.asarray(batch["history"]), item_embeddings=self.items)


def evaluate_ranking(scorer, data, split: str = "test", ks=DEFAULT_KS, batch_size: int = 512):
    """Recall@K and NDCG@K over the whole catalogue, overall and on cold-item targets.

    Args:
        scorer: a `Recommender`, or a callable batch → scores [B, num_items]
            (the baselines above).
        data: a dataset from `mmrec.data.load`.
    Returns:
        `{"overall": {"recall@10": …, "ndcg@10": …, …}, "cold": {…},
        "examples": n, "cold_examples": m}`; the cold segment holds only the
        examples whose target is a cold item.
    """
    if hasattr(scorer, "score_items"):
        scorer = ModelScorer(scorer)
    ranks, targets = [], []
    for batch in data.interactions(split, batch_size=batch_size, shuffle=False):
        batch = {k: v.numpy() for k, v in batch.items()}
        ranks.append(target_ranks(scorer(batch), batch["history"], batch["target"]))
        targets.append(batch["target"])
    ranks, targets = np.concatenate(ranks), np.concatenate(targets)
    cold = np.isin(targets, np.asarray(data.info.cold_items, dtype=targets.dtype))

    def metrics(r):
        out = {}
        for k in ks:
            out[f"recall@{k}"] = recall_at_k(r, k)
            out[f"ndcg@{k}"] = ndcg_at_k(r, k)
        return out

    return {
        "overall": metrics(ranks),
        "cold": metrics(ranks[cold]),
        "examples": int(len(ranks)),
        "cold_examples": int(cold.sum()),
    }


def ranking_table(results: dict[str, dict], ks=DEFAULT_KS) -> str:
    """Models side by side: Recall@K / NDCG@K overall and Recall@K on cold items."""
    columns = [f"R@{k}" for k in ks] + [f"N@{k}" for k in ks] + [f"cold R@{k}" for k in ks]
    width = max(len(n) for n in results) + 2
    lines = ["model".ljust(width) + "".join(c.rjust(10) for c in columns)]
    for name, r in results.items():
        values = [r["overall"][f"recall@{k}"] for k in ks]
        values += [r["overall"][f"ndcg@{k}"] for k in ks]
        values += [r["cold"][f"recall@{k}"] for k in ks]
        lines.append(name.ljust(width) + "".join(f"{v:10.4f}" for v in values))
    any_result = next(iter(results.values()))
    lines.append(
        f"({any_result['examples']} examples, {any_result['cold_examples']} with a cold target; "
        "full-catalogue ranking, history excluded)"
    )
    return "\n".join(lines)
