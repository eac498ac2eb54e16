"""The audio judge (`AudioJudge`) and the report on generated sounds (`evaluate_audio_generation`),
and the ``audio`` run kind end to end.

One small judge is trained once on the tiny shapes dataset's real sounds (48
training items); it must hear pitch (colour) and pulses (shape) in sounds it
never heard, and still hear them after a Griffin-Lim round trip.
"""

import doctest
import json
import os
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec
from mmrec.evaluation import audio as audio_evaluation
from mmrec.evaluation.audio import (
    AudioJudge,
    audio_personalisation_report,
    evaluate_audio_generation,
    frechet_audio_judge_distance,
    griffin_lim_round_trip,
    real_reference_halves,
    train_audio_judge,
)
from mmrec.evaluation.generation import judge_split
from mmrec.layers import UserEncoder
from mmrec.models.audio_generation import ConditionalAudioGenerator
from mmrec.training import train

TINY_MODEL = {
    "latent_dim": 8,
    "decoder_filters": (16, 16, 16),
    "encoder_filters": (16, 16),
    "iterations": 16,
    "seed": 0,
}


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


@pytest.fixture(scope="module")
def judged(data):
    """``(judge, held-out accuracy)``: a small judge trained on the 48 training items."""
    return train_audio_judge(data, epochs=40, batch_size=8, filters=(8, 16, 16), feature_dim=32)


def tiny_model(data, **kwargs):
    keras.utils.set_random_seed(0)
    model = ConditionalAudioGenerator.from_dataset(data, **{**TINY_MODEL, **kwargs})
    model.compile()
    batch = next(iter(data.generation_pairs("train", batch_size=8, shuffle=False)))
    model.fit(tf.data.Dataset.from_tensors(batch), verbose=0)
    return model


def real_sounds(data, ids):
    return tf.gather(data.catalogue().audio, ids).numpy()


def test_judge_hears_pitch_and_pulses_of_held_out_items(judged):
    _, accuracy = judged
    assert set(accuracy) == {"shape", "colour", "pattern", "size"}
    # 12 held-out items after 48 training items: above chance (0.125) on pitch and pulses.
    assert accuracy["colour"] >= 0.3 and accuracy["shape"] >= 0.3, accuracy


def test_griffin_lim_round_trip_keeps_what_the_judge_hears(data, judged):
    judge, _ = judged
    model = ConditionalAudioGenerator.from_dataset(data, **{**TINY_MODEL, "iterations": 32})
    sounds = data.catalogue().audio.numpy()
    labels = data.catalogue().labels
    rebuilt = griffin_lim_round_trip(model, sounds, batch_size=32)
    assert rebuilt.shape == sounds.shape
    # The sounds the judge hears right, it still hears right after the trip.
    before, after = judge.predict_attributes(sounds), judge.predict_attributes(rebuilt)
    for name in ("colour", "shape"):
        right = before[name] == labels[name]
        assert right.sum() >= 20, name
        assert np.mean(after[name][right] == labels[name][right]) >= 0.9, name
    # And in feature space the rebuilt sounds are as close to the real ones as real to real.
    half_a, half_b = real_reference_halves(len(sounds))
    reference = frechet_audio_judge_distance(judge, sounds[half_a], sounds[half_b])
    distance = frechet_audio_judge_distance(judge, rebuilt[half_a], sounds[half_b])
    assert distance < 1.5 * reference, (distance, reference)


def test_frechet_distance_on_judge_features_and_the_real_halves(data, judged):
    judge, _ = judged
    half_a, half_b = real_reference_halves(60)
    assert len(half_a) == len(half_b) == 30 and not set(half_a) & set(half_b)
    sounds = real_sounds(data, half_a)
    assert frechet_audio_judge_distance(judge, sounds, sounds) == pytest.approx(0.0, abs=1e-6)
    reference = frechet_audio_judge_distance(judge, sounds, real_sounds(data, half_b))
    silence = np.zeros_like(sounds) + np.random.default_rng(0).normal(0, 0.02, sounds.shape)
    assert frechet_audio_judge_distance(judge, silence, real_sounds(data, half_b)) > 3 * reference


def test_personalisation_report_of_the_users_own_items(data, judged):
    judge, _ = judged
    interactions = next(iter(data.interactions("test", batch_size=64, shuffle=False)))
    users, targets = interactions["user_id"].numpy(), interactions["target"].numpy()
    labels = {name: values[targets] for name, values in data.catalogue().labels.items()}
    report = audio_personalisation_report(
        judge, data, real_sounds(data, targets), labels, users, targets
    )
    # The "generated" sounds are the users' own held-out items: the same hit-rate.
    assert report["hit_rate"] == report["hit_rate_held_out_items"]
    assert report["hit_rate_sampled_attributes"] == report["hit_rate_held_out_items_true_labels"]
    assert report["hit_attributes"] == list(data.info.strong_preferences)
    assert 0.0 <= report["hit_rate_random_items"] <= 1.0


def test_report_on_an_attribute_model(data, judged):
    judge, accuracy = judged
    model = tiny_model(data)
    report = evaluate_audio_generation(model, data, judge, diversity_conditions=4)
    assert report["condition"] == "attributes"
    assert set(report["conditional_accuracy"]) == {"shape", "colour", "pattern", "size"}
    _, held_out = judge_split(60)
    assert report["num_sounds"] == 2 * len(held_out)
    # A generator after one step is far from real; a Griffin-Lim round trip is not.
    reference = report["griffin_lim_reference"]
    assert report["fd_judge_ratio"] > 2.0
    assert reference["fd_judge"] < report["fd_judge"]
    assert reference["conditional_accuracy"]["colour"] >= accuracy["colour"] - 0.1
    assert report["fd_judge_ratio"] == pytest.approx(
        report["fd_judge"] / report["fd_judge_real_reference"]
    )
    assert report["diversity"] >= 0.0 and report["diversity_real_reference"] >= 0.0
    json.dumps(report)  # what metrics.json holds


def test_report_on_a_user_model_has_hit_rates(data, judged):
    judge, _ = judged
    history = keras.Input(shape=(None,), dtype="int32", name="history")
    items = keras.layers.Embedding(60, 8)(keras.ops.maximum(history, 0))
    encoder = keras.Model({"history": history}, UserEncoder()(items, item_ids=history))
    model = tiny_model(data, condition="user", user_encoder=encoder)
    report = evaluate_audio_generation(model, data, judge, num_per_condition=1)
    assert report["condition"] == "user" and report["temperature"] == 1.0
    assert {"hit_rate", "hit_rate_held_out_items", "hit_rate_random_items"} <= set(report)
    assert report["num_sounds"] == data.info.splits["test"]


def test_judge_keras_round_trip(judged, data, tmp_path):
    judge, _ = judged
    path = str(tmp_path / "judge.keras")
    judge.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, AudioJudge)
    sounds = real_sounds(data, [0, 1, 2])
    np.testing.assert_allclose(loaded.embed(sounds), judge.embed(sounds), atol=1e-5)
    assert loaded.get_config() == judge.get_config()


def test_judge_refuses_a_dataset_without_audio(data):
    images_only = SimpleNamespace(modalities=["image"], attributes=data.metadata.attributes)
    with pytest.raises(ValueError, match="Expected a dataset with audio"):
        AudioJudge.from_dataset(SimpleNamespace(metadata=images_only))


@pytest.mark.slow
def test_audio_run_kind_trains_samples_and_judges(tiny_shapes, tmp_path):
    short = {"preset": "tiny", "epochs": 2, "steps_per_epoch": 5, "sample_every": 1}
    run = train(
        "audio", tiny_shapes, str(tmp_path / "audio"), {**short, "judge_epochs": 2}, verbose=0
    )
    metrics = run.metrics
    assert metrics["condition"] == "attributes"
    assert set(metrics["generation"]["conditional_accuracy"]) >= {"shape", "colour"}
    for path in metrics["samples"]:
        assert os.path.exists(path)
    assert os.path.exists(os.path.join(tmp_path, "audio", "samples", "epoch_002.wav"))
    assert os.path.exists(os.path.join(tmp_path, "audio", "audio_judge.keras"))
    loaded = mmrec.training.load_run_model(str(tmp_path / "audio"), ConditionalAudioGenerator)
    assert loaded.generate({"shape": 1, "colour": 2, "pattern": 0, "size": 0}).shape == (1, 8000)


def test_docstring_examples_run():
    result = doctest.testmod(audio_evaluation, extraglobs={"np": np, "tf": tf, "keras": keras})
    assert result.failed == 0 and result.attempted > 0
