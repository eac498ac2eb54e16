"""The ranking protocol's measures: what a user already saw, the target's rank, Recall, NDCG.

For an example of a split, the items excluded from the ranking are every item
the user interacted with before its target: the example's own history *and*
the user's items of the earlier splits (train for valid; train and valid for
test). The history in an interaction record holds only the last
``max_history`` items, so it alone would let a user's older items be
"recommended" and counted. `evaluate_ranking` (ranking.py) and the baselines
that choose a hyperparameter on the validation split (baselines.py) both read
a split through `ranking_batches`.

An undefined metric (Recall over no examples) is `None`, so JSON writers write
``null`` rather than ``NaN``.
"""

from __future__ import annotations

import weakref

import numpy as np

from mmrec.data import PAD_ID

# The splits whose items come before a split's targets (leave-last-out and time splits
# alike: a user's train interactions precede their valid ones, which precede test).
EARLIER_SPLITS = {"train": (), "valid": ("train",), "test": ("train", "valid")}

# data → {split: {user_id: items}}: reading the train split takes seconds, and every
# baseline and every evaluation of one dataset needs the same sets.
_user_items_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def user_items(data, split: str) -> dict[int, set[int]]:
    """Every item each user interacted with in ``split`` and the splits before it.

    `MultimodalDataset.user_items`, read once per dataset object and split (reading
    the train split takes seconds, and every baseline and evaluation of one
    dataset needs the same sets).
    """
    cached = _user_items_cache.setdefault(data, {})
    if split not in cached:
        cached[split] = data.user_items(split)
    return cached[split]


def seen_items(data, split: str) -> dict[int, set[int]]:
    """The items each user interacted with before ``split``'s targets (the earlier splits)."""
    if split not in EARLIER_SPLITS:
        raise ValueError(f"Expected split to be one of {list(EARLIER_SPLITS)}. Received: {split!r}")
    earlier = EARLIER_SPLITS[split]
    return user_items(data, earlier[-1]) if earlier else {}


def excluded_items(history: np.ndarray, user_ids: np.ndarray, seen: dict) -> np.ndarray:
    """[B, L] ids to leave out of each example's ranking: its history and the user's seen items.

    Padded with `PAD_ID`; an id may appear twice (harmless).
    """
    extra = [np.fromiter(sorted(seen.get(int(u), ())), dtype=history.dtype) for u in user_ids]
    padded = np.full((len(extra), max((len(e) for e in extra), default=0)), PAD_ID, history.dtype)
    for row, items in zip(padded, extra):
        row[: len(items)] = items
    return np.concatenate([history, padded], axis=1)


def ranking_batches(data, split: str, batch_size: int = 512):
    """NumPy batches of ``split``: ``user_id``, ``history``, ``target`` and ``excluded``."""
    seen = seen_items(data, split)
    for batch in data.interactions(split, batch_size=batch_size, shuffle=False):
        batch = {k: v.numpy() for k, v in batch.items()}
        batch["excluded"] = excluded_items(batch["history"], batch["user_id"], seen)
        yield batch


def exclude(scores: np.ndarray, excluded: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """A float64 copy of ``scores`` with the ``excluded`` ids (PAD_ID-padded) at -inf.

    ``keep`` (one id per row, e.g. the target) is never excluded; NaN scores become
    -inf too, so a model that outputs NaN never scores a hit.
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    scores[np.isnan(scores)] = -np.inf
    rows = np.repeat(np.arange(len(scores)), excluded.shape[1])
    ids = excluded.ravel()
    mask = ids != PAD_ID
    if keep is not None:
        mask &= ids != np.repeat(keep, excluded.shape[1])
    scores[rows[mask], ids[mask]] = -np.inf
    return scores


def target_ranks(scores: np.ndarray, excluded: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based rank of each target among the items not excluded (midpoint ties).

    ``excluded`` is [B, L] item ids padded with `PAD_ID` (a history, or
    `ranking_batches`' ``excluded``); the target itself is never excluded.
    """
    scores = exclude(scores, excluded, keep=target)
    rows = np.arange(len(target))
    target_scores = scores[rows, target][:, None]
    higher = (scores > target_scores).sum(axis=1)
    ties = (scores == target_scores).sum(axis=1) - 1  # the target itself is not a tie
    return higher + ties / 2.0


def recall_at_k(ranks: np.ndarray, k: int) -> float | None:
    """The fraction of targets ranked in the top ``k``; `None` without examples."""
    return float(np.mean(ranks < k)) if len(ranks) else None


def paired_recall_difference(ranks_a, ranks_b, k: int) -> tuple[float, float]:
    """Recall@k of model A minus model B on the same examples, and its standard error.

    Paired (per example) rather than from two separate recalls: the two models'
    hits on one user are correlated, which the unpaired error ignores.

    >>> a, b = np.array([0, 3, 60, 1]), np.array([5, 70, 80, 2])
    >>> paired_recall_difference(a, b, 10)
    (0.25, 0.25)
    """
    a, b = np.asarray(ranks_a), np.asarray(ranks_b)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(
            "Expected two rank arrays of the same examples (1-D, at least 2). "
            f"Received: shapes {a.shape} and {b.shape}"
        )
    difference = (a < k).astype("float64") - (b < k).astype("float64")
    return float(difference.mean()), float(difference.std(ddof=1) / np.sqrt(len(difference)))


def ndcg_at_k(ranks: np.ndarray, k: int) -> float | None:
    """Mean 1/log2(rank + 2) of the targets in the top ``k``; `None` without examples."""
    if not len(ranks):
        return None
    return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))
