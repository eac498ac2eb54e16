"""Fusion layers and their missing-modality contracts (mmrec/layers/fusion.py)."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec.layers.fusion as fusion_module
from mmrec.layers import AttentionFusion, ConcatFusion, GatedFusion, WeightedFusion
from mmrec.testing import run_layer_checks

FUSIONS = [ConcatFusion, WeightedFusion, GatedFusion, AttentionFusion]
MODALITIES = ["image", "text", "audio"]
DIMS = {"image": 6, "text": 5, "audio": 3}
BATCH = 4


def _embeddings(seed=0):
    rng = np.random.default_rng(seed)
    return {m: rng.normal(size=(BATCH, d)).astype("float32") for m, d in DIMS.items()}


def _mask(**masks):
    """Presence masks, every modality present unless given."""
    return {m: np.asarray(masks.get(m, [1.0] * BATCH), "float32") for m in MODALITIES}


def test_docstring_examples_run():
    result = doctest.testmod(fusion_module, extraglobs={"np": np, "tf": tf})
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("cls", FUSIONS, ids=lambda c: c.__name__)
def test_standard_checks(cls, tmp_path):
    run_layer_checks(
        cls,
        {"modalities": MODALITIES, "output_dim": 4},
        _embeddings(),
        expected_output_shape=(BATCH, 4),
        call_kwargs={"mask": _mask(audio=[1, 0, 1, 0], text=[1, 1, 0, 0])},
        tmp_path=tmp_path,
    )


# --- the contracts --------------------------------------------------------------------


@pytest.mark.parametrize("cls", FUSIONS, ids=lambda c: c.__name__)
def test_missing_modality_never_changes_shape_nor_gives_nan(cls):
    layer = cls(MODALITIES, output_dim=4)
    embeddings = _embeddings()
    full = layer(embeddings).numpy()
    # Missing rows hold NaN: they must never be read.
    poisoned = dict(embeddings, audio=np.where([[0], [1], [0], [1]], np.nan, embeddings["audio"]))
    masked = layer(poisoned, mask=_mask(audio=[1, 0, 1, 0])).numpy()
    assert masked.shape == full.shape and np.isfinite(masked).all()
    np.testing.assert_allclose(masked[[0, 2]], full[[0, 2]], atol=1e-6)  # present rows as before
    assert not np.allclose(masked[[1, 3]], full[[1, 3]])
    # A key absent from the dict is the same as that modality masked for every row.
    absent = layer({m: embeddings[m] for m in ["image", "text"]}).numpy()
    np.testing.assert_allclose(
        absent, layer(embeddings, mask=_mask(audio=[0] * BATCH)).numpy(), atol=1e-6
    )
    # Every modality missing: finite, and the same for every row.
    nothing = layer(embeddings, mask={m: np.zeros(BATCH, "float32") for m in MODALITIES})
    assert np.isfinite(nothing.numpy()).all()
    np.testing.assert_allclose(nothing.numpy(), np.repeat(nothing.numpy()[:1], BATCH, 0))


def _built(cls, modalities, **kwargs):
    layer = cls(modalities, output_dim=4, **kwargs)
    layer({m: _embeddings()[m] for m in modalities})
    return layer


def _without_audio_rows(cls, full):
    """The same layer built without "audio", weights copied as the contract says."""
    reduced = _built(cls, ["image", "text"])
    kept_rows = slice(0, DIMS["image"] + DIMS["text"])  # audio is concatenated last
    if cls is ConcatFusion:
        reduced.projection.kernel.assign(full.projection.kernel[kept_rows])
        reduced.projection.bias.assign(full.projection.bias)
    elif cls is WeightedFusion:
        for m in ["image", "text"]:
            reduced.projections[m].set_weights(full.projections[m].get_weights())
        reduced.logits.assign(full.logits[:2])
    elif cls is GatedFusion:
        for m in ["image", "text"]:
            for new, old in zip(reduced.heads[m], full.heads[m], strict=True):
                new.set_weights(old.get_weights())
        reduced.gate.kernel.assign(full.gate.kernel[kept_rows, :2])
        reduced.gate.bias.assign(full.gate.bias[:2])
    else:
        for m in ["image", "text"]:
            reduced.projections[m].set_weights(full.projections[m].get_weights())
            reduced.type_embeddings[m].assign(full.type_embeddings[m])
        reduced.block.set_weights(full.block.get_weights())
        reduced.output_projection.set_weights(full.output_projection.get_weights())
    return reduced


@pytest.mark.parametrize("cls", FUSIONS, ids=lambda c: c.__name__)
def test_masked_modality_equals_layer_built_without_it(cls):
    full = _built(cls, MODALITIES)
    # Train-like weights: non-zero biases and unequal modality weights.
    rng = np.random.default_rng(3)
    for weight in full.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))
    reduced = _without_audio_rows(cls, full)

    embeddings = _embeddings(1)
    masked = full(embeddings, mask=_mask(audio=[0] * BATCH)).numpy()
    without = reduced({m: embeddings[m] for m in ["image", "text"]}).numpy()
    np.testing.assert_allclose(masked, without, atol=1e-5)
    # Per row too: only rows 1 and 3 lack audio.
    mixed = full(embeddings, mask=_mask(audio=[1, 0, 1, 0])).numpy()
    np.testing.assert_allclose(mixed[[1, 3]], without[[1, 3]], atol=1e-5)
    assert not np.allclose(mixed[[0, 2]], without[[0, 2]], atol=1e-3)


def test_weighted_fusion_weights_renormalise_over_present_modalities():
    layer = _built(WeightedFusion, MODALITIES)
    layer.logits.assign(np.log(np.array([0.5, 0.3, 0.2], "float32")))
    assert layer.modality_weights() == pytest.approx({"image": 0.5, "text": 0.3, "audio": 0.2})
    embeddings = _embeddings()
    projected = {m: layer.projections[m](embeddings[m]).numpy() for m in MODALITIES}
    out = layer(embeddings, mask=_mask(text=[0] * BATCH)).numpy()
    expected = (0.5 * projected["image"] + 0.2 * projected["audio"]) / 0.7
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Every modality missing: zeros.
    none = layer(embeddings, mask={m: np.zeros(BATCH, "float32") for m in MODALITIES})
    np.testing.assert_array_equal(none.numpy(), 0.0)


@pytest.mark.slow
def test_weighted_fusion_learns_a_low_weight_for_a_noise_modality():
    rng = np.random.default_rng(0)
    n = 256
    x = {m: rng.normal(size=(n, 4)).astype("float32") for m in ["image", "text", "noise"]}
    w = rng.normal(size=(2, 4, 3))
    labels = np.argmax(x["image"] @ w[0] + x["text"] @ w[1], axis=-1)  # noise plays no part

    inputs = {m: keras.Input(shape=(4,), name=m) for m in x}
    fusion = WeightedFusion(list(x), output_dim=8)
    outputs = keras.layers.Dense(3, activation="softmax")(fusion(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    assert fusion.modality_weights() == pytest.approx({m: 1 / 3 for m in x})
    model.fit(x, labels, batch_size=32, epochs=40, verbose=0)  # 320 steps

    weights = fusion.modality_weights()
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    best = max(weights["image"], weights["text"])
    assert weights["noise"] < 0.5 * best, weights
    assert weights["noise"] < 0.2, weights


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", FUSIONS, ids=lambda c: c.__name__)
def test_arguments_and_keys_are_validated(cls):
    with pytest.raises(ValueError, match="Expected modalities to be a non-empty list"):
        cls([], output_dim=4)
    with pytest.raises(ValueError, match="Expected modalities to be unique names"):
        cls(["image", "image"], output_dim=4)
    with pytest.raises(ValueError, match="Expected output_dim to be a positive int"):
        cls(["image"], output_dim=0)
    layer = cls(["image", "text"], output_dim=4)
    embeddings = _embeddings()
    with pytest.raises(ValueError, match=r"Expected the first call to include every modality"):
        layer({"image": embeddings["image"]})
    with pytest.raises(ValueError, match=r"unknown modalities \['audio'\]"):
        layer(embeddings)
    layer({"image": embeddings["image"], "text": embeddings["text"]})
    with pytest.raises(ValueError, match=r"Expected mask keys among .* unknown modalities"):
        layer({"image": embeddings["image"]}, mask={"sound": np.ones(BATCH)})


def test_attention_fusion_checks_num_heads():
    with pytest.raises(ValueError, match="Expected num_heads to be a positive int that divides"):
        AttentionFusion(["image", "text"], output_dim=6, num_heads=4)
