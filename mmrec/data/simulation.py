"""Simulated users with ground truth, shared by the shapes and Fashion-MNIST benchmarks.

Users have known favourite attribute values; each user's interaction sequence is a
sample of distinct items from softmax(affinity / temperature), where

    affinity(u, i) = Σ_a w_a·[label_a(i) ∈ favourites_a(u)] + w_pop·log popularity_i.

The sequences are split leave-last-out, and `write_benchmark` serialises catalogue,
users and splits through the atomic `DatasetWriter`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from mmrec.data import schema
from mmrec.data.tfrecord import DatasetWriter, interaction_example, user_example
from mmrec.data.vocabulary import learn_wordpiece_vocabulary, save_vocabulary


def skewed_popularity(rng: np.random.Generator, classes: int) -> np.ndarray:
    """A skewed global popularity over classes (Zipf-like, in a random order)."""
    weights = 1.0 / np.arange(1, classes + 1) ** 0.8
    return rng.permutation(weights / weights.sum())


def favourites(rng: np.random.Generator, num_users: int, classes: int, k) -> np.ndarray:
    """Per user, k distinct favourite classes drawn by skewed popularity; [U, max k].

    `k` is an int, or a (low, high) range drawn per user; shorter rows are padded
    with `PAD_ID`.
    """
    p = skewed_popularity(rng, classes)
    low, high = (k, k) if isinstance(k, int) else k
    out = np.full((num_users, high), schema.PAD_ID, dtype=np.int64)
    for u in range(num_users):
        chosen = np.sort(rng.choice(classes, int(rng.integers(low, high + 1)), False, p=p))
        out[u, : len(chosen)] = chosen
    return out


def affinity(
    weights: dict[str, float],
    labels: dict[str, np.ndarray],
    popularity: np.ndarray,
    preferences: dict[str, np.ndarray],
) -> np.ndarray:
    """Ground-truth affinity [U, N]; the oracle ranks by it.

    Preference lists may be padded with `PAD_ID`, which matches nothing.
    """
    score = weights["popularity"] * np.log(popularity)[None, :]
    for attribute, prefs in preferences.items():
        match = (labels[attribute][None, :, None] == prefs[:, None, :]).any(axis=-1)
        score = score + weights[attribute] * match
    return score


def sample_sequences(
    weights: dict[str, float],
    labels: dict[str, np.ndarray],
    popularity: np.ndarray,
    preferences: dict[str, np.ndarray],
    cold: np.ndarray,
    lengths: tuple[int, int],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Per user, distinct items sampled from softmax(affinity / τ) without replacement.

    Gumbel-top-k gives the same distribution as sequential sampling without
    replacement, in order. Cold items are excluded from everything but the last two
    positions (the valid and test targets).
    """
    num_users = len(next(iter(preferences.values())))
    is_cold = np.zeros(len(popularity), dtype=bool)
    is_cold[cold] = True
    sequences = []
    for start in range(0, num_users, 256):
        chunk = {a: p[start : start + 256] for a, p in preferences.items()}
        logits = affinity(weights, labels, popularity, chunk) / weights["temperature"]
        for row in logits:
            length = int(rng.integers(lengths[0], lengths[1] + 1))
            keys = np.where(is_cold, -np.inf, row + rng.gumbel(size=row.shape))
            head = np.argsort(-keys, kind="stable")[: length - 2]
            # Fresh noise for the continuation: reusing the head's keys would favour
            # cold items, whose keys were never in competition.
            keys = row + rng.gumbel(size=row.shape)
            keys[head] = -np.inf
            tail = np.argsort(-keys, kind="stable")[:2]
            sequences.append(np.concatenate([head, tail]))
    return sequences


def leave_last_out(sequences, rng: np.random.Generator, max_history: int) -> dict[str, list]:
    """Train: every next-item step of the prefix; valid: second-to-last; test: last.

    Rows are (user_id, history, history_timestamps, target, target_timestamp).
    """
    splits = {"train": [], "valid": [], "test": []}
    for user, seq in enumerate(sequences):
        start = rng.integers(1_600_000_000, 1_700_000_000)
        ts = start + np.cumsum(rng.exponential(86_400.0, len(seq)).astype(np.int64) + 1)
        n = len(seq)
        steps = [("train", t) for t in range(1, n - 2)] + [("valid", n - 2), ("test", n - 1)]
        for split, t in steps:
            lo = max(0, t - max_history)
            splits[split].append((user, seq[lo:t], ts[lo:t], seq[t], ts[t]))
    return splits


def num_shards(records: int, per_shard: int = 1000) -> int:
    return int(np.clip(np.ceil(records / per_shard), 1, 16))


def write_benchmark(
    out: str,
    info: schema.DatasetInfo,
    item_records: Iterable[tf.train.Example],
    preferences: dict[str, np.ndarray],
    splits: dict[str, list],
    texts: list[str] | None,
    *,
    overwrite: bool,
    progress: bool,
) -> schema.DatasetInfo:
    """Writes items, users, the three interaction splits and vocab.txt, atomically."""
    with DatasetWriter(
        out,
        overwrite=overwrite,
        progress=progress,
        num_items=info.num_items,
        num_users=info.num_users,
    ) as writer:
        writer.write_shards("items", item_records, num_shards(info.num_items), info.num_items)
        users = [
            user_example(u, {a: p[u][p[u] >= 0] for a, p in preferences.items()})
            for u in range(info.num_users)
        ]
        writer.write_shards("users", users, num_shards(info.num_users))
        for split, rows in splits.items():
            records = [interaction_example(*row) for row in rows]
            writer.write_shards(f"interactions-{split}", records, num_shards(len(rows)))
        if texts is not None:
            write_vocabulary(writer.path, texts)
        writer.finish(info)
    return info


def write_vocabulary(folder: str, texts: list[str]) -> None:
    """Learns a WordPiece vocabulary from the item texts and saves it as vocab.txt."""
    save_vocabulary(learn_wordpiece_vocabulary(texts), f"{folder}/{schema.VOCABULARY_FILE}")
