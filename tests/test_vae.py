"""ConditionalVAE (mmrec.models.vae) on tiny data."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec
from mmrec.layers import UserEncoder
from mmrec.models import AttributeConditioner, ConditionalVAE, Generator, VAEEncoder
from mmrec.models.vae import discretized_logistic_log_likelihood
from mmrec.testing import check_saving
from mmrec.training import precision_policy

TINY = {"latent_dim": 8, "decoder_filters": (16, 8, 8, 4), "encoder_filters": (4, 8, 8)}


# A `.take(n)` of a dataset of unknown length ends an epoch early; Keras warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Your input ran out of data")


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


def pairs(data, split="train", batch_size=8, steps=2):
    return data.generation_pairs(split, batch_size=batch_size, drop_remainder=True).take(steps)


@pytest.fixture(scope="module")
def trained_text(data):
    keras.utils.set_random_seed(0)
    vae = tiny_vae(data, condition="text")
    vae.compile()
    history = vae.fit(pairs(data), epochs=1, verbose=0)
    return vae, history


def tiny_vae(data, condition="attributes", **kwargs):
    encoder = None
    if condition == "user":
        history = keras.Input(shape=(None,), dtype="int32", name="history")
        items = keras.layers.Embedding(data.metadata.num_items, 8)(keras.ops.maximum(history, 0))
        encoder = keras.Model({"history": history}, UserEncoder()(items, item_ids=history))
    return ConditionalVAE.from_dataset(
        data, condition=condition, user_encoder=encoder, seed=0, **TINY, **kwargs
    )


def test_discretized_logistic_is_a_distribution_over_the_256_levels():
    levels = np.arange(256, dtype="float32") / 127.5 - 1.0
    for mean, log_scale in [(0.3, np.log(0.05)), (-0.99, np.log(0.5)), (0.5, np.log(1e-3))]:
        log_p = discretized_logistic_log_likelihood(
            levels, np.full(256, mean, "float32"), np.float32(log_scale)
        )
        total = float(np.sum(np.exp(log_p.numpy())))
        assert total == pytest.approx(1.0, abs=1e-3), (mean, log_scale, total)
        if log_scale < np.log(0.1):  # a narrow distribution peaks at the mean's level
            assert int(np.argmax(log_p)) == int(np.round((mean + 1.0) * 127.5))


def test_fit_and_evaluate_report_the_elbo_terms_in_nats(data):
    vae = tiny_vae(data, beta=2.0)
    vae.compile()
    history = vae.fit(pairs(data), epochs=1, verbose=0)
    assert set(history.history) == {"loss", "reconstruction", "kl", "neg_elbo"}
    result = vae.evaluate(pairs(data, "valid", steps=1), return_dict=True, verbose=0)
    assert all(np.isfinite(v) for v in result.values())
    assert result["kl"] >= 0.0
    # Bounded below by 0 (a discrete likelihood) and far below the uniform 32·32·3·log 256.
    assert 0.0 < result["reconstruction"] < 32 * 32 * 3 * np.log(256)
    assert result["neg_elbo"] == pytest.approx(result["reconstruction"] + result["kl"], rel=1e-4)
    assert result["loss"] == pytest.approx(result["reconstruction"] + 2.0 * result["kl"], rel=1e-4)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_fit_under_mixed_precision(data, policy):
    with precision_policy(policy):
        vae = tiny_vae(data)
        vae.compile()
    history = vae.fit(pairs(data), epochs=1, verbose=0)
    assert all(np.all(np.isfinite(v)) for v in history.history.values())
    wrapped = isinstance(vae.optimizer, keras.optimizers.LossScaleOptimizer)
    assert wrapped == (policy == "mixed_float16")
    z_mean, z_log_var = vae.encoder(
        {"image": np.zeros((1, 32, 32, 3), "float32"), "condition": np.zeros((1, 128), "float32")}
    )
    assert z_mean.dtype == z_log_var.dtype == tf.float32
    images = vae.generate({"shape": 1, "colour": 2, "pattern": 0, "size": 1}, num=2, seed=0)
    assert images.dtype == np.float32 and np.all(np.abs(images) <= 1.0)


def test_text_condition(trained_text):
    vae, history = trained_text
    assert all(np.all(np.isfinite(v)) for v in history.history.values())
    images = vae.generate("a small green heart, striped backdrop", num=3, seed=0, dtype="uint8")
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8


def test_user_condition(data):
    vae = tiny_vae(data, condition="user")
    vae.compile()
    history = vae.fit(pairs(data), epochs=1, verbose=0)
    assert all(np.all(np.isfinite(v)) for v in history.history.values())
    assert vae.generate([3, 17, 42], num=3, seed=0).shape == (3, 32, 32, 3)


def test_generate_is_reproducible_and_reparameterisation_is_seeded(data):
    vae = tiny_vae(data)
    condition = {"shape": [0, 1], "colour": [2, 3], "pattern": [0, 0], "size": [1, 2]}
    np.testing.assert_array_equal(
        vae.generate(condition, num=2, seed=3), vae.generate(condition, num=2, seed=3)
    )
    # Training noise comes from the model's SeedGenerator: two models with one seed agree.
    vae.compile()
    other = tiny_vae(data)
    other.set_weights(vae.get_weights())
    other.compile()
    batch = next(iter(pairs(data, steps=1)))
    batch = {k: batch[k] for k in vae.feature_keys()}
    a = vae.test_step(batch)["reconstruction"]
    b = other.test_step(batch)["reconstruction"]
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_encoder_and_decoder_save_and_load(tmp_path):
    encoder = VAEEncoder(32, condition_dim=8, latent_dim=4, filters=(4, 8, 8), name="enc")
    inputs = {
        "image": np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32"),
        "condition": np.ones((2, 8), "float32"),
    }
    check_saving(encoder, inputs, tmp_path=tmp_path)


def test_whole_vae_saves_and_loads(trained_text, tmp_path):
    vae = trained_text[0]
    path = str(tmp_path / "vae.keras")
    vae.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        loaded.generate(["red star"], num=2, seed=1),
        vae.generate(["red star"], num=2, seed=1),
        atol=1e-5,
    )
    np.testing.assert_allclose(loaded.log_scale.numpy(), vae.log_scale.numpy())


def test_vae_errors_say_what_was_expected():
    conditioner = AttributeConditioner({"shape": 8}, embedding_dim=4)
    encoder = VAEEncoder(16, condition_dim=4, latent_dim=4, filters=(4, 8))
    with pytest.raises(ValueError, match="Expected the encoder and decoder to share latent_dim"):
        ConditionalVAE(encoder, Generator(16, condition_dim=4, latent_dim=6), conditioner)
    with pytest.raises(ValueError, match="Expected beta >= 0"):
        ConditionalVAE(encoder, Generator(16, condition_dim=4, latent_dim=4), conditioner, beta=-1)
    with pytest.raises(ValueError, match="Expected a preference_model"):
        ConditionalVAE(
            encoder, Generator(16, condition_dim=4, latent_dim=4), conditioner, condition="user"
        )


def test_docstring_examples_run():
    import doctest

    from mmrec.models import vae as vae_module

    result = doctest.testmod(vae_module, extraglobs={"np": np, "tf": tf, "keras": keras})
    assert result.failed == 0 and result.attempted > 0
