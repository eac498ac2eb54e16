"""`ConditionalAudioGenerator`, its networks, its spectrogram (STFT + Griffin-Lim), the
`AudioSamples` callback and the ``generate_audio`` signature.

Tiny networks on the tiny shapes dataset (60 items): each check trains for a few
dozen steps at most. The export is validated once, in a fresh TensorFlow process,
and its signature must make what ``model.generate`` makes for the same seeds.
"""

import doctest
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec
from mmrec.export import build_endpoints, export_saved_model
from mmrec.layers import UserEncoder
from mmrec.models import audio_generation, audio_networks, spectrogram
from mmrec.models.audio_generation import ConditionalAudioGenerator
from mmrec.models.audio_networks import SpectrogramEncoder, SpectrogramGenerator
from mmrec.models.spectrogram import Spectrogram, spectral_convergence
from mmrec.testing import (
    check_config_round_trip,
    check_dtype_round_trip,
    check_saving,
    run_layer_checks,
)
from mmrec.training import callbacks
from mmrec.training.callbacks import AudioSamples

STAR = {"shape": 4, "colour": 0, "pattern": 2, "size": 2}  # a large red star with dots
TINY = {
    "latent_dim": 8,
    "decoder_filters": (16, 16, 16),
    "encoder_filters": (16, 16),
    "iterations": 8,
    "seed": 0,
}


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


def tiny_model(data, **kwargs):
    keras.utils.set_random_seed(0)
    return ConditionalAudioGenerator.from_dataset(data, **{**TINY, **kwargs})


def tiny_user_encoder(num_items, dim=8):
    history = keras.Input(shape=(None,), dtype="int32", name="history")
    items = keras.layers.Embedding(num_items, dim)(keras.ops.maximum(history, 0))
    user = UserEncoder(name="pool")(items, item_ids=history)
    return keras.Model({"history": history}, user, name="user_encoder")


def fixed_batch(data, size=16):
    return next(iter(data.generation_pairs("train", batch_size=size, shuffle=False)))


@pytest.fixture(scope="module")
def trained(data):
    """An attribute-conditioned model after 2 steps (enough for export and generate checks)."""
    model = tiny_model(data)
    model.compile()
    model.fit(tf.data.Dataset.from_tensors(fixed_batch(data)).repeat(2), verbose=0)
    return model


# --- the spectrogram --------------------------------------------------------------------------


def test_stft_inverse_is_exact_and_griffin_lim_rebuilds_real_sounds(data):
    sounds = data.catalogue().audio.numpy()[:8]
    transform = Spectrogram(num_samples=8000, sample_rate=16000, frame_step=125, iterations=32)
    assert (transform.num_frames, transform.num_bins) == (64, 257)
    np.testing.assert_allclose(transform.istft(transform.stft(sounds)).numpy(), sounds, atol=1e-5)

    rebuilt = tf.function(transform.invert)(transform(sounds)).numpy()
    assert rebuilt.shape == sounds.shape and np.abs(rebuilt).max() <= 1.0
    # The phase is lost, the magnitudes come back: a few per cent of spectral convergence.
    convergence = spectral_convergence(
        np.abs(transform.stft(sounds)), np.abs(transform.stft(rebuilt))
    )
    assert convergence.mean() < 0.05 and convergence.max() < 0.1, convergence
    # The normalised spectrogram is a lossless relabelling of the magnitudes.
    magnitudes = np.abs(transform.stft(sounds).numpy())
    np.testing.assert_allclose(
        transform.magnitudes(transform(sounds)).numpy(), magnitudes, rtol=1e-3, atol=1e-5
    )


def test_spectrogram_config_round_trip_and_errors():
    transform = Spectrogram(num_samples=1600, sample_rate=8000, frame_step=50, iterations=4)
    again = Spectrogram.from_config(transform.get_config())
    assert (again.num_frames, again.num_bins, again.sample_rate) == (32, 129, 8000)
    with pytest.raises(ValueError, match="Expected frame_step to be a positive int"):
        Spectrogram(frame_step=0)
    with pytest.raises(ValueError, match="Expected frame_step <= frame_length <= num_samples"):
        Spectrogram(num_samples=100, frame_step=50)


# --- the networks -------------------------------------------------------------------------------


def test_spectrogram_generator_standard_checks(tmp_path):
    inputs = {"noise": np.zeros((2, 4), "float32"), "condition": np.ones((2, 6), "float32")}
    generator = run_layer_checks(
        SpectrogramGenerator,
        {
            "num_frames": 12,
            "num_bins": 9,
            "condition_dim": 6,
            "latent_dim": 4,
            "filters": (8, 8, 4),
        },
        inputs,
        expected_output_shape=(2, 12, 9),  # 3 frames doubled twice, cut to 12
        tmp_path=tmp_path,
    )
    assert generator.filters == (8, 8, 4)


def test_spectrogram_encoder_round_trips_and_dtypes(tmp_path):
    inputs = {
        "spectrogram": np.random.default_rng(0).uniform(-1, 1, (2, 16, 9)).astype("float32"),
        "condition": np.ones((2, 6), "float32"),
    }
    init = {"num_frames": 16, "num_bins": 9, "condition_dim": 6, "latent_dim": 3}
    init.update(filters=(4, 8), hidden_dim=8)
    encoder = SpectrogramEncoder(**init)
    z_mean, z_log_var = encoder(inputs)
    assert tuple(z_mean.shape) == tuple(z_log_var.shape) == (2, 3)
    np.testing.assert_allclose(z_log_var, 0.0)  # the posterior starts as wide as the prior
    check_config_round_trip(encoder, inputs)
    check_saving(encoder, inputs, tmp_path=tmp_path)
    check_dtype_round_trip(SpectrogramEncoder, init, inputs, tmp_path=tmp_path)


def test_network_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="Expected filters to be positive ints"):
        SpectrogramGenerator(filters=(8, 0))
    with pytest.raises(ValueError, match="Expected num_bins to be a positive int"):
        SpectrogramEncoder(num_bins=0)


# --- the model ----------------------------------------------------------------------------------


def test_training_on_a_fixed_batch_reduces_its_loss(data):
    model = tiny_model(data)
    model.compile()
    batch = tf.data.Dataset.from_tensors(fixed_batch(data))
    before = model.evaluate(batch, return_dict=True, verbose=0)
    history = model.fit(batch.repeat(40), verbose=0).history
    after = model.evaluate(batch, return_dict=True, verbose=0)
    assert set(history) == {"loss", "reconstruction", "kl", "neg_elbo", "spectrogram_l1"}
    assert after["loss"] < before["loss"] - 0.2 * abs(before["loss"]), (before, after)
    assert after["spectrogram_l1"] < before["spectrogram_l1"], (before, after)
    assert after["neg_elbo"] == pytest.approx(after["reconstruction"] + after["kl"], rel=1e-4)


def test_generate_shapes_range_and_seeds(trained):
    sounds = trained.generate(STAR, num=3, seed=5)
    assert sounds.shape == (3, 8000) and sounds.dtype == np.float32
    assert np.abs(sounds).max() <= 1.0 and np.abs(sounds).max() > 0.0
    np.testing.assert_array_equal(trained.generate(STAR, num=3, seed=5), sounds)
    assert not np.allclose(trained.generate(STAR, num=3, seed=6)[0], sounds[0])
    # Row i of a request with seed s is the sound of seed s + i.
    np.testing.assert_allclose(trained.generate(STAR, num=1, seed=6)[0], sounds[1], atol=1e-4)
    two = trained.generate({"shape": [0, 4], "colour": ["red", "blue"], "pattern": 0, "size": 1}, 2)
    assert two.shape == (2, 2, 8000)
    waveforms = trained({f"label_{k}": np.array([v, v]) for k, v in STAR.items()})
    assert tuple(waveforms.shape) == (2, 8000)


def test_keras_round_trip_gives_equal_sounds(trained, tmp_path):
    path = str(tmp_path / "audio.keras")
    trained.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ConditionalAudioGenerator)
    assert loaded.spectrogram.get_config() == trained.spectrogram.get_config()
    np.testing.assert_allclose(
        loaded.generate(STAR, num=2, seed=3), trained.generate(STAR, num=2, seed=3), atol=1e-5
    )


def test_mixed_precision_wraps_both_optimizers_and_keeps_float32_outputs(data):
    keras.config.set_dtype_policy("mixed_float16")
    encoder = tiny_user_encoder(60)
    model = tiny_model(data, condition="user", user_encoder=encoder, dtype="mixed_float16")
    model.compile()
    # The model's optimizer and the user preference head's own one.
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(model.own_optimizer, keras.optimizers.LossScaleOptimizer)
    logs = model.fit(tf.data.Dataset.from_tensors(fixed_batch(data, 8)), verbose=0).history
    assert np.isfinite(logs["loss"][-1]) and np.isfinite(logs["condition_loss"][-1])
    sounds = model.generate(STAR, num=2, seed=0)
    assert sounds.dtype == np.float32 and np.isfinite(sounds).all()
    labels = {f"label_{k}": tf.constant([v]) for k, v in STAR.items()}
    assert model.decode(tf.zeros((1, 8)), labels).dtype == tf.float32


def test_user_conditioned_model_trains_its_preferences_and_generates_for_histories(data):
    model = tiny_model(data, condition="user", user_encoder=tiny_user_encoder(60))
    model.compile()
    logs = model.fit(tf.data.Dataset.from_tensors(fixed_batch(data, 8)), verbose=0).history
    assert "condition_loss" in logs and np.isfinite(logs["condition_loss"][-1])
    assert model.generate([3, 17, 42], num=2, seed=0).shape == (2, 8000)
    assert model.generate([[3, 17], [5]], num=1, seed=0).shape == (2, 1, 8000)


def test_errors_say_what_was_expected(data, trained):
    with pytest.raises(ValueError, match="Expected a condition"):
        trained.generate(None)
    with pytest.raises(ValueError, match="Expected beta >= 0"):
        tiny_model(data, beta=-1.0)
    wrong = SpectrogramGenerator(32, 257, condition_dim=128, latent_dim=8, filters=(8, 8))
    with pytest.raises(ValueError, match=r"Expected the decoder's \(num_frames, num_bins\)"):
        ConditionalAudioGenerator(trained.encoder, wrong, trained.conditioning)
    with pytest.raises(ValueError, match="Expected a SpectrogramEncoder"):
        ConditionalAudioGenerator(trained.decoder, trained.decoder, trained.conditioning)
    with pytest.raises(ValueError, match="Expected a Conditioning"):
        ConditionalAudioGenerator(trained.encoder, trained.decoder, trained.conditioner)
    with pytest.raises(ValueError, match="Expected condition to be"):
        trained.generate([1, 2, 3])  # a history, for an attribute model


# --- the callback ---------------------------------------------------------------------------------


def test_audio_samples_write_wavs_spectrograms_and_summaries(data, tmp_path):
    model = tiny_model(data)
    model.compile()
    conditions = {"shape": [0, 4], "colour": [0, 5], "pattern": [0, 0], "size": [2, 2]}
    sampler = AudioSamples(conditions, tmp_path / "sounds", num=3, log_dir=tmp_path / "logs")
    model.fit(tf.data.Dataset.from_tensors(fixed_batch(data, 8)), epochs=2, callbacks=[sampler])
    names = sorted(os.path.basename(p) for p in sampler.paths)
    assert names == ["epoch_001.png", "epoch_001.wav", "epoch_002.png", "epoch_002.wav"]
    wav = tf.audio.decode_wav(tf.io.read_file(str(tmp_path / "sounds" / "epoch_002.wav")))
    assert int(wav.sample_rate) == 16000
    assert wav.audio.shape == (6 * (8000 + 1600), 1)  # 2 conditions × 3 sounds, 0.1 s gaps
    png = tf.io.decode_png(tf.io.read_file(str(tmp_path / "sounds" / "epoch_002.png")))
    assert png.shape == (2 * (257 + 2) + 2, 3 * (64 + 2) + 2, 3)
    assert any(name.startswith("events") for name in os.listdir(tmp_path / "logs"))


# --- export ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signature(trained, tmp_path_factory):
    base = tmp_path_factory.mktemp("savedmodels")
    path = export_saved_model(trained, base, name="audio_generator")  # validated
    return tf.saved_model.load(path).signatures["generate_audio"]


def test_exported_signature_makes_what_generate_makes(trained, signature):
    labels = {f"label_{k}": tf.constant([v] * 3, tf.int32) for k, v in STAR.items()}
    outputs = signature(**labels, seed=tf.constant([5, 6, 7], tf.int64))
    assert sorted(outputs) == ["audio", "audio_wav_bytes"]
    audio = outputs["audio"].numpy()
    assert audio.shape == (3, 8000) and audio.dtype == np.float32
    np.testing.assert_allclose(audio, trained.generate(STAR, num=3, seed=5), atol=1e-4)
    for wav, sound in zip(outputs["audio_wav_bytes"].numpy(), audio):
        decoded = tf.audio.decode_wav(wav)
        assert int(decoded.sample_rate) == 16000
        np.testing.assert_allclose(decoded.audio.numpy()[:, 0], sound, atol=1 / 32767)


def test_exported_signature_refuses_attributes_out_of_range(signature):
    labels = {f"label_{k}": tf.constant([v], tf.int32) for k, v in STAR.items()}
    labels["label_colour"] = tf.constant([8], tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label_colour in \[0, 8\)"):
        signature(**labels, seed=tf.constant([0], tf.int64))


def test_user_signature_samples_attributes_and_matches_generate_for_them(data):
    model = tiny_model(data, condition="user", user_encoder=tiny_user_encoder(60))
    (endpoint,), vocabulary = build_endpoints(model)
    assert endpoint.name == "generate_audio" and vocabulary is None
    assert sorted(endpoint.input_signature) == ["history", "seed"]
    request = {"history": tf.constant([[3, 17, 42], [5, -1, -1]]), "seed": tf.constant([4, 9])}
    outputs = tf.function(endpoint.fn)(request)
    sampled = {k[len("label_") :]: v.numpy() for k, v in outputs.items() if k.startswith("label_")}
    assert sorted(sampled) == sorted(model.attributes)
    for row, seed in enumerate((4, 9)):
        condition = {k: int(v[row]) for k, v in sampled.items()}
        expected = model.generate(condition, num=1, seed=seed)[0]
        np.testing.assert_allclose(outputs["audio"].numpy()[row], expected, atol=1e-4)


def test_docstring_examples_run():
    modules = (audio_networks, spectrogram, audio_generation, callbacks)
    for module in modules:
        result = doctest.testmod(
            module, extraglobs={"np": np, "tf": tf, "keras": keras, "mmrec": mmrec}
        )
        assert result.failed == 0 and result.attempted > 0, module.__name__
