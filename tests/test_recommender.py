"""The two-tower recommender: loss pieces, retrieval, training, serialisation, user encoder."""

import doctest
import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from mmrec.data import ShapesConfig, load, write_shapes
from mmrec.evaluation.ranking import evaluate_ranking
from mmrec.layers.user import ItemEmbeddingTable
from mmrec.models.recommender import (
    Recommender,
    remove_accidental_hits,
    top_k_excluding,
)
from mmrec.testing import run_layer_checks

TINY_ENCODERS = {
    "image": {"filters": [4, 8]},
    "text": {"hidden_dim": 8, "sequence_length": 16},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("rec") / "ds")
    write_shapes(path, ShapesConfig(num_items=80, num_users=60, seed=4), progress=False)
    return load(path)


def _tiny(data, **kwargs):
    kwargs.setdefault("modalities", ("image", "text"))
    kwargs.setdefault("encoder_config", TINY_ENCODERS)
    return Recommender.from_dataset(data, embedding_dim=8, **kwargs)


def test_accidental_hits_are_removed_but_positives_kept():
    logits = np.arange(9, dtype="float32").reshape(3, 3)
    out = np.asarray(remove_accidental_hits(logits, np.array([5, 5, 7])))
    assert out[0, 1] < -1e3 and out[1, 0] < -1e3  # same item as the row's positive
    np.testing.assert_array_equal(np.diag(out), [0, 4, 8])
    assert out[0, 2] == 2 and out[2, 0] == 6


def test_top_k_excluding_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(5, 4)), rng.normal(size=(103, 4))
    exclude = np.array([[0, 1, -1], [5, -1, -1], [-1, -1, -1], [7, 8, 9], [100, 101, 102]])
    ids, scores = top_k_excluding(users, items, exclude, k=7, chunk_size=10)
    full = users @ items.T
    for row in range(5):
        banned = set(exclude[row][exclude[row] >= 0])
        expected = [i for i in np.argsort(-full[row]) if i not in banned][:7]
        np.testing.assert_array_equal(ids[row], expected)
        np.testing.assert_allclose(scores[row], full[row, expected], rtol=1e-5)


def test_top_k_excluding_adds_the_item_bias_in_every_chunk():
    rng = np.random.default_rng(1)
    users, items = rng.normal(size=(4, 3)), rng.normal(size=(57, 3))
    bias = rng.normal(scale=3.0, size=57)  # large enough to reorder the items
    exclude = np.array([[0, -1], [56, 3], [-1, -1], [10, 11]])
    ids, scores = top_k_excluding(users, items, exclude, k=9, chunk_size=8, item_bias=bias)
    full = users @ items.T + bias
    for row in range(4):
        banned = set(exclude[row][exclude[row] >= 0])
        expected = [i for i in np.argsort(-full[row]) if i not in banned][:9]
        np.testing.assert_array_equal(ids[row], expected)
        np.testing.assert_allclose(scores[row], full[row, expected], rtol=1e-5)


def test_top_k_excluding_caps_k_ignores_repeats_and_padding():
    rng = np.random.default_rng(2)
    items = rng.normal(size=(6, 3)).astype("float32")
    # Repeated history ids, any negative id as padding, a history covering most items.
    exclude = np.array([[2, 2, -1, -7], [0, 1, 2, 3], [5, 5, 5, 5]])
    for batch in (3, 2, 1):
        users = rng.normal(size=(batch, 3)).astype("float32")
        ids, scores = top_k_excluding(users, items, exclude[:batch], k=50, chunk_size=4)
        ids, scores = ids.numpy(), scores.numpy()
        assert ids.shape == (batch, 6)  # k capped at the catalogue
        full = users @ items.T
        for row in range(batch):
            banned = set(exclude[row][exclude[row] >= 0])
            kept = [i for i in np.argsort(-full[row], kind="stable") if i not in banned]
            np.testing.assert_array_equal(ids[row, : len(kept)], kept)
            assert np.isneginf(scores[row, len(kept) :]).all()  # excluded items come last
            assert set(ids[row, len(kept) :].tolist()) == banned


def test_item_bias_is_learned_for_seen_items_only_and_part_of_every_score(data):
    keras.utils.set_random_seed(0)
    rec = _tiny(data, temperature=0.5)
    rec.compile(keras.optimizers.Adam(1e-2))
    rec.fit(data.interactions("train", batch_size=64, content=rec.modalities), epochs=1, verbose=0)
    targets = np.concatenate([b["target"].numpy() for b in data.interactions("train")])
    seen = np.zeros(data.info.num_items, bool)
    seen[targets] = True
    bias = rec.item_bias.numpy()
    assert not seen.all(), "the tiny data set should have items that are never a target"
    np.testing.assert_array_equal(np.flatnonzero(~seen), rec.unseen_items)
    assert np.all(bias[seen] != 0.0)
    # Never a target: at the end of fit, the mean bias of its 5 most similar seen items.
    table = np.asarray(rec.item_embeddings())
    for item in np.flatnonzero(~seen):
        similarity = table[seen] @ table[item]
        nearest = np.argsort(-similarity)[:5]
        np.testing.assert_allclose(bias[item], bias[seen][nearest].mean(), rtol=1e-5, atol=1e-7)
    assert np.all(bias[~seen] != 0.0)
    history = [[3, 17, 42], [5]]
    items = rec.item_embeddings()
    users = rec.user_embeddings(np.array([[3, 17, 42] + [-1] * 47, [5] + [-1] * 49]), items)
    expected = np.asarray(users) @ np.asarray(items).T / 0.5 + bias
    np.testing.assert_allclose(rec.score_items(history), expected, rtol=1e-4, atol=1e-4)
    ids, scores = rec.recommend(history, k=5)
    np.testing.assert_allclose(scores, np.take_along_axis(expected, ids, 1), rtol=1e-4, atol=1e-4)


def test_impute_unseen_biases_by_hand():
    from mmrec.models.item_table import impute_unseen_biases

    # Items 0-3 seen with biases 1, 2, 3, 4; items 4 and 5 unseen (bias 0).
    table = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [1, 0.05], [0.05, 1]], "float32")
    bias = np.array([1, 2, 3, 4, 0, 0], "float32")
    out = impute_unseen_biases(bias, table, [4, 5], neighbours=2, chunk=1)  # one row a time
    np.testing.assert_allclose(out, [1, 2, 3, 4, 1.5, 3.5])
    np.testing.assert_array_equal(bias, [1, 2, 3, 4, 0, 0])  # the input is left alone
    # More neighbours than seen items: all of them; 0 neighbours or nothing unseen: as is.
    np.testing.assert_allclose(impute_unseen_biases(bias, table, [4, 5], 10)[4:], 2.5)
    np.testing.assert_array_equal(impute_unseen_biases(bias, table, [4, 5], 0), bias)
    np.testing.assert_array_equal(impute_unseen_biases(bias, table, [], 5), bias)


def test_a_training_step_embeds_only_the_batch_items_and_fit_refreshes_the_table(data):
    keras.utils.set_random_seed(0)
    rec = _tiny(data, item_id_embedding=True)
    rec.compile(keras.optimizers.Adam(1e-2))
    tower_batches = []
    call = rec.item_encoder.call

    def spy(features, training=None, **kwargs):
        if training:
            tower_batches.append(features["image"].shape[0])
        return call(features, training=training, **kwargs)

    rec.item_encoder.call = spy
    before = np.array(rec.item_embeddings())
    batches = data.interactions(
        "train", batch_size=16, content=True, negatives=4, drop_remainder=True
    )
    rec.fit(batches, epochs=1, steps_per_epoch=3, verbose=0)
    rec.item_encoder.call = call
    # Traced once: the item tower saw the 16 targets and the 4 negatives, never 80 items.
    assert sorted(set(tower_batches)) == [4, 16]
    # fit refreshed the table with the trained tower (every item, in batches).
    table = np.array(rec.item_embeddings())
    assert not np.allclose(table, before, atol=1e-3)
    features = data.catalogue().features()
    content = {m: features[m] for m in ("image", "text")}
    ids = np.arange(data.info.num_items)
    np.testing.assert_allclose(table, rec.embed_items(content, ids), rtol=1e-5, atol=1e-5)
    # Streamed from the shards instead of the decoded catalogue: the same table.
    streamed = rec.refresh_item_embeddings(data.items(32))
    np.testing.assert_allclose(streamed, table, rtol=1e-5, atol=1e-5)


def test_validation_reads_a_fresh_table_and_early_stopping_keeps_a_consistent_one(data):
    keras.utils.set_random_seed(0)
    rec = _tiny(data)
    rec.compile(keras.optimizers.Adam(3e-2))
    refreshes = []
    refresh = rec.refresh_item_embeddings
    rec.refresh_item_embeddings = lambda *a, **k: refreshes.append(1) or refresh(*a, **k)
    seen = {}

    class TableAtValidation(keras.callbacks.Callback):
        def on_test_batch_begin(self, batch, logs=None):
            features = data.catalogue().features()
            content = {m: features[m] for m in ("image", "text")}
            current = rec.embed_items(content, np.arange(data.info.num_items))
            seen.setdefault("gap", np.abs(np.array(rec.item_embeddings()) - current).max())

    train = data.interactions("train", batch_size=16, content=True, drop_remainder=True)
    valid = data.interactions("valid", batch_size=16, content=True, drop_remainder=True)
    stop = keras.callbacks.EarlyStopping(patience=1, restore_best_weights=True)
    rec.fit(
        train,
        validation_data=valid,
        epochs=4,
        steps_per_epoch=3,
        callbacks=[TableAtValidation(), stop],
        verbose=0,
    )
    # Validation ranked against the end-of-epoch tower, not the epoch-start table.
    assert seen["gap"] < 1e-5
    # One refresh before each validation stands in for the next epoch's (the weights did
    # not move in between), plus the first epoch's and the end's.
    epochs = len(rec.history.history["loss"])
    assert len(refreshes) == epochs + 2
    # The table is re-embedded after EarlyStopping restored the best weights.
    features = data.catalogue().features()
    content = {m: features[m] for m in ("image", "text")}
    np.testing.assert_allclose(
        rec.item_embeddings(),
        rec.embed_items(content, np.arange(data.info.num_items)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_the_loss_is_the_corrected_softmax_over_targets_and_sampled_negatives(data):
    rec = _tiny(data, item_bias=False, temperature=0.5)
    rec.compile()
    batch = next(iter(data.interactions("valid", batch_size=6, content=True, negatives=3)))
    # One negative is a row's own target: it must not count against that row.
    ids = batch["negatives"]["item_id"].numpy()
    ids[0] = batch["target"].numpy()[2]
    features = data.catalogue().features()
    batch["negatives"] = {
        "item_id": ids,
        **{m: tf.gather(features[m], ids) for m in ("image", "text")},
    }
    loss = rec.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0)

    items = np.asarray(rec.item_embeddings())
    target = batch["target"].numpy()
    users = np.asarray(rec.user_embeddings(batch["history"], items))
    content = {m: batch[m] for m in ("image", "text")}
    positives = np.asarray(rec.embed_items(content, target))
    negatives = np.asarray(rec.embed_items(batch["negatives"], ids))
    q = rec.sampling_probability.numpy()
    logits = users @ positives.T / 0.5 - np.log(q[target])[None, :]
    logits[(target[:, None] == target[None, :]) & ~np.eye(6, dtype=bool)] = -1e4
    sampled = users @ negatives.T / 0.5 - np.log(1.0 / data.info.num_items)
    sampled[target[:, None] == ids[None, :]] = -1e4
    assert sampled[2, 0] == -1e4
    full = np.concatenate([logits, sampled], axis=1)
    shifted = full - full.max(axis=1, keepdims=True)
    expected = np.mean(np.log(np.exp(shifted).sum(axis=1)) - np.diag(shifted[:, :6]))
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_history_items_go_through_the_item_tower_with_gradient(data):
    keras.utils.set_random_seed(0)
    rec = _tiny(data)
    rec.compile()
    with_items = next(
        iter(data.interactions("valid", batch_size=8, content=True, history_content=True))
    )
    without = {k: v for k, v in with_items.items() if not k.startswith("history_")}
    # A fresh table holds what the tower gives: the same users and loss either way.
    np.testing.assert_allclose(
        rec._batch_users(with_items, training=False),
        rec._batch_users(without, training=False),
        rtol=1e-5,
        atol=1e-6,
    )
    weights = rec.item_encoder.trainable_weights
    gradients = {}
    for name, batch in (("items", with_items), ("table", without)):
        with tf.GradientTape() as tape:
            users = rec._batch_users(batch, training=False)
            total = keras.ops.sum(users * users[::-1])
        gradients[name] = tape.gradient(total, weights)
    # Through the history the tower learns only from the items the batch carries.
    assert all(g is None for g in gradients["table"])
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in gradients["items"]) > 0


def test_a_loaded_model_needs_its_catalogue_to_refresh(data, tmp_path):
    rec = _tiny(data)
    path = str(tmp_path / "rec.keras")
    rec.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.item_embeddings(), rec.item_embeddings())
    with pytest.raises(ValueError, match=r"Expected the catalogue to embed: refresh_item_emb"):
        loaded.refresh_item_embeddings()
    loaded.use_catalogue(data)
    np.testing.assert_allclose(
        loaded.refresh_item_embeddings(), rec.item_embeddings(), rtol=1e-5, atol=1e-6
    )
    loaded.compile()
    with pytest.raises(ValueError, match=r"Expected the items' content for the modalities"):
        loaded.fit(data.interactions("train", batch_size=16), steps_per_epoch=1, verbose=0)


def test_models_saved_before_the_item_bias_load_without_one(data):
    config = _tiny(data).get_config()
    assert config["item_bias"] is True
    for key in ("item_bias", "item_bias_l2"):
        del config[key]
    assert Recommender.from_config(config).item_bias is None


def test_recommend_shapes_order_and_history_exclusion(data):
    rec = _tiny(data)
    history = [[3, 17, 42], [5], []]
    ids, scores = rec.recommend(history, k=10)
    assert ids.shape == (3, 10) and scores.shape == (3, 10)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    assert not set(ids[0]) & {3, 17, 42} and 5 not in ids[1]
    assert all(len(set(row)) == 10 for row in ids)
    kept, _ = rec.recommend(history, k=10, exclude_history=False)
    np.testing.assert_array_equal(
        np.sort(rec.score_items(history)[0])[::-1][:10],
        np.sort(rec.score_items(history)[0][kept[0]])[::-1],
    )


@pytest.mark.slow
def test_fit_lowers_the_loss_and_raises_recall(data):
    keras.utils.set_random_seed(0)
    rec = _tiny(data, temperature=0.1)
    rec.compile(keras.optimizers.Adam(1e-2))
    before = evaluate_ranking(rec, data, "train", ks=(20,))["overall"]["recall@20"]
    history = rec.fit(
        data.interactions("train", batch_size=128, cache=True, content=True), epochs=8, verbose=0
    )
    after = evaluate_ranking(rec, data, "train", ks=(20,))["overall"]["recall@20"]
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.15
    assert after > before + 0.1


def test_saved_model_reloads_with_equal_recommendations(data, tmp_path):
    rec = _tiny(data, user_pooling="transformer", item_id_embedding=True)
    rec.compile()
    rec.fit(
        data.interactions("train", batch_size=64, content=rec.modalities),
        epochs=1,
        steps_per_epoch=2,
        verbose=0,
    )
    path = str(tmp_path / "rec.keras")
    rec.save(path)
    loaded = keras.saving.load_model(path)
    history = [[1, 2, 3], [10, 20]]
    ids, scores = rec.recommend(history, k=5)
    loaded_ids, loaded_scores = loaded.recommend(history, k=5)
    np.testing.assert_array_equal(ids, loaded_ids)
    np.testing.assert_allclose(scores, loaded_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded.item_embeddings(), rec.item_embeddings())
    # The optimizer state comes back too, so training resumes where it stopped.
    assert int(loaded.optimizer.iterations) == int(rec.optimizer.iterations) == 2


def test_id_only_baseline_and_user_encoder(data):
    rec = Recommender.from_dataset(data, modalities=(), item_id_embedding=True, embedding_dim=8)
    assert rec.item_encoder is None and rec.modalities == () and rec.content_spec == {}
    history = np.array([[1, 2, -1] + [-1] * 47], "int32")
    users = rec.build_user_encoder()({"history": history})
    assert users.shape == (1, 8)
    np.testing.assert_allclose(np.linalg.norm(users, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        users, rec.user_embeddings(history, rec.item_embeddings()), rtol=1e-5, atol=1e-6
    )


# --- the user encoder ---------------------------------------------------------------------

HISTORIES = np.array([[3, 17, 42, -1, -1], [5, -1, -1, -1, -1], [-1] * 5, [1, 2, 3, 4, 79]])


def test_docstring_examples_run():
    from mmrec.layers import user as user_module  # ItemEmbeddingTable's example

    result = doctest.testmod(user_module, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


def test_item_embedding_table_standard_checks_and_padding(tmp_path):
    table = run_layer_checks(
        ItemEmbeddingTable,
        init_kwargs={"num_items": 6, "embedding_dim": 4},
        input_data=np.array([[0, 5, -1], [-1, -1, -1]], "int32"),
        expected_output_shape=(2, 3, 4),
        run_fit=False,  # nothing to train: the table is fixed
        tmp_path=tmp_path,
    )
    assert table.trainable_weights == [] and table.dtype_policy.name == "float32"
    rows = np.arange(12, dtype="float32").reshape(3, 4) + 1
    table = ItemEmbeddingTable(3, 4)
    table.embeddings.assign(rows)
    out = table(np.array([[2, -1, 0]], "int32")).numpy()
    np.testing.assert_array_equal(out[0], [rows[2], np.zeros(4), rows[0]])
    with pytest.raises(ValueError, match="Expected num_items to be a positive int. Received: num"):
        ItemEmbeddingTable(0, 4)


@pytest.mark.parametrize("pooling", ["mean", "transformer"])
def test_user_encoder_equals_user_embeddings_and_loads_in_safe_mode(data, pooling, tmp_path):
    rec = _tiny(data, user_pooling=pooling, item_id_embedding=True)
    encoder = rec.build_user_encoder()
    expected = rec.user_embeddings(HISTORIES, rec.item_embeddings())
    users = encoder({"history": HISTORIES})
    assert users.dtype == "float32"
    np.testing.assert_allclose(users, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(users[:2], axis=-1), 1.0, rtol=1e-5)
    path = str(tmp_path / "user_encoder.keras")
    encoder.save(path)
    assert "Lambda" not in json.dumps(encoder.get_config())
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded({"history": HISTORIES}), users, rtol=1e-6, atol=1e-7)


def test_user_encoder_looks_items_up_instead_of_embedding_the_catalogue(data, monkeypatch):
    rec = _tiny(data)
    encoder = rec.build_user_encoder()
    expected, items = encoder({"history": HISTORIES}), rec.item_embeddings()

    def fail(*args, **kwargs):
        raise AssertionError("the user encoder re-embedded the catalogue")

    monkeypatch.setattr(rec.item_encoder, "call", fail)
    np.testing.assert_allclose(encoder({"history": HISTORIES}), expected)
    assert not any(layer is rec.item_encoder for layer in encoder.layers)
    table = encoder.get_layer("item_embeddings")
    assert isinstance(table, ItemEmbeddingTable) and not table.trainable_weights
    np.testing.assert_allclose(table.embeddings, items, rtol=1e-6, atol=1e-7)


def test_a_frozen_user_encoder_is_a_snapshot_that_never_freezes_the_recommender(data):
    rec = _tiny(data, user_pooling="transformer")
    trainable = len(rec.trainable_weights)
    frozen = rec.build_user_encoder(frozen=True)
    assert frozen.trainable_weights == [] and len(rec.trainable_weights) == trainable
    assert all(layer.trainable for layer in (rec.user_tower, rec.user_hidden, rec.user_projection))
    before = frozen({"history": HISTORIES}).numpy()
    tower = [w.numpy().copy() for w in rec.user_hidden.weights]
    rec.compile(keras.optimizers.Adam(1e-2))
    rec.fit(
        data.interactions("train", batch_size=32, content=rec.modalities),
        epochs=1,
        steps_per_epoch=2,
        verbose=0,
    )
    assert not np.allclose(rec.user_hidden.weights[0], tower[0])  # the recommender trained
    np.testing.assert_array_equal(frozen({"history": HISTORIES}), before)


def test_an_unfrozen_user_encoder_shares_the_recommenders_user_tower(data):
    rec = _tiny(data)
    shared = rec.build_user_encoder(frozen=False)
    assert shared.get_layer("user_hidden") is rec.user_hidden
    assert shared.get_layer("users") is rec.user_tower
    assert len(shared.trainable_weights) == len(rec.user_hidden.weights) + len(
        rec.user_projection.weights
    )
    items = shared.get_layer("item_embeddings").embeddings.numpy()
    rec.compile(keras.optimizers.Adam(1e-2))
    rec.fit(
        data.interactions("train", batch_size=32, content=rec.modalities),
        epochs=1,
        steps_per_epoch=2,
        verbose=0,
    )
    # It follows the recommender's user tower (over the item embeddings it was built with).
    np.testing.assert_allclose(
        shared({"history": HISTORIES}), rec.user_embeddings(HISTORIES, items), rtol=1e-5, atol=1e-6
    )


def test_saving_the_recommender_builds_no_user_encoder(data, tmp_path, monkeypatch):
    rec = _tiny(data)

    def fail(*args, **kwargs):
        raise AssertionError("saving built a user encoder")

    monkeypatch.setattr(Recommender, "build_user_encoder", fail)
    path = str(tmp_path / "rec.keras")
    rec.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(HISTORIES), rec(HISTORIES), rtol=1e-6, atol=1e-7)


def test_errors_say_what_was_expected(data):
    rec = _tiny(data)
    with pytest.raises(ValueError, match=r"Expected history item ids in \[0, 80\)"):
        rec.recommend([[1, 999]])
    with pytest.raises(ValueError, match="Expected an item_encoder, item_id_embedding=True"):
        Recommender(num_items=10)
    with pytest.raises(ValueError, match="Expected modalities among the dataset's"):
        Recommender.from_dataset(data, modalities=("video",))


def test_from_dataset_warns_once_when_the_text_length_truncates_many_texts(data):
    def build(length):
        encoders = {"text": {"hidden_dim": 8, "sequence_length": length}}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec = _tiny(data, modalities=("text",), encoder_config=encoders)
        return rec, [w for w in caught if "item texts" in str(w.message)]

    # The tiny vocabulary cuts the shapes' texts into 18 to 40 word pieces.
    rec, caught = build(4)
    assert len(caught) == 1 and caught[0].filename == __file__  # points at the caller
    assert str(caught[0].message).startswith(
        "80 of 80 item texts (100%) are longer than the text encoder's sequence_length=4 tokens"
    )
    assert "'sequence_length'" in str(caught[0].message)
    assert rec.tokenizer.sequence_length == 4
    rec, caught = build(64)
    assert caught == [] and rec.tokenizer.sequence_length == 64
