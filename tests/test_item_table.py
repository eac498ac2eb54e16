"""The item table's refresh: in place, batch by batch, with no [N, D] copy of the table."""

import tracemalloc

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmrec.layers import MultimodalItemEncoder
from mmrec.models.recommender import Recommender

NUM_ITEMS = 40_000
DIM = 16


@pytest.fixture(scope="module")
def rec():
    keras.utils.set_random_seed(0)
    encoder = MultimodalItemEncoder(
        modalities=("image",), embedding_dim=DIM, encoder_config={"image": {"filters": [4]}}
    )
    return Recommender(
        num_items=NUM_ITEMS,
        item_encoder=encoder,
        content_spec={"image": {"shape": [16, 16, 3], "dtype": "uint8"}},
        max_history=4,
        embedding_dim=DIM,
    )


def _items(start, stop, batch=4096):
    """Items ``start .. stop - 1`` in batches, each item's image a function of its id."""

    def content(first):
        ids = tf.range(first, tf.minimum(first + batch, stop))
        pixels = tf.reshape(tf.range(16 * 16 * 3), [1, 16, 16, 3]) + ids[:, None, None, None]
        return {"item_id": ids, "image": tf.cast(pixels % 256, tf.uint8)}

    return tf.data.Dataset.range(start, stop, batch).map(lambda s: content(tf.cast(s, tf.int32)))


def test_a_refresh_writes_the_seen_rows_and_keeps_the_others(rec):
    rec.item_table.assign(np.full((NUM_ITEMS, DIM), 7.0, "float32"))
    table = np.asarray(rec.refresh_item_embeddings(_items(1000, 9000)))
    np.testing.assert_array_equal(table[:1000], 7.0)
    np.testing.assert_array_equal(table[9000:], 7.0)
    ids = np.array([1000, 4095, 4096, 8999])
    batch = next(iter(_items(1000, 9000, batch=8000)))
    expected = rec.embed_items({"image": tf.gather(batch["image"], ids - 1000)}, ids)
    np.testing.assert_allclose(table[ids], expected, rtol=1e-5, atol=1e-6)


def test_a_refresh_makes_no_copy_of_the_table_and_leaves_earlier_reads_alone(rec):
    rec.refresh_item_embeddings(_items(0, 4096))  # traces the tower once
    rec.item_table.assign(np.zeros((NUM_ITEMS, DIM), "float32"))
    before = rec.item_embeddings()  # a snapshot, not the variable
    tracemalloc.start()
    try:
        rec.refresh_item_embeddings(_items(0, NUM_ITEMS))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    table_bytes = NUM_ITEMS * DIM * 4  # 2.4 MiB
    # Host (NumPy / Python) memory of the whole refresh: a few batches' ids and
    # progress, not the former working copy of the table.
    assert peak < table_bytes / 4, (peak, table_bytes)
    # Every row written, unit norm.
    np.testing.assert_allclose(np.linalg.norm(rec.item_embeddings(), axis=1), 1.0, rtol=1e-5)
    # Written in place, yet what item_embeddings() returned before keeps its values.
    np.testing.assert_array_equal(np.asarray(before), 0.0)
