"""Mixed precision survives: the recommender and its user encoder reload, and export, as trained.

A model built under ``mixed_bfloat16`` must reload from ``.keras`` (under the
default ``float32`` global policy) with every layer's policy unchanged and the
same outputs, and its SavedModel export must compute in bfloat16 with float32
outputs.
"""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

import mmrec
from mmrec.cli import main
from mmrec.export import export_saved_model
from mmrec.models.recommender import Recommender
from mmrec.testing import dtype_policies

TINY_ENCODERS = {
    "image": {"filters": [4, 8]},
    "text": {"hidden_dim": 8, "sequence_length": 16},
}
HISTORIES = np.array([[3, 17, 42, -1, -1], [5, -1, -1, -1, -1], [1, 2, 3, 4, 59]], "int32")


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


@pytest.fixture
def float32_after():
    """Restores the global policy even when a test fails halfway (conftest does too)."""
    try:
        yield
    finally:
        keras.config.set_dtype_policy("float32")


def bfloat16_recommender(data, how, **kwargs):
    """A tiny recommender under ``mixed_bfloat16``, set globally or given as ``dtype``."""
    kwargs = {
        "modalities": ("image", "text"),
        "embedding_dim": 8,
        "encoder_config": TINY_ENCODERS,
        "user_pooling": "transformer",
        "item_id_embedding": True,
        **kwargs,
    }
    if how == "global":
        keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            return Recommender.from_dataset(data, **kwargs)
        finally:
            keras.config.set_dtype_policy("float32")
    return Recommender.from_dataset(data, dtype="mixed_bfloat16", **kwargs)


def layer_policies(layer):
    """The policy names of ``layer`` and all its sublayers, in order (`dtype_policies`).

    Paired by position: auto-generated sublayer names get fresh suffixes on reload.
    """
    return [policy for _, policy in dtype_policies(layer)]


def reload(model, path):
    """``model`` saved to ``path`` and loaded back under the default float32 policy."""
    model.save(path)
    keras.config.set_dtype_policy("float32")
    return keras.saving.load_model(path, safe_mode=True)


# --- .keras save and load -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["global", "dtype"])
def test_recommender_reloads_with_every_layers_policy(data, how, tmp_path, float32_after):
    rec = bfloat16_recommender(data, how)
    policies = layer_policies(rec)
    assert rec.get_config()["dtype"]["config"]["name"] == "mixed_bfloat16"
    # The layers the recommender builds compute in bfloat16 (the tokenizer is int32,
    # the output-side layers float32 by design).
    for layer in (rec.user_tower, rec.user_hidden, rec.user_projection, rec.item_ids):
        assert layer.compute_dtype == "bfloat16", layer.name
    assert rec.item_encoder.dtype_policy.name == "mixed_bfloat16"
    assert policies.count("mixed_bfloat16") > 10

    loaded = reload(rec, str(tmp_path / "rec.keras"))
    assert layer_policies(loaded) == policies
    np.testing.assert_array_equal(loaded.item_embeddings(), rec.item_embeddings())
    np.testing.assert_array_equal(loaded(HISTORIES), rec(HISTORIES))
    ids, scores = rec.recommend(HISTORIES, k=5)
    loaded_ids, loaded_scores = loaded.recommend(HISTORIES, k=5)
    np.testing.assert_array_equal(loaded_ids, ids)
    np.testing.assert_array_equal(loaded_scores, scores)


def test_user_encoder_reloads_with_every_layers_policy(data, tmp_path, float32_after):
    rec = bfloat16_recommender(data, "dtype")
    encoder = rec.build_user_encoder()
    policies = layer_policies(encoder)
    assert encoder.get_layer("users").dtype_policy.name == "mixed_bfloat16"
    assert encoder.get_layer("item_embeddings").dtype_policy.name == "float32"
    users = encoder({"history": HISTORIES})
    assert users.dtype == "float32"
    np.testing.assert_allclose(
        users, rec.user_embeddings(HISTORIES, rec.item_embeddings()), rtol=1e-6, atol=1e-6
    )

    keras.config.set_dtype_policy("mixed_float16")  # whatever the global policy at saving
    loaded = reload(encoder, str(tmp_path / "user_encoder.keras"))
    assert layer_policies(loaded) == policies
    np.testing.assert_array_equal(loaded({"history": HISTORIES}), users)


def test_a_mixed_precision_recommender_trains_with_float32_logits(data, float32_after):
    rec = bfloat16_recommender(data, "dtype", user_pooling="mean")
    assert rec.correction.compute_dtype == "float32"
    rec.compile(keras.optimizers.Adam(1e-2))
    history = rec.fit(
        data.interactions("train", batch_size=32, content=rec.modalities),
        epochs=1,
        steps_per_epoch=2,
        verbose=0,
    )
    assert np.isfinite(history.history["loss"]).all()
    assert all(w.dtype == "float32" for w in rec.trainable_weights)


# --- SavedModel export ----------------------------------------------------------------------


def op_dtypes(path):
    """``{op type: set of dtypes}`` over the SavedModel's graph and all its functions."""
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    graph = saved.meta_graphs[0].graph_def
    nodes = [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
    found = {}
    for node in nodes:
        if "T" in node.attr:
            found.setdefault(node.op, set()).add(types_pb2.DataType.Name(node.attr["T"].type))
    return found


def bfloat16_ops(path):
    return {op for op, dtypes in op_dtypes(path).items() if "DT_BFLOAT16" in dtypes}


def assert_float32_outputs(path, rec):
    signatures = tf.saved_model.load(path).signatures
    history = tf.constant(HISTORIES)
    out = signatures["recommend"](history=history)
    assert out["scores"].dtype == tf.float32 and out["item_ids"].dtype == tf.int32
    user = signatures["embed_user"](history=history)["user_embedding"]
    assert user.dtype == tf.float32
    # Close to the eager model to bfloat16 precision (2**-8 relative): a traced graph
    # may round bfloat16 intermediates differently (fused ops).
    np.testing.assert_allclose(
        user, rec.user_embeddings(HISTORIES, rec.item_embeddings()), atol=1e-2
    )
    item = signatures["embed_item"](
        image=rec.blank_content(2)["image"],
        text=tf.constant(["red star", "blue heart"]),
        item_id=tf.constant([0, 1]),
    )["item_embedding"]
    assert item.dtype == tf.float32


def test_export_computes_in_bfloat16_with_float32_outputs(data, tmp_path, float32_after):
    rec = bfloat16_recommender(data, "dtype")
    path = export_saved_model(rec, tmp_path / "bf16", name="rec")  # validated
    assert {"MatMul", "Conv2D"} <= bfloat16_ops(path)  # the towers' dense and conv layers
    assert_float32_outputs(path, rec)
    _, scores = rec.recommend(HISTORIES, k=10)
    out = tf.saved_model.load(path).signatures["recommend"](history=tf.constant(HISTORIES))
    # Scores are logits (cos / 0.2 + bias); near-ties may swap ids, not the sorted scores.
    np.testing.assert_allclose(out["scores"], scores, atol=0.05)

    # The control: the same model under float32 exports no bfloat16 op.
    float32 = Recommender.from_dataset(
        data,
        modalities=("image", "text"),
        embedding_dim=8,
        encoder_config=TINY_ENCODERS,
        user_pooling="transformer",
        item_id_embedding=True,
    )
    control = export_saved_model(float32, tmp_path / "f32", name="rec", validate=False)
    assert bfloat16_ops(control) == set()


def test_mmrec_export_of_a_saved_bfloat16_recommender_computes_in_bfloat16(
    data, tmp_path, float32_after
):
    rec = bfloat16_recommender(data, "global")
    saved = str(tmp_path / "rec.keras")
    rec.save(saved)
    keras.config.set_dtype_policy("float32")  # as in a fresh `mmrec export` process
    base = tmp_path / "savedmodels"
    args = ["export", "--model", saved, "--base-dir", str(base), "--name", "rec"]
    assert main([*args, "--no-validate"]) == 0
    path = str(base / "rec" / "1")
    assert {"MatMul", "Conv2D"} <= bfloat16_ops(path)
    assert_float32_outputs(path, rec)


# --- the generators and their networks ------------------------------------------------------


GENERATOR_SIZES = {
    "gan": {
        "latent_dim": 8,
        "generator_filters": (16, 8, 8, 4),
        "discriminator_filters": (4, 8, 8),
    },
    "vae": {"latent_dim": 8, "decoder_filters": (16, 8, 8, 4), "encoder_filters": (4, 8, 8)},
}
CONDITION = {"shape": [1, 4], "colour": ["red", 2], "pattern": 0, "size": 1}


@pytest.mark.parametrize("kind", ["gan", "vae"])
@pytest.mark.parametrize("condition", ["attributes", "text", "user"])
def test_generators_reload_with_every_networks_policy(
    data, kind, condition, tmp_path, float32_after
):
    from mmrec.models import ConditionalGAN, ConditionalVAE

    cls = ConditionalGAN if kind == "gan" else ConditionalVAE
    user_encoder = None
    if condition == "user":
        user_encoder = bfloat16_recommender(data, "dtype").build_user_encoder()
    model = cls.from_dataset(
        data,
        condition=condition,
        user_encoder=user_encoder,
        dtype="mixed_bfloat16",
        seed=0,
        **GENERATOR_SIZES[kind],
    )
    networks = [model.conditioner, model.conditioning]
    pair = (
        (model.generator, model.discriminator) if kind == "gan" else (model.encoder, model.decoder)
    )
    networks += list(pair)
    for network in networks:
        assert network.dtype_policy.name == "mixed_bfloat16", network.name
    if condition == "user":
        assert model.preference_model.hidden.dtype_policy.name == "mixed_bfloat16"
    policies = layer_policies(model)
    assert policies.count("mixed_bfloat16") > 10
    asked = CONDITION if condition != "text" else ["a red star", "a blue heart"]
    images = model.generate(asked, seed=3)

    loaded = reload(model, str(tmp_path / f"{kind}_{condition}.keras"))
    assert layer_policies(loaded) == policies
    np.testing.assert_array_equal(loaded.generate(asked, seed=3), images)
    assert images.dtype == "float32"
