"""The user tower (mmrec/layers/user.py)."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec.layers.user as user_module
from mmrec.layers import PAD_ID, UserEncoder
from mmrec.testing import run_layer_checks

RNG = np.random.default_rng(0)
HISTORY = RNG.normal(size=(3, 5, 8)).astype("float32")
ITEM_IDS = np.array([[3, 17, 42, PAD_ID, PAD_ID], [7, 1, 2, 3, 4], [PAD_ID] * 5], "int32")


def test_docstring_examples_run():
    result = doctest.testmod(user_module, extraglobs={"np": np, "tf": tf})
    assert result.attempted > 0 and result.failed == 0


def test_pad_id_is_the_data_layer_convention():
    import mmrec.data

    assert PAD_ID == mmrec.data.PAD_ID == -1


@pytest.mark.parametrize("pooling", ["mean", "transformer"])
def test_standard_checks_with_item_ids(pooling, tmp_path):
    run_layer_checks(
        UserEncoder,
        {"pooling": pooling, "max_length": 5},
        HISTORY,
        expected_output_shape=(3, 8),
        call_kwargs={"item_ids": ITEM_IDS},
        tmp_path=tmp_path,
    )


def test_standard_checks_with_mask(tmp_path):
    run_layer_checks(
        UserEncoder,
        {"pooling": "transformer", "max_length": 5},
        HISTORY,
        expected_output_shape=(3, 8),
        call_kwargs={"mask": (ITEM_IDS != PAD_ID).astype("float32")},
        run_mixed_precision=False,  # same computation as with item_ids
        tmp_path=tmp_path,
    )


def test_mean_pooling_is_the_masked_mean():
    out = UserEncoder("mean")(HISTORY, item_ids=ITEM_IDS).numpy()
    np.testing.assert_allclose(out[0], HISTORY[0, :3].mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(out[1], HISTORY[1].mean(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(out[2], 0.0)  # no history → zeros


@pytest.mark.parametrize("pooling", ["mean", "transformer"])
def test_padding_is_never_read(pooling):
    encoder = UserEncoder(pooling, max_length=5)
    clean = encoder(HISTORY, item_ids=ITEM_IDS).numpy()
    poisoned = np.where((ITEM_IDS == PAD_ID)[:, :, None], np.nan, HISTORY).astype("float32")
    out = encoder(poisoned, item_ids=ITEM_IDS).numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, clean, atol=1e-6)
    np.testing.assert_array_equal(out[2], 0.0)  # an all-padding row
    # The mask form agrees with the item-id form.
    mask = ITEM_IDS != PAD_ID
    np.testing.assert_allclose(encoder(poisoned, mask=mask).numpy(), clean, atol=1e-6)


def test_transformer_output_does_not_depend_on_trailing_padding():
    encoder = UserEncoder("transformer", max_length=8)
    short = encoder(HISTORY[:1, :3]).numpy()
    padded = encoder(HISTORY[:1], item_ids=ITEM_IDS[:1]).numpy()
    np.testing.assert_allclose(padded, short, atol=1e-5)
    # ...but it does depend on order (position embeddings), unlike the mean.
    encoder.position_embedding.embeddings.assign(RNG.normal(size=(8, 8)).astype("float32"))
    reversed_history = encoder(HISTORY[:1, 2::-1]).numpy()
    assert not np.allclose(reversed_history, encoder(HISTORY[:1, :3]).numpy(), atol=1e-4)


@pytest.mark.slow
def test_fit_trains_the_transformer_user_tower():
    history = keras.Input(shape=(5, 8), name="history")
    item_ids = keras.Input(shape=(5,), dtype="int32", name="history_ids")
    user = UserEncoder("transformer", max_length=5)(history, item_ids=item_ids)
    model = keras.Model({"history": history, "history_ids": item_ids}, user)
    target = RNG.normal(size=(3, 8)).astype("float32")
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x = {"history": HISTORY, "history_ids": ITEM_IDS}
    losses = model.fit(x, target, epochs=30, verbose=0).history["loss"]
    assert losses[-1] < 0.5 * losses[0]


def test_arguments_are_validated():
    with pytest.raises(
        ValueError, match=r"Expected pooling to be one of \('mean', 'transformer'\)"
    ):
        UserEncoder("max")
    with pytest.raises(ValueError, match="Expected max_length to be a positive int"):
        UserEncoder(max_length=0)
    with pytest.raises(ValueError, match="Expected the item embedding width to be divisible"):
        UserEncoder("transformer", num_heads=3)(HISTORY)
    with pytest.raises(ValueError, match="Expected either mask or item_ids, not both"):
        UserEncoder()(HISTORY, mask=ITEM_IDS != PAD_ID, item_ids=ITEM_IDS)
