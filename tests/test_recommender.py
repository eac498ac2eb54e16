"""The two-tower recommender: loss pieces, retrieval, training, serialisation, user encoder."""

import doctest
import json
import warnings

import keras
import numpy as np
import pytest

from mmrec.data import ShapesConfig, load, write_shapes
from mmrec.evaluation.ranking import evaluate_ranking
from mmrec.models.recommender import (
    ItemEmbeddingTable,
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
    rec.fit(data.interactions("train", batch_size=64), epochs=1, verbose=0)
    targets = np.concatenate([b["target"].numpy() for b in data.interactions("train")])
    seen = np.zeros(data.info.num_items, bool)
    seen[targets] = True
    bias = rec.item_bias.numpy()
    assert not seen.all(), "the tiny data set should have items that are never a target"
    np.testing.assert_array_equal(bias[~seen], 0.0)  # cold and unchosen items: the average
    assert np.all(bias[seen] != 0.0)
    history = [[3, 17, 42], [5]]
    items = rec.item_embeddings()
    users = rec.user_embeddings(np.array([[3, 17, 42] + [-1] * 47, [5] + [-1] * 49]), items)
    expected = np.asarray(users) @ np.asarray(items).T / 0.5 + bias
    np.testing.assert_allclose(rec.score_items(history), expected, rtol=1e-4, atol=1e-4)
    ids, scores = rec.recommend(history, k=5)
    np.testing.assert_allclose(scores, np.take_along_axis(expected, ids, 1), rtol=1e-4, atol=1e-4)


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
    history = rec.fit(data.interactions("train", batch_size=128, cache=True), epochs=8, verbose=0)
    after = evaluate_ranking(rec, data, "train", ks=(20,))["overall"]["recall@20"]
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.15
    assert after > before + 0.1


def test_saved_model_reloads_with_equal_recommendations(data, tmp_path):
    rec = _tiny(data, user_pooling="transformer", item_id_embedding=True)
    rec.compile()
    rec.fit(data.interactions("train", batch_size=64), epochs=1, steps_per_epoch=2, verbose=0)
    path = str(tmp_path / "rec.keras")
    rec.save(path)
    loaded = keras.saving.load_model(path)
    history = [[1, 2, 3], [10, 20]]
    ids, scores = rec.recommend(history, k=5)
    loaded_ids, loaded_scores = loaded.recommend(history, k=5)
    np.testing.assert_array_equal(ids, loaded_ids)
    np.testing.assert_allclose(scores, loaded_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        loaded.catalogue["image"].numpy(), data.catalogue().images.numpy()
    )
    # The optimizer state comes back too, so training resumes where it stopped.
    assert int(loaded.optimizer.iterations) == int(rec.optimizer.iterations) == 2


def test_id_only_baseline_and_user_encoder(data):
    rec = Recommender.from_dataset(data, modalities=(), item_id_embedding=True, embedding_dim=8)
    assert rec.item_encoder is None and rec.catalogue == {}
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
    rec.fit(data.interactions("train", batch_size=32), epochs=1, steps_per_epoch=2, verbose=0)
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
    rec.fit(data.interactions("train", batch_size=32), epochs=1, steps_per_epoch=2, verbose=0)
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
    assert rec.catalogue["text"].shape == (80, 4)
    rec, caught = build(64)
    assert caught == [] and rec.catalogue["text"].shape == (80, 64)
