"""Retrieval primitives of the two-tower recommender: in-batch negatives and exact top-k.

`remove_accidental_hits` masks in-batch negatives that are the positive item
itself; `top_k_excluding` ranks a catalogue for a batch of users in one compiled
graph (bounded memory) and never returns an item of the user's history.
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


def top_k_excluding(
    user_embeddings, item_embeddings, exclude, k, chunk_size=262144, item_bias=None
):
    """Top-k items by dot product (plus `item_bias`), never returning an id in `exclude`.

    `exclude` is int [B, L], padded with -1 (any negative id is padding). The
    catalogue is scored `chunk_size` items at a time inside one compiled graph
    (a `tf.function` with a fixed signature: traced once): a matmul, the history's items set to
    -inf by a scatter (cost O(B × L), not O(B × L × chunk)), a top-k, and a merge
    with the best so far. Memory is O(B × chunk_size) whatever the catalogue size.
    Ties keep the lower item id first, as `tf.math.top_k` does.

    Returns:
        ``(ids int32 [B, k], scores float32 [B, k])``, best first; ``k`` is
        capped at the catalogue size. A user whose history covers nearly the
        whole catalogue gets excluded items last, with score -inf.
    """
    users = tf.convert_to_tensor(user_embeddings, tf.float32)
    items = tf.convert_to_tensor(item_embeddings, tf.float32)
    num_items = items.shape[0]
    if num_items is None:  # symbolic (e.g. inside an export trace): ask the graph
        num_items = tf.shape(items)[0]
        k = tf.minimum(k, num_items)
    else:
        k = min(int(k), int(num_items))
    if item_bias is None:
        bias = tf.zeros(tf.shape(items)[:1])
    else:
        bias = tf.convert_to_tensor(item_bias, tf.float32)
    exclude = tf.convert_to_tensor(exclude, tf.int32)
    chunk_size = max(int(chunk_size), 1)
    return _top_k_excluding(users, items, exclude, bias, tf.cast(k, tf.int32), chunk_size)


def _chunk_top_k(users, items, exclude, bias, start, size, k):
    """The top-k of items [start, start + size) for every user, the history masked."""
    block = items[start : start + size]
    width = tf.shape(block)[0]
    scores = tf.matmul(users, block, transpose_b=True)
    scores += bias[None, start : start + size]
    local = exclude - start
    inside = (exclude >= 0) & (local >= 0) & (local < width)
    rows = tf.broadcast_to(tf.range(tf.shape(exclude)[0])[:, None], tf.shape(exclude))
    where = tf.stack([tf.boolean_mask(rows, inside), tf.boolean_mask(local, inside)], axis=1)
    scores = tf.tensor_scatter_nd_update(
        scores, where, tf.fill(tf.shape(where)[:1], tf.constant(-np.inf, tf.float32))
    )
    top = tf.math.top_k(scores, k=tf.minimum(k, width))
    return top.values, top.indices + start


@tf.function(
    input_signature=[
        tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec([None, None], tf.float32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None], tf.float32),
        tf.TensorSpec([], tf.int32),
        tf.TensorSpec([], tf.int32),
    ]
)
def _top_k_excluding(users, items, exclude, bias, k, chunk_size):
    # The first chunk holds at least k items (k <= catalogue size, chunk_size >= k),
    # so the running best is [B, k] from the start and the loop keeps its shape.
    size = tf.maximum(chunk_size, k)
    scores, ids = _chunk_top_k(users, items, exclude, bias, 0, size, k)
    num_items = tf.shape(items)[0]
    for start in tf.range(tf.minimum(size, num_items), num_items, size):
        tf.autograph.experimental.set_loop_options(
            shape_invariants=[
                (scores, tf.TensorShape([None, None])),
                (ids, tf.TensorShape([None, None])),
            ]
        )
        chunk_scores, chunk_ids = _chunk_top_k(users, items, exclude, bias, start, size, k)
        # Earlier chunks first: on ties the lower item id wins, as in one top_k.
        merged = tf.math.top_k(tf.concat([scores, chunk_scores], 1), k=k)
        scores = merged.values
        ids = tf.gather(tf.concat([ids, chunk_ids], 1), merged.indices, batch_dims=1)
    return ids, scores


def check_history_ids(history: np.ndarray, num_items: int) -> None:
    """Raises `ValueError` for history ids outside ``[0, num_items)`` other than `PAD_ID`."""
    bad = history[(history != PAD_ID) & ((history < 0) | (history >= num_items))]
    if bad.size:
        raise ValueError(
            f"Expected history item ids in [0, {num_items}) or {PAD_ID} for padding. "
            f"Received: {bad[:5].tolist()}"
        )
