"""Reference scorers for the ranking protocol: what a trained recommender has to beat.

Every baseline is built from a dataset (``Baseline(data)``) and called like a
model on a batch of interactions: ``scores = baseline(batch)``, float
``[B, num_items]`` (higher is better; `evaluate_ranking` excludes the user's
earlier items).

* `PopularityBaseline`: how often each item was a training target.
* `EASEBaseline` (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse
  Data"): the item × item ridge regression with a zero diagonal, in closed form
  ``B = I − P·diagMat(1/diag(P))``, ``P = (XᵀX + λI)⁻¹``, X the binary user × item
  matrix of the training split; λ chosen on the validation split.
* `ItemKNNBaseline`: cosine item-item similarity on the same X, each candidate
  item keeping its k most similar items; k chosen on the validation split.
* `OracleBaseline` and `PosteriorBaseline`: references from the simulator's
  ground truth (synthetic datasets only).

EASE and item-KNN score a user from the history they are given (the same input
a trained model gets): ``x @ W``, x the history's binary row. Both hold dense
``num_items × num_items`` matrices (float64 while fitting, several at once:
3.2 GB each at the `MAX_ITEMS` limit of 20,000 items; a few thousand items fit
in seconds on a CPU).
"""

from __future__ import annotations

import itertools

import numpy as np

from mmrec.data import PAD_ID
from mmrec.data.simulation import affinity
from mmrec.evaluation.metrics import (
    ndcg_at_k,
    ranking_batches,
    recall_at_k,
    target_ranks,
    user_items,
)

# Dense item × item matrices above this size would exhaust a workstation's memory.
MAX_ITEMS = 20_000
# The validation measure that picks a hyperparameter (NDCG@K breaks ties).
SELECTION_K = 20


class PopularityBaseline:
    """Scores items by how often they were a training target (the same for every user).

    Example:

    ```python
    data = mmrec.data.load("tf_records/shapes")
    popularity = mmrec.evaluation.PopularityBaseline(data)
    mmrec.evaluation.evaluate_ranking(popularity, data, "test")["overall"]["recall@20"]
    ```
    """

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


# The weight of the count-estimated popularity (benchmarks/recommender_references.py
# --weight; 0.5 is the best of the weights it was run with on shapes).
COUNT_WEIGHT = 0.5


def residual_popularity(data, counts) -> np.ndarray:
    """log(count + 1) minus its mean over the warm items with the same preference labels
    (0 for cold items): the popularity that the labels do not explain, from counts."""
    catalogue, info = data.catalogue(), data.info
    cold = np.zeros(info.num_items, bool)
    cold[info.cold_items] = True
    group = np.zeros(info.num_items, np.int64)
    for name in info.user_preferences:
        group = group * len(info.attributes[name]) + catalogue.labels[name]
    log_counts = np.log(counts + 1.0)
    residual = np.zeros(info.num_items)
    for g in np.unique(group):
        members = (group == g) & ~cold
        if members.any():
            residual[members] = log_counts[members] - log_counts[members].mean()
    return residual


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
    ``"counts"`` popularity *estimated from training counts*, what a trained model
    can learn too: ``COUNT_WEIGHT`` × the residual of log(count + 1) after the mean
    of the warm items with the same preference labels (0 for cold items); with
    ``"none"`` items with equal labels tie, and the protocol ranks ties at their
    midpoint. An array of per-item log-popularities (e.g. a trained model's item
    bias) is added as it is: the posterior's reading of the history with that
    popularity estimate.
    """

    name = "posterior"

    def __init__(self, data, popularity="none"):
        info = data.info
        if not info.affinity or not info.user_preferences:
            raise ValueError(f"{data.path}: the dataset has no ground truth for a posterior.")
        given = not isinstance(popularity, str)
        if given:
            popularity = np.asarray(popularity, np.float64)
            if popularity.shape != (info.num_items,):
                raise ValueError(
                    f"Expected a popularity per item, shape ({info.num_items},). "
                    f"Received: shape={popularity.shape}"
                )
        elif popularity not in ("none", "true", "counts"):
            raise ValueError(
                "Expected popularity='none', 'true', 'counts' or an array of per-item "
                f"log-popularities. Received: popularity={popularity!r}"
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
        if given:
            self.bias = popularity
        elif popularity == "true":
            weight = info.affinity["popularity"] / self.temperature
            self.bias = weight * np.log(catalogue.popularity)
        elif popularity == "counts":
            self.bias = COUNT_WEIGHT * residual_popularity(data, PopularityBaseline(data).scores)
        else:
            self.bias = np.zeros(catalogue.num_items)

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


def item_cooccurrence(items_by_user: dict, num_items: int, chunk: int = 1024) -> np.ndarray:
    """XᵀX (float64 ``[num_items, num_items]``) of the binary user × item matrix X.

    ``items_by_user`` maps a user to the items they interacted with (the rows of
    X); X is built a chunk of users at a time, so only XᵀX is ever held whole.
    """
    gram = np.zeros((num_items, num_items))
    rows = list(items_by_user.values())
    for start in range(0, len(rows), chunk):
        x = np.zeros((len(rows[start : start + chunk]), num_items), np.float32)
        for row, items in zip(x, rows[start : start + chunk]):
            row[list(items)] = 1.0
        gram += x.T @ x  # float32 counts are exact below 2**24
    return gram


def ease_weights(gram: np.ndarray, lam: float) -> np.ndarray:
    """EASE's item × item weights from XᵀX: ``B = I − P·diagMat(1/diag(P))``, zero diagonal.

    ``P = (XᵀX + λI)⁻¹``; ``B[i, j]`` is how much item i in a history adds to
    item j's score. Returns float32.
    """
    regularised = np.array(gram, dtype=np.float64, copy=True)
    regularised[np.diag_indices_from(regularised)] += lam
    p = np.linalg.inv(regularised)
    del regularised
    b = p / -np.diag(p)  # column j divided by -P[j, j]; the identity cancels the diagonal
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def item_cosine(gram: np.ndarray, k: int | None = None, shrinkage: float = 0.0) -> np.ndarray:
    """Cosine item-item similarities from XᵀX, each column keeping its ``k`` largest.

    ``S[i, j] = (XᵀX)[i, j] / (√count_i · √count_j + shrinkage)`` with a zero
    diagonal (and zero for items without interactions); column j then keeps
    only the ``k`` items most similar to j (``k=None``: all). Returns float32.
    """
    norms = np.sqrt(np.diag(gram))
    denominator = np.outer(norms, norms) + shrinkage
    similarity = np.divide(gram, denominator, out=np.zeros(gram.shape), where=denominator > 0)
    np.fill_diagonal(similarity, 0.0)
    if k is not None and k < len(similarity) - 1:
        dropped = np.argpartition(-similarity, k, axis=0)[k:]
        np.put_along_axis(similarity, dropped, 0.0, axis=0)
    return similarity.astype(np.float32)


def history_matrix(history: np.ndarray, num_items: int) -> np.ndarray:
    """The binary rows ``[B, num_items]`` (float32) of a PAD_ID-padded history batch."""
    history = np.asarray(history)
    x = np.zeros((len(history), num_items), np.float32)
    rows, positions = np.nonzero(history != PAD_ID)
    x[rows, history[rows, positions]] = 1.0
    return x


class ItemItemBaseline:
    """Scores items by ``x @ W``: a history's binary row times item × item weights W.

    Subclasses say how W follows from the training split's XᵀX and one
    hyperparameter (`item_weights`); `fit` computes W for each candidate value
    and keeps the one with the best Recall@20 (then NDCG@20) on the validation
    split, recording every candidate's validation Recall@20 in `validation`.
    """

    name = "item_item"

    def item_weights(self, gram: np.ndarray, value) -> np.ndarray:
        raise NotImplementedError

    def fit(self, data, candidates: list):
        """Sets `weights` (and `validation`) and returns the chosen candidate."""
        self.num_items = data.info.num_items
        if self.num_items > MAX_ITEMS:
            raise ValueError(
                f"{type(self).__name__} holds dense item × item matrices; expected at most "
                f"{MAX_ITEMS} items. Received: num_items={self.num_items} (filter rare items "
                "at import, e.g. `mmrec data import --min-item-interactions 5`)"
            )
        gram = item_cooccurrence(user_items(data, "train"), self.num_items)
        self.validation = {}
        if len(candidates) == 1:
            self.weights = self.item_weights(gram, candidates[0])
            return candidates[0]
        batches = list(ranking_batches(data, "valid"))
        if not batches:
            raise ValueError(
                f"{data.path}: {type(self).__name__} chooses among {candidates} on the "
                "validation split, which is empty; pass a single value."
            )
        best, best_score = None, None
        for value in candidates:
            weights = self.item_weights(gram, value)
            ranks = np.concatenate(
                [target_ranks(self.score(weights, b), b["excluded"], b["target"]) for b in batches]
            )
            score = (recall_at_k(ranks, SELECTION_K), ndcg_at_k(ranks, SELECTION_K))
            self.validation[value] = score[0]
            if best_score is None or score > best_score:
                best, best_score, self.weights = value, score, weights
        return best

    def score(self, weights: np.ndarray, batch) -> np.ndarray:
        return history_matrix(batch["history"], self.num_items) @ weights

    def __call__(self, batch) -> np.ndarray:
        return self.score(self.weights, batch)


class EASEBaseline(ItemItemBaseline):
    """EASE (Steck 2019): the closed-form item × item ridge regression with a zero diagonal.

    ``B = I − P·diagMat(1/diag(P))`` with ``P = (XᵀX + λI)⁻¹``, X the binary user
    × item matrix of the training split (each user's history and targets); an
    item's score is the sum of B's rows over the history.

    Args:
        data: a dataset from `mmrec.data.load`, at most `MAX_ITEMS` items.
        lam: the L2 weight λ: a positive number, a list to choose from on the
            validation split (by Recall@20), or ``"auto"`` for `LAMBDAS`.

    Example:

    ```python
    data = mmrec.data.load("tf_records/shapes")
    ease = mmrec.evaluation.EASEBaseline(data)  # λ chosen on the validation split
    ease.lam, ease.validation  # the λ in use; validation Recall@20 of each candidate
    mmrec.evaluation.evaluate_ranking(ease, data, "test")["overall"]["recall@20"]
    ```
    """

    name = "ease"
    LAMBDAS = (1.0, 10.0, 100.0, 500.0, 1000.0, 3000.0)

    def __init__(self, data, lam: float | list[float] | str = "auto"):
        candidates = list(self.LAMBDAS) if _is_auto(lam) else _as_list(lam)
        if not candidates or not all(
            isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and v > 0
            for v in candidates
        ):
            raise ValueError(
                "Expected lam to be 'auto', a positive number or a list of them. "
                f"Received: lam={lam!r}"
            )
        self.lam = float(self.fit(data, [float(v) for v in candidates]))

    def item_weights(self, gram, lam):
        return ease_weights(gram, lam)

    @property
    def selected(self) -> dict:
        """The hyperparameter in use (chosen on the validation split when given a choice)."""
        return {"lam": self.lam}

    def __repr__(self) -> str:
        return f"EASEBaseline(lam={self.lam:g})"


class ItemKNNBaseline(ItemItemBaseline):
    """Item-KNN: an item's score is the sum of its cosine similarities to the history's items.

    Cosine on the columns of the training split's binary user × item matrix,
    ``XᵀX[i, j] / (√count_i · √count_j + shrinkage)``; each candidate item keeps
    only its ``k`` most similar items.

    Args:
        data: a dataset from `mmrec.data.load`, at most `MAX_ITEMS` items.
        k: neighbours kept per item: a positive int, ``None`` for all, a list to
            choose from on the validation split (by Recall@20), or ``"auto"``
            for `NEIGHBOURS`.
        shrinkage: added to the cosine's denominator; damps similarities
            between rarely seen items.

    Example:

    ```python
    data = mmrec.data.load("tf_records/shapes")
    knn = mmrec.evaluation.ItemKNNBaseline(data)  # k chosen on the validation split
    knn.k  # None: every item
    mmrec.evaluation.evaluate_ranking(knn, data, "test")["overall"]["recall@20"]
    ```
    """

    name = "itemknn"
    NEIGHBOURS = (20, 50, 100, None)

    def __init__(self, data, k: int | None | list | str = "auto", shrinkage: float = 0.0):
        candidates = list(self.NEIGHBOURS) if _is_auto(k) else _as_list(k)
        if not candidates or not all(
            v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0)
            for v in candidates
        ):
            raise ValueError(
                "Expected k to be 'auto', None, a positive int or a list of them. "
                f"Received: k={k!r}"
            )
        if not shrinkage >= 0:
            raise ValueError(f"Expected shrinkage >= 0. Received: shrinkage={shrinkage!r}")
        self.shrinkage = float(shrinkage)
        self.k = self.fit(data, [None if v is None else int(v) for v in candidates])

    def item_weights(self, gram, k):
        return item_cosine(gram, k, self.shrinkage)

    @property
    def selected(self) -> dict:
        """The hyperparameter in use (chosen on the validation split when given a choice)."""
        return {"k": self.k}

    def __repr__(self) -> str:
        k = "all" if self.k is None else self.k
        return f"ItemKNNBaseline(k={k}, shrinkage={self.shrinkage:g})"


def _is_auto(value) -> bool:
    return isinstance(value, str) and value == "auto"


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
