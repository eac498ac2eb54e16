"""ConditionalGAN, its networks and conditionings (mmrec.models.gan, .image_networks,
.conditioning) on tiny data."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import mmrec
from mmrec.layers import UserEncoder
from mmrec.models import (
    AttributeConditioner,
    AttributePreferenceModel,
    ConditionalBatchNormalization,
    ConditionalGAN,
    Discriminator,
    Generator,
)
from mmrec.testing import check_saving, run_layer_checks
from mmrec.training import SampleGrid, precision_policy

TINY = {"latent_dim": 8, "generator_filters": (16, 8, 8, 4), "discriminator_filters": (4, 8, 8)}
ATTRIBUTES = {"shape": 8, "colour": 8, "pattern": 4, "size": 3}


# A `.take(n)` of a dataset of unknown length ends an epoch early; Keras warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Your input ran out of data")


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


def pairs(data, batch_size=8, steps=2):
    return data.generation_pairs("train", batch_size=batch_size, drop_remainder=True).take(steps)


def tiny_user_encoder(num_items, dim=8):
    """A stand-in for `recommender.build_user_encoder()`: mean of item-id embeddings."""
    history = keras.Input(shape=(None,), dtype="int32", name="history")
    items = keras.layers.Embedding(num_items, dim, name="item_embedding")(ops.maximum(history, 0))
    user = UserEncoder(name="pool")(items, item_ids=history)
    return keras.Model({"history": history}, user, name="user_encoder")


def tiny_gan(data, condition="attributes", **kwargs):
    encoder = tiny_user_encoder(data.metadata.num_items) if condition == "user" else None
    return ConditionalGAN.from_dataset(
        data, condition=condition, user_encoder=encoder, seed=0, **TINY, **kwargs
    )


@pytest.fixture(scope="module")
def trained(data):
    """A tiny attribute-conditioned GAN after two steps, and its fit history."""
    keras.utils.set_random_seed(0)
    gan = tiny_gan(data)
    gan.compile()
    before = [w.numpy().copy() for w in gan.ema_generator.weights]
    history = gan.fit(pairs(data), epochs=1, verbose=0)
    return gan, history, before


@pytest.fixture(scope="module")
def trained_user(data):
    """A tiny user-conditioned GAN after three steps, with the weights it started from."""
    keras.utils.set_random_seed(0)
    gan = tiny_gan(data, condition="user")
    gan.compile()
    frozen = [w.numpy().copy() for w in gan.preference_model.user_encoder.weights]
    head = [w.numpy().copy() for w in gan.preference_model.trainable_weights]
    history = gan.fit(pairs(data, steps=3), epochs=1, verbose=0)
    return gan, history, frozen, head


def assert_finite_history(history):
    for name, values in history.history.items():
        assert np.all(np.isfinite(values)), f"{name} is not finite: {values}"


# --- networks ---------------------------------------------------------------------------------


def test_conditional_batch_normalization_layer_checks():
    x = np.random.default_rng(0).normal(size=(4, 4, 4, 6)).astype("float32")
    condition = np.random.default_rng(1).normal(size=(4, 5)).astype("float32")
    run_layer_checks(
        ConditionalBatchNormalization,
        init_kwargs={},
        input_data=[x, condition],
        expected_output_shape=(4, 4, 4, 6),
        # An inner layer: under mixed precision it returns its compute dtype (checked below).
        run_mixed_precision=False,
    )
    with precision_policy("mixed_float16"):
        out = ConditionalBatchNormalization()([x, condition], training=True)
    assert out.dtype == tf.float16 and np.all(np.isfinite(out.numpy()))


def test_conditional_batch_normalization_modulates_per_condition():
    layer = ConditionalBatchNormalization()
    x = np.random.default_rng(0).normal(size=(2, 3, 3, 4)).astype("float32")
    condition = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    layer([x, condition], training=True)
    layer.scale.kernel.assign(np.array([[1.0] * 4, [0.0] * 4], "float32"))  # γ = 2 for row 0
    out = layer([x, condition], training=True).numpy()
    normalised = keras.layers.BatchNormalization(center=False, scale=False, epsilon=1e-5)(
        x, training=True
    ).numpy()
    np.testing.assert_allclose(out[0], 2.0 * normalised[0], atol=1e-4)
    np.testing.assert_allclose(out[1], normalised[1], atol=1e-4)


def test_generator_layer_checks_float32_output_in_range():
    generator = run_layer_checks(
        Generator,
        init_kwargs={"image_size": 16, "condition_dim": 6, "latent_dim": 4, "filters": (8, 4, 4)},
        input_data={
            "noise": np.random.default_rng(0).normal(size=(2, 4)).astype("float32"),
            "condition": np.ones((2, 6), "float32"),
        },
        expected_output_shape=(2, 16, 16, 3),
    )
    images = generator({"noise": np.zeros((2, 4)), "condition": np.ones((2, 6))})
    assert images.dtype == tf.float32 and float(ops.max(ops.abs(images))) <= 1.0


@pytest.mark.parametrize("image_size", [32, 64])
def test_generator_and_discriminator_shapes_for_32_and_64_pixels(image_size):
    generator = Generator(image_size, condition_dim=4, latent_dim=4)
    discriminator = Discriminator(image_size, {"shape": 8, "colour": 8})
    assert generator.filters == (256, 128, 64, 32, 16)[: 3 + (image_size == 64) + 1]
    images = generator({"noise": np.zeros((1, 4)), "condition": np.zeros((1, 4))})
    assert images.shape == (1, image_size, image_size, 3)
    labels = {"label_shape": np.array([1]), "label_colour": np.array([2])}
    outputs = discriminator({"image": images.numpy(), **labels})
    assert outputs["logit"].shape == (1, 1) and outputs["colour"].shape == (1, 8)


def test_generator_and_discriminator_save_and_load_with_equal_outputs(tmp_path):
    generator = Generator(32, condition_dim=8, latent_dim=8, filters=(16, 8, 8, 4), name="g")
    discriminator = Discriminator(32, ATTRIBUTES, filters=(4, 8, 8), spectral_norm=True, name="d")
    noise = keras.random.normal((3, 8), seed=keras.random.SeedGenerator(7))
    inputs = {"noise": noise, "condition": tf.ones((3, 8))}
    check_saving(generator, inputs, tmp_path=tmp_path)
    labels = {f"label_{name}": tf.constant([0, 1, 2]) for name in ATTRIBUTES}
    check_saving(discriminator, {"image": generator(inputs), **labels}, tmp_path=tmp_path)


def test_discriminator_projection_depends_on_the_labels():
    discriminator = Discriminator(16, {"shape": 8}, filters=(4, 8), feature_dim=8)
    image = np.random.default_rng(0).uniform(-1, 1, (1, 16, 16, 3)).astype("float32")
    a = discriminator({"image": image, "label_shape": np.array([0])})
    b = discriminator({"image": image, "label_shape": np.array([5])})
    assert not np.allclose(a["logit"], b["logit"])
    np.testing.assert_allclose(a["shape"], b["shape"])  # the classifier ignores the labels


def test_network_errors_say_what_was_expected():
    with pytest.raises(
        ValueError, match="Expected image_size to be one of .* Received: image_size=48"
    ):
        Generator(48)
    with pytest.raises(ValueError, match="Expected filters to be 4 positive ints"):
        Generator(32, filters=(8, 4))
    with pytest.raises(ValueError, match="Expected attributes to be a non-empty dict"):
        Discriminator(32, {})
    with pytest.raises(ValueError, match="Expected user_encoder to be a keras.Model"):
        AttributePreferenceModel(lambda x: x, ATTRIBUTES)


# --- training ---------------------------------------------------------------------------------


def test_fit_float32_gives_finite_losses_and_updates_the_ema(trained):
    gan, history, before = trained
    assert set(history.history) == {"d_loss", "g_loss", "real_accuracy", "fake_accuracy"}
    assert_finite_history(history)
    after = [w.numpy() for w in gan.ema_generator.weights]
    assert any(not np.allclose(a, b) for a, b in zip(after, before))
    # The EMA lags the online weights.
    online = gan.generator.weights[0].numpy()
    assert not np.allclose(online, gan.ema_generator.weights[0].numpy())
    assert isinstance(gan.d_optimizer, keras.optimizers.Adam)
    assert gan.d_optimizer.learning_rate.numpy() == pytest.approx(4e-4)
    assert gan.g_optimizer.learning_rate.numpy() == pytest.approx(2e-4)
    assert gan.d_optimizer.beta_1 == 0.5 and gan.g_optimizer is not gan.d_optimizer


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_fit_under_mixed_precision(data, policy):
    with precision_policy(policy):
        gan = tiny_gan(data)
        gan.compile()
    history = gan.fit(pairs(data), epochs=1, verbose=0)
    assert_finite_history(history)
    assert gan.generator.compute_dtype == policy.split("_")[1]
    wrapped = isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)
    assert wrapped == (policy == "mixed_float16")
    assert isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer) == wrapped
    images = gan.generate({"shape": 0, "colour": 1, "pattern": 2, "size": 0}, num=2, seed=0)
    assert images.dtype == np.float32 and np.all(np.isfinite(images))
    labels = {f"label_{a}": np.zeros(2, "int32") for a in ATTRIBUTES}
    outputs = gan.discriminator({"image": images, **labels})
    assert all(v.dtype == tf.float32 for v in outputs.values())
    assert all(w.dtype == "float32" for w in gan.generator.weights)


def test_fit_with_stabilisers(data):
    gan = tiny_gan(data, ema_decay=0.0)
    gan.compile(loss="hinge", r1_weight=1.0, augment=False)
    assert_finite_history(gan.fit(pairs(data), epochs=1, verbose=0))
    assert gan.ema_generator is gan.generator


def test_text_condition_trains_and_generates_from_strings(data):
    gan = tiny_gan(data, condition="text")
    gan.compile()
    history = gan.fit(pairs(data), epochs=1, verbose=0)
    assert "condition_loss" in history.history
    assert_finite_history(history)
    images = gan.generate(["a large red star on a dotted background", "blue ring"], num=3, seed=1)
    assert images.shape == (2, 3, 32, 32, 3)
    assert gan.generate("a red star", num=2, seed=1).shape == (2, 32, 32, 3)


def test_user_condition_keeps_the_user_encoder_frozen(trained_user):
    gan, history, frozen, head = trained_user
    encoder = gan.preference_model.user_encoder
    assert_finite_history(history)
    assert not encoder.trainable and encoder.trainable_weights == []
    for weight, old in zip(encoder.weights, frozen):
        np.testing.assert_array_equal(weight.numpy(), old)
    assert any(
        not np.allclose(w.numpy(), old)
        for w, old in zip(gan.preference_model.trainable_weights, head)
    )
    sampled = gan.preferred_attributes([[3, 17, 42], [5]], num=4, seed=0)
    assert sampled["shape"].shape == (2, 4) and sampled["colour"].max() < 8
    images = gan.generate(user_history=[[3, 17, 42]], num=4, seed=0)
    assert images.shape == (1, 4, 32, 32, 3)
    assert gan.generate([3, 17, 42], num=2, seed=0).shape == (2, 32, 32, 3)
    # A user model can also be asked for attributes directly.
    attributes = {"shape": [1, 2], "colour": [3, 4], "pattern": [0, 0], "size": [1, 1]}
    assert gan.generate(attributes, num=1, seed=0).shape == (2, 1, 32, 32, 3)


def test_test_step_reports_the_same_metrics(data, trained):
    gan = trained[0]
    result = gan.evaluate(pairs(data, steps=1), return_dict=True, verbose=0)
    assert set(result) == {"d_loss", "g_loss", "real_accuracy", "fake_accuracy"}
    assert all(np.isfinite(v) for v in result.values())


# --- generation -------------------------------------------------------------------------------


def test_generate_is_reproducible_for_a_seed_and_returns_uint8_on_request(data):
    gan = tiny_gan(data)
    condition = {"shape": ["star", "heart"], "colour": ["red", 5, 1], "pattern": 0, "size": 2}
    with pytest.raises(ValueError, match="Expected the same number of values"):
        gan.generate(condition)
    condition["colour"] = ["red", 5]
    # A scalar goes with every row.
    broadcast = gan.generate(condition, num=3, seed=11)
    condition["pattern"], condition["size"] = [0, 0], [2, 2]
    a = gan.generate(condition, num=3, seed=11)
    np.testing.assert_array_equal(broadcast, a)
    b = gan.generate(condition, num=3, seed=11)
    assert a.shape == (2, 3, 32, 32, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a.min() >= -1.0 and a.max() <= 1.0
    assert not np.array_equal(a, gan.generate(condition, num=3, seed=12))
    pixels = gan.generate(condition, num=3, seed=11, dtype="uint8")
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, np.round((a + 1.0) * 127.5).astype("uint8"))


def test_generate_errors_say_what_was_expected(data):
    gan = tiny_gan(data)
    with pytest.raises(ValueError, match="Expected a value for each attribute"):
        gan.generate({"shape": 1})
    with pytest.raises(ValueError, match="Expected colour to be one of"):
        gan.generate({"shape": 1, "colour": "mauve", "pattern": 0, "size": 0})
    with pytest.raises(ValueError, match="Expected condition to be a dict of attributes"):
        gan.generate("a red star")
    with pytest.raises(ValueError, match="preferred_attributes needs a user-conditioned model"):
        gan.preferred_attributes([1, 2])
    with pytest.raises(ValueError, match="Expected loss to be one of"):
        gan.compile(loss="wasserstein")
    with pytest.raises(ValueError, match="Expected condition to be one of"):
        ConditionalGAN.from_dataset(data, condition="audio")
    with pytest.raises(ValueError, match="Expected a user_encoder"):
        ConditionalGAN.from_dataset(data, condition="user")


def test_sample_grid_callback_during_fit(data, trained, tmp_path):
    gan = trained[0]
    conditions = {"shape": [0, 4], "colour": [0, 5], "pattern": [0, 1], "size": [2, 2]}
    grid = SampleGrid(conditions, directory=tmp_path, num=3, log_dir=tmp_path / "logs", seed=3)
    gan.fit(pairs(data, steps=1).repeat(), steps_per_epoch=1, epochs=2, callbacks=[grid], verbose=0)
    assert len(grid.paths) == 2
    png = tf.io.decode_png(tf.io.read_file(grid.paths[-1])).numpy()
    assert png.shape == (2 * 34 + 2, 3 * 34 + 2, 3)


def test_whole_gan_saves_and_loads(trained_user, tmp_path):
    gan = trained_user[0]
    path = str(tmp_path / "gan.keras")
    gan.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ConditionalGAN) and loaded.condition == "user"
    history = [[3, 17, 42], [1]]
    np.testing.assert_allclose(
        loaded.generate(history, num=2, seed=5), gan.generate(history, num=2, seed=5), atol=1e-5
    )


@pytest.mark.slow
def test_fit_with_xla(data):
    gan = tiny_gan(data)
    gan.compile(jit_compile=True)
    assert gan.jit_compile
    assert_finite_history(gan.fit(pairs(data), epochs=1, verbose=0))


def test_text_condition_falls_back_from_xla(data):
    gan = tiny_gan(data, condition="text")
    with pytest.warns(UserWarning, match="jit_compile"):
        gan.compile(jit_compile=True)
    assert not gan.jit_compile


def test_attribute_conditioner_takes_the_data_layers_label_keys():
    conditioner = AttributeConditioner({"shape": ["circle", "star"], "size": 3}, embedding_dim=4)
    out = conditioner({"label_shape": np.array([1, 0]), "label_size": np.array([2, 2])})
    assert out.shape == (2, 8) and out.dtype == tf.float32
    assert conditioner.condition_dim == 8


_DISTRIBUTED_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import mmrec
from mmrec.models.training_utils import mean_over_global_batch

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
values = np.arange(8, dtype="float32")
dataset = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices(values).batch(8)
)
per_replica = strategy.run(mean_over_global_batch, args=(next(iter(dataset)),))
total = float(strategy.reduce("SUM", per_replica, axis=None))
assert abs(total - values.mean()) < 1e-6, total  # each replica: its sum / the global batch

# Noise differs between replicas (Keras' SeedGenerator alone gives each the same numbers).
from mmrec.models.training_utils import replica_seed
with strategy.scope():
    seeds = keras.random.SeedGenerator(3)
draws = strategy.run(tf.function(lambda: tf.random.stateless_normal((4,), replica_seed(seeds))))
first, second = strategy.experimental_local_results(draws)
assert np.abs(first.numpy() - second.numpy()).min() > 0, (first, second)

data = mmrec.data.load(sys.argv[1])
with strategy.scope():
    gan = mmrec.models.ConditionalGAN.from_dataset(
        data, latent_dim=8, generator_filters=(16, 8, 8, 4), discriminator_filters=(4, 8, 8)
    )
    gan.compile()
history = gan.fit(data.generation_pairs("train", batch_size=8, drop_remainder=True).take(2),
                  verbose=0)
assert all(np.isfinite(v[-1]) for v in history.history.values()), history.history
print("ok", total)
"""


@pytest.mark.slow
def test_losses_are_reduced_per_global_batch_under_tf_distribute(data, tmp_path):
    import subprocess
    import sys

    script = tmp_path / "distributed.py"
    script.write_text(_DISTRIBUTED_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), data.path], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("ok")


def test_docstring_examples_run():
    import doctest

    from mmrec.models import gan as gan_module
    from mmrec.models import image_networks
    from mmrec.models.conditioning import attributes, base, text, user

    for module in (image_networks, gan_module, attributes, base, text, user):
        result = doctest.testmod(
            module, extraglobs={"np": np, "tf": tf, "keras": keras, "mmrec": mmrec}
        )
        assert result.failed == 0 and result.attempted > 0, module.__name__
