"""Retrieval primitives of the two-tower recommender: in-batch negatives and exact top-k.

`remove_accidental_hits` masks in-batch negatives that are the positive item
itself; `top_k_excluding` ranks a catalogue for a batch of users in chunks
(bounded memory) and never returns an item of the user's history.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from mmrec.formats import PAD_ID

# A logit low enough to remove a candidate from a softmax, yet finite under float16.
_REMOVED = -1e4


def remove_accidental_hits(logits, candidate_ids):
    """Masks in-batch negatives that are the same item as the row's positive.

    Row i's positive is column i (in-batch softmax). keras-rs 0.4.0's
    `RemoveAccidentalHits` adds `smallest_normal / 100` (≈1e-40) to such logits,
    which leaves them unchanged, so the masking is done here.
    """
    same = ops.equal(candidate_ids[:, None], candidate_ids[None, :])
    accidental = ops.logical_and(same, ops.logical_not(ops.eye(ops.shape(logits)[0]) > 0))
    return ops.where(accidental, ops.cast(_REMOVED, logits.dtype), logits)


def top_k_excluding(user_embeddings, item_embeddings, exclude, k, chunk_size=65536, item_bias=None):
    """Top-k items by dot product (plus `item_bias`), never returning an id in `exclude`.

    `exclude` is int [B, L], padded with -1. Scores are computed for `chunk_size`
    items at a time and merged, so memory is O(batch × chunk_size) whatever the
    catalogue size.
    """
    users = tf.convert_to_tensor(user_embeddings, tf.float32)
    items = tf.convert_to_tensor(item_embeddings, tf.float32)
    bias = None if item_bias is None else tf.convert_to_tensor(item_bias, tf.float32)
    exclude = tf.convert_to_tensor(exclude, tf.int32)
    num_items = int(items.shape[0])
    k = min(k, num_items)
    best_scores, best_ids = [], []
    for start in range(0, num_items, chunk_size):
        block = items[start : start + chunk_size]
        scores = tf.matmul(users, block, transpose_b=True)
        if bias is not None:
            scores += bias[None, start : start + chunk_size]
        ids = tf.range(start, start + tf.shape(block)[0], dtype=tf.int32)
        excluded = tf.reduce_any(exclude[:, :, None] == ids[None, None, :], axis=1)
        scores = tf.where(excluded, -np.inf, scores)
        top = tf.math.top_k(scores, k=min(k, int(block.shape[0])))
        best_scores.append(top.values)
        best_ids.append(top.indices + start)
    scores, ids = tf.concat(best_scores, 1), tf.concat(best_ids, 1)
    top = tf.math.top_k(scores, k=k)
    return tf.gather(ids, top.indices, batch_dims=1), top.values


def check_history_ids(history: np.ndarray, num_items: int) -> None:
    """Raises `ValueError` for history ids outside ``[0, num_items)`` other than `PAD_ID`."""
    bad = history[(history != PAD_ID) & ((history < 0) | (history >= num_items))]
    if bad.size:
        raise ValueError(
            f"Expected history item ids in [0, {num_items}) or {PAD_ID} for padding. "
            f"Received: {bad[:5].tolist()}"
        )
