"""The recommender's item table: the catalogue's embeddings, refreshed in batches.

Where it sits in the data flow: a `Recommender` keeps the item tower's output for
every catalogue item in a non-trainable ``[N, D]`` weight. Its user tower reads
the history's items from it, and ``recommend``, evaluation and the export rank
it. `embed_catalogue` fills it from batches of items (the dataset's decoded
catalogue via `catalogue_batches`, ``data.items()`` streamed from the shards, or
content generated on the fly) with a progress bar; `RefreshItemEmbeddings`
(added by `Recommender.fit`) does so at every epoch's start and at the end, and
then gives the items training never showed a bias (`impute_unseen_biases`).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops


class RefreshItemEmbeddings(keras.callbacks.Callback):
    """Re-embeds the catalogue into a `Recommender`'s item table at every epoch's start,
    before fit's validation, every ``every`` training steps if given, and at the end of
    training (`Recommender.fit` adds it, last): the user tower reads the history's items
    from the table, and recommend / evaluation / export rank it. A refresh is skipped when
    no training step ran since the last one. At the end, a content model with item biases
    also gets its never-seen items' biases from the final table (`impute_unseen_biases`)."""

    def __init__(self, every=None):
        super().__init__()
        self.every = every
        self.stale = True  # the weights moved since the last refresh

    def refresh(self):
        if self.stale:
            self.model.refresh_item_embeddings()
            self.stale = False

    def on_epoch_begin(self, epoch, logs=None):
        self.refresh()

    def on_test_begin(self, logs=None):
        # fit's validation reads the history's items from the table: refresh it first, so
        # the validation loss (what early stopping watches) is the end-of-epoch model's.
        self.refresh()

    def on_train_batch_end(self, batch, logs=None):
        self.stale = True
        if self.every and (batch + 1) % self.every == 0:
            self.refresh()

    def on_train_end(self, logs=None):
        # Last in fit's callbacks: after EarlyStopping(restore_best_weights=True) restored
        # the weights (and, with them, an older table).
        model = self.model
        model.refresh_item_embeddings()
        if model.item_bias is not None and model.item_encoder is not None:
            bias = impute_unseen_biases(
                model.item_bias.numpy(),
                ops.convert_to_numpy(model.item_table),
                model.unseen_items,
                model.unseen_bias_neighbours,
            )
            model.item_bias.assign(bias)


def impute_unseen_biases(bias, table, unseen, neighbours, chunk=1024):
    """``bias`` [N] with each unseen item's entry replaced by the mean bias of its
    ``neighbours`` most similar seen items (dot product of the rows of ``table``).

    Training never moves the bias of an item that is never a target (a cold item):
    it stays 0, while the seen items of the kinds users like have learned positive
    ones, so a cold item ranks below the warm items it resembles. Its look-alikes'
    biases are the content's best guess of its popularity (docs/recommender.md:
    cold Recall@20 up on four of five shapes models, down on none). ``neighbours=0``
    keeps the 0.
    """
    bias, unseen = np.array(bias, np.float32), np.asarray(unseen, np.int64)
    seen = np.setdiff1d(np.arange(len(bias)), unseen)
    if not neighbours or not len(unseen) or not len(seen):
        return bias
    k = min(int(neighbours), len(seen))
    seen_rows, seen_bias = table[seen].T, bias[seen]
    guesses = []
    for start in range(0, len(unseen), chunk):  # [chunk, seen] at a time, not [unseen, seen]
        similarity = table[unseen[start : start + chunk]] @ seen_rows
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        guesses.append(seen_bias[nearest].mean(axis=1))
    bias[unseen] = np.concatenate(guesses)
    return bias


def catalogue_batches(source, modalities, batch_size):
    """Item batches ``{"item_id": int32 [B], <modality>: [B, ...]}`` covering a catalogue.

    ``source``: a `tf.data.Dataset` of such batches (returned as it is), or a
    dataset from `mmrec.data.load`, whose decoded catalogue (its content cache) is
    batched in id order.
    """
    if source is None:
        raise ValueError(
            "Expected the catalogue to embed: refresh_item_embeddings(data.items(1024)) "
            "or rec.use_catalogue(data) first. Received: items=None on a model "
            "without a catalogue (e.g. one loaded from a file)."
        )
    if isinstance(source, tf.data.Dataset):
        return source
    features = source.catalogue().features()
    content = {m: features[m] for m in modalities}
    ids = tf.range(source.info.num_items, dtype=tf.int32)
    return tf.data.Dataset.from_tensor_slices({"item_id": ids, **content}).batch(batch_size)


def embed_catalogue(embed, items, table, verbose=0) -> None:
    """Replaces, in place, the rows of ``table`` (a float32 [N, D] variable) by ``embed(batch,
    ids)`` for every batch of ``items``; rows of items never seen keep their values.

    Each batch is scattered into the variable as it comes: the refresh holds one batch's
    content and embeddings, never a second [N, D] copy of the table.

    Args:
        embed: batch dict, int32 ids → embeddings [B, D] (the item tower).
        items: batches ``{"item_id": [B], <modality>: [B, ...]}``.
        verbose: 1 for a progress bar.
    """
    rows = int(table.shape[0])
    progress = keras.utils.Progbar(rows, verbose=verbose, unit_name="item")
    seen = 0
    for batch in items:
        ids = ops.convert_to_numpy(batch["item_id"]).astype("int32")
        if ids.size and (ids.min() < 0 or ids.max() >= rows):
            raise ValueError(
                f"Expected item ids in [0, {rows}) in the catalogue's batches. "
                f"Received: {ids[(ids < 0) | (ids >= rows)][:5].tolist()}"
            )
        embeddings = ops.cast(embed(batch, ids), "float32")
        # The backing tf.Variable: Keras variables only assign whole.
        table.value.scatter_update(tf.IndexedSlices(embeddings, ids))
        seen += len(ids)
        progress.update(min(seen, rows))


def blank_items(content_spec, rows):
    """``rows`` blank items (zeros, empty text) in ``content_spec``'s per-item shapes and
    dtypes: ``{modality: [rows, ...]}`` (what builds a model's item tower)."""
    out = {}
    for m, spec in content_spec.items():
        if spec["dtype"] == "string":
            out[m] = tf.fill([rows, *spec["shape"]], "")
        else:
            out[m] = ops.zeros((rows, *spec["shape"]), spec["dtype"])
    return out


def check_content_spec(content_spec, modalities, tokenizer) -> None:
    """Raises `ValueError` unless ``content_spec`` describes every modality of the item
    tower, and a tokenizer is given for raw (``"string"``) text."""
    missing = sorted(set(modalities) - set(content_spec))
    if missing:
        raise ValueError(
            f"Expected content_spec to describe the item encoder's modalities "
            f"{list(modalities)}. Missing: {missing}"
        )
    if content_spec.get("text", {}).get("dtype") == "string" and tokenizer is None:
        raise ValueError(
            "Expected a tokenizer for the items' raw text (content_spec text dtype "
            "'string'). Received: tokenizer=None"
        )
