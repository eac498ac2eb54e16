"""Per-modality encoders (mmrec/layers/encoders.py, hub.py) and sequence blocks (sequence.py)."""

import doctest

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec.layers.encoders as encoders
import mmrec.layers.hub as hub
import mmrec.layers.sequence as sequence
from mmrec.layers import (
    AudioEncoder,
    HubEncoder,
    ImageEncoder,
    MaskedMeanPooling,
    PositionEmbedding,
    TextEncoder,
    TransformerBlock,
)
from mmrec.testing import check_dtype_round_trip, dtype_policies, run_layer_checks

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (2, 16, 16, 3)).astype("uint8")
TOKEN_IDS = np.array([[5, 6, 7, 0, 0, 0], [9, 8, 7, 6, 5, 4], [0, 0, 0, 0, 0, 0]], "int32")
WAVES = RNG.uniform(-1, 1, (2, 1600)).astype("float32")


@pytest.mark.parametrize("module", [encoders, hub, sequence], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, extraglobs={"np": np, "tf": tf})
    assert result.attempted > 0 and result.failed == 0


# --- standard checks ----------------------------------------------------------------


def test_image_encoder_standard_checks(tmp_path):
    run_layer_checks(
        ImageEncoder,
        {"embedding_dim": 8, "filters": [4, 8], "image_size": 8},
        IMAGES,
        expected_output_shape=(2, 8),
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_text_encoder_standard_checks(kind, tmp_path):
    run_layer_checks(
        TextEncoder,
        {
            "vocabulary_size": 20,
            "embedding_dim": 8,
            "kind": kind,
            "sequence_length": 6,
            "hidden_dim": 8,
        },
        TOKEN_IDS,
        expected_output_shape=(3, 8),
        tmp_path=tmp_path,
    )


def test_audio_encoder_standard_checks(tmp_path):
    run_layer_checks(
        AudioEncoder,
        {"embedding_dim": 8, "filters": [4], "num_mel_bins": 8},
        WAVES,
        expected_output_shape=(2, 8),
        tmp_path=tmp_path,
    )


# --- dtype policies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls, kwargs",
    [
        (ImageEncoder, {"filters": [4]}),
        (TextEncoder, {"vocabulary_size": 20, "kind": "lstm", "hidden_dim": 8}),
        (AudioEncoder, {"filters": [4], "num_mel_bins": 8}),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_encoders_carry_an_explicit_dtype_policy(cls, kwargs):
    # Under a float32 global policy, dtype= alone decides: every layer but the
    # float32 output projection takes it, and the config carries it.
    encoder = cls(embedding_dim=4, dtype="mixed_bfloat16", **kwargs)
    policies = dict(dtype_policies(encoder))
    assert policies.pop("projection") == "float32"
    assert set(policies.values()) == {"mixed_bfloat16"}
    config = encoder.get_config()
    assert keras.dtype_policies.get(config["dtype"]).name == "mixed_bfloat16"
    assert cls.from_config(config).dtype_policy.name == "mixed_bfloat16"


# --- behaviour ------------------------------------------------------------------------


def test_image_encoder_takes_uint8_or_float_pixels():
    encoder = ImageEncoder(embedding_dim=4, filters=[4])
    np.testing.assert_allclose(encoder(IMAGES), encoder(IMAGES.astype("float32")), atol=1e-6)


def test_audio_encoder_takes_any_length():
    encoder = AudioEncoder(embedding_dim=4, filters=[4], num_mel_bins=8)
    assert tuple(encoder(WAVES[:, :800]).shape) == (2, 4)
    assert tuple(encoder(WAVES).shape) == (2, 4)


@pytest.mark.parametrize("kind", ["transformer", "lstm"])
def test_text_encoder_ignores_padding(kind):
    encoder = TextEncoder(20, embedding_dim=8, kind=kind, sequence_length=6, hidden_dim=8)
    before = encoder(TOKEN_IDS).numpy()
    assert np.isfinite(before).all()
    # Scramble the [PAD] embedding: padded positions must not matter...
    table = encoder.token_embedding.embeddings
    table.assign(tf.tensor_scatter_nd_update(table, [[0]], [np.full(8, 50.0, "float32")]))
    after = encoder(TOKEN_IDS).numpy()
    np.testing.assert_allclose(after, before, atol=1e-5)
    # ...while real tokens do.
    table.assign(tf.tensor_scatter_nd_update(table, [[5]], [np.full(8, 50.0, "float32")]))
    assert not np.allclose(encoder(TOKEN_IDS).numpy()[0], before[0], atol=1e-3)
    # An all-padding row is the projection of a zero vector: its bias.
    np.testing.assert_allclose(after[2], encoder.projection.bias.numpy(), atol=1e-6)


def test_encoders_validate_arguments():
    with pytest.raises(ValueError, match=r"Expected kind to be one of \('transformer', 'lstm'\)"):
        TextEncoder(20, kind="gru")
    with pytest.raises(ValueError, match="Expected hidden_dim to be divisible by num_heads"):
        TextEncoder(20, hidden_dim=10, num_heads=4)
    with pytest.raises(ValueError, match="Expected embedding_dim to be a positive int"):
        ImageEncoder(embedding_dim=0)
    with pytest.raises(ValueError, match="Expected filters to be a non-empty list"):
        AudioEncoder(filters=[])


# --- HubEncoder ---------------------------------------------------------------------


class _TinyEncoder(tf.Module):
    """What a TF Hub text/image encoder is, in miniature: variables + a tf.function."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.random.stateless_normal([4, 3], seed=[1, 2]), name="kernel")
        self.scale = tf.Variable(2.0, trainable=False, name="scale")

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def __call__(self, x):
        return self.scale * tf.tanh(tf.matmul(x, self.kernel))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
    def serve(self, features):
        return {"embedding": self(features), "norm": tf.norm(features, axis=-1)}


@pytest.fixture
def hub_path(tmp_path):
    module = _TinyEncoder()
    path = str(tmp_path / "tiny_encoder")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    return path


def _hub_model(path, trainable):
    inputs = keras.Input(shape=(4,), name="features")
    embedding = HubEncoder(path, trainable=trainable, name="hub")(inputs)
    return keras.Model(inputs, keras.layers.Dense(1, name="head")(embedding))


def test_hub_encoder_standard_checks(hub_path, tmp_path):
    run_layer_checks(
        HubEncoder,
        {"handle": hub_path, "trainable": True},
        RNG.normal(size=(3, 4)).astype("float32"),
        expected_output_shape=(3, 3),
        safe_mode=False,
        tmp_path=tmp_path,
    )


@pytest.mark.parametrize("trainable", [True, False])
def test_hub_encoder_fit_updates_weights_only_when_trainable(hub_path, trainable):
    model = _hub_model(hub_path, trainable)
    hub = model.get_layer("hub")
    assert [w.name for w in hub.weights] == ["kernel", "scale"]
    assert len(hub.trainable_weights) == (1 if trainable else 0)
    kernel = hub.weights[0]
    before = kernel.numpy().copy()
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x = RNG.normal(size=(16, 4)).astype("float32")
    model.fit(x, RNG.normal(size=(16, 1)), batch_size=8, epochs=2, verbose=0)
    changed = not np.allclose(kernel.numpy(), before)
    assert changed == trainable
    # The non-trainable variable never changes.
    assert float(hub.weights[1].numpy()) == 2.0
    # The SavedModel's function reads the updated variable: the layer's output
    # follows the Keras weights.
    expected = 2.0 * np.tanh(x @ kernel.numpy())
    np.testing.assert_allclose(hub(x), expected, rtol=1e-5, atol=1e-6)


def test_hub_encoder_saves_fine_tuned_weights_and_reloads(hub_path, tmp_path):
    model = _hub_model(hub_path, trainable=True)
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    x = RNG.normal(size=(16, 4)).astype("float32")
    model.fit(x, RNG.normal(size=(16, 1)), batch_size=8, epochs=2, verbose=0)
    path = tmp_path / "with_hub.keras"
    model.save(path)
    assert model.get_layer("hub").get_config()["handle"] == hub_path

    with pytest.raises(ValueError, match="refused in safe mode.*safe_mode=False"):
        keras.saving.load_model(path)
    loaded = keras.saving.load_model(path, safe_mode=False)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    # The reloaded layer holds the fine-tuned weights, not the SavedModel's originals.
    original = HubEncoder(hub_path)
    assert not np.allclose(loaded.get_layer("hub").weights[0].numpy(), original.weights[0])


def test_hub_encoder_signature_and_output_key(hub_path):
    x = RNG.normal(size=(2, 4)).astype("float32")
    direct = HubEncoder(hub_path)(x)
    by_signature = HubEncoder(
        hub_path, signature="serving_default", signature_input="features", output_key="embedding"
    )
    np.testing.assert_allclose(by_signature(x), direct, rtol=1e-6)
    with pytest.raises(ValueError, match=r"Expected output_key to name one of .*'embedding'"):
        HubEncoder(hub_path, signature="serving_default", signature_input="features")(x)
    with pytest.raises(ValueError, match=r"Expected signature to be one of \['serving_default'\]"):
        HubEncoder(hub_path, signature="encode")


# --- learning on the shapes benchmark ---------------------------------------------------


@pytest.mark.slow
def test_image_classifier_on_tiny_shapes_beats_chance(tmp_path):
    import mmrec

    config = mmrec.data.ShapesConfig(num_items=200, num_users=20, min_sequence=3, max_sequence=5)
    mmrec.data.write_shapes(str(tmp_path / "shapes"), config, progress=False)
    catalogue = mmrec.data.load(str(tmp_path / "shapes")).catalogue()
    images, colours = catalogue.images.numpy(), catalogue.labels["colour"]
    ids = np.arange(catalogue.num_items)
    train, test = ids[ids % 5 != 0], ids[ids % 5 == 0]

    inputs = keras.Input(shape=(32, 32, 3), dtype="uint8")
    embedding = ImageEncoder(embedding_dim=16, filters=[8, 16], image_size=16)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(8, activation="softmax")(embedding))
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(images[train], colours[train], batch_size=32, epochs=30, verbose=0)
    accuracy = np.mean(model.predict(images[test], verbose=0).argmax(-1) == colours[test])
    assert accuracy > 0.4, f"held-out colour accuracy {accuracy:.2f} (chance 0.125)"


# --- shared sequence blocks (mmrec/layers/sequence.py) ------------------------------------


def test_sequence_blocks_standard_checks(tmp_path):
    # Building blocks compute and return in the compute dtype (float16 under
    # mixed_float16), as Keras layers inside a model should; the models that use
    # them return float32. So the float32-output check is replaced by the one below.
    x = RNG.normal(size=(2, 5, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    common = {"run_mixed_precision": False, "tmp_path": tmp_path}
    run_layer_checks(PositionEmbedding, {"sequence_length": 6}, x, (2, 5, 8), **common)
    run_layer_checks(
        TransformerBlock,
        {"num_heads": 2, "intermediate_dim": 16},
        x,
        (2, 5, 8),
        call_kwargs={"padding_mask": mask},
        **common,
    )
    pooled = run_layer_checks(
        MaskedMeanPooling, {}, x, (2, 8), call_kwargs={"mask": mask}, **common
    )
    np.testing.assert_allclose(pooled(x, mask=mask)[0], x[0, :3].mean(axis=0), rtol=1e-5)
    # Their sublayers (attention, norms, MLP, dropout) follow the block's policy.
    check_dtype_round_trip(
        TransformerBlock,
        {"num_heads": 2, "intermediate_dim": 16},
        tf.constant(x),
        call_kwargs={"padding_mask": tf.constant(mask)},
        tmp_path=tmp_path,
    )


def test_sequence_blocks_compute_in_half_precision_with_float32_weights():
    keras.config.set_dtype_policy("mixed_float16")  # conftest restores float32
    x = RNG.normal(size=(2, 5, 8)).astype("float32")
    block = TransformerBlock(num_heads=2, intermediate_dim=16)
    out = block(PositionEmbedding(6)(x), padding_mask=np.ones((2, 5), bool))
    assert out.dtype == "float16" and np.isfinite(out.numpy()).all()
    assert {w.dtype for w in block.weights} == {"float32"}


def test_transformer_block_never_attends_to_padding():
    block = TransformerBlock(num_heads=2, intermediate_dim=16)
    x = RNG.normal(size=(1, 5, 8)).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0]], bool)
    out = block(x, padding_mask=mask).numpy()
    changed = x.copy()
    changed[0, 3:] = 100.0
    np.testing.assert_allclose(
        block(changed, padding_mask=mask).numpy()[0, :3], out[0, :3], atol=1e-5
    )


class _DropoutLike(tf.Module):
    """A reusable SavedModel whose __call__ takes `training` (like dropout or batch norm)."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(tf.ones([4, 2]), name="kernel")

    @tf.function
    def __call__(self, x, training=False):
        y = tf.matmul(x, self.kernel)
        return 2.0 * y if training else y


def test_hub_encoder_passes_training_when_the_function_takes_it(tmp_path):
    module = _DropoutLike()
    spec = tf.TensorSpec([None, 4], tf.float32)
    for training in (False, True):
        module.__call__.get_concrete_function(spec, training=training)
    tf.saved_model.save(module, str(tmp_path / "dropout_like"))
    x = np.ones((1, 4), "float32")
    trainable = HubEncoder(str(tmp_path / "dropout_like"), trainable=True)
    assert trainable(x, training=True).numpy().tolist() == [[8.0, 8.0]]
    assert trainable(x, training=False).numpy().tolist() == [[4.0, 4.0]]
    # A frozen encoder always runs in inference mode, as a frozen BatchNorm does.
    frozen = HubEncoder(str(tmp_path / "dropout_like"), trainable=False)
    assert frozen(x, training=True).numpy().tolist() == [[4.0, 4.0]]
