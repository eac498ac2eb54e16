"""The independent judge and the generation metrics (mmrec.evaluation.generation)."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec
from mmrec.evaluation.generation import (
    AttributeJudge,
    augment,
    conditional_accuracy,
    diversity,
    frechet_distance,
    held_out_accuracy,
    judge_dataset,
    judge_split,
    kernel_distance,
    train_judge,
)
from mmrec.evaluation.personalisation import (
    personalisation_hit_rate,
    preference_hits,
    random_item_hit_rate,
)
from mmrec.testing import check_saving
from mmrec.training import SampleGrid, TimeLimit, image_grid, precision_policy


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


@pytest.fixture(scope="module")
def judge(data):
    judge, _ = train_judge(data, epochs=2, filters=(4, 8, 8), feature_dim=16)
    return judge


# --- feature-space metrics on hand-made sets ---------------------------------------------------


def test_frechet_distance_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(300, 16))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form_for_shifted_gaussians():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20_000, 4)), rng.normal(size=(20_000, 4))
    shift = np.array([1.0, 2.0, 0.0, 0.0])
    # Same covariance: the distance is the squared distance of the means, 5.
    assert frechet_distance(x, y + shift) == pytest.approx(5.0, abs=0.1)
    # Scaled by 2 (Σ = 4I): tr(I + 4I - 2·(4I)^½) = tr(I) = 4.
    assert frechet_distance(x, 2.0 * y) == pytest.approx(4.0, abs=0.15)


def test_kernel_distance_is_about_zero_for_one_distribution_and_positive_otherwise():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8))
    # The estimator is unbiased, so for one set it is about 0 (slightly negative), not exactly 0.
    itself = kernel_distance(x, x)
    same = kernel_distance(x, rng.normal(size=(500, 8)))
    different = kernel_distance(x, rng.normal(size=(500, 8)) + 1.0)
    assert abs(itself) < 0.05 and abs(same) < 0.05
    assert different > 1.0
    assert frechet_distance(x, rng.normal(size=(500, 8)) + 1.0) > 6.0


def test_diversity_of_identical_images_is_zero_and_hand_computed_otherwise():
    assert diversity(np.ones((5, 7))) == 0.0
    features = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [1.0, 1.0]])
    # Group 0: distances 5, 10, 5 → 20/3; group 1 has one row and is skipped.
    assert diversity(features, groups=[0, 0, 0, 1]) == pytest.approx(20 / 3)


# --- label metrics ---------------------------------------------------------------------------


def test_preference_hits_and_random_base_rate_on_hand_made_users():
    users = {
        "user_id": np.array([0, 1]),
        "pref_colour": np.array([[0, 1], [2, -1]]),
        "pref_shape": np.array([[3, 4], [5, -1]]),
    }
    labels = {"colour": [0, 1, 0, 2, 2], "shape": [3, 4, 5, 5, 3]}
    hits = preference_hits(labels, user_ids=[0, 0, 0, 1, 1], users=users)
    assert hits.tolist() == [True, True, False, True, False]
    colour_only = preference_hits(labels, [0, 0, 0, 1, 1], users, attributes=["colour"])
    assert colour_only.tolist() == [True, True, True, True, True]

    class Catalogue:
        labels = {"colour": np.array([0, 2, 2, 7]), "shape": np.array([3, 5, 5, 3])}

    # user 0: item 0 hits (1/4); user 1: items 1, 2 hit (2/4) → mean 0.375.
    rate = random_item_hit_rate(Catalogue(), [0, 1], users, ["colour", "shape"])
    assert rate == pytest.approx(0.375)


# --- the judge --------------------------------------------------------------------------------


def test_judge_split_is_deterministic_and_disjoint():
    train, held_out = judge_split(23)
    assert held_out.tolist() == [0, 5, 10, 15, 20]
    assert not set(train) & set(held_out) and len(train) + len(held_out) == 23


def test_augment_keeps_shape_and_range_and_is_seeded():
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (32, 32, 3)), tf.uint8)
    seed = tf.constant([3, 4], tf.int64)
    a, b = augment(image, seed), augment(image, seed)
    assert a.shape == (32, 32, 3) and a.dtype == tf.float32
    assert float(tf.reduce_min(a)) >= 0.0 and float(tf.reduce_max(a)) <= 255.0
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), augment(image, seed + 1).numpy())


def test_judge_dataset_yields_train_items_augmented_and_held_out_items_raw(data):
    images, labels = next(iter(judge_dataset(data, "held_out", batch_size=100)))
    _, held_out = judge_split(60)
    assert images.shape[0] == len(held_out) and images.dtype == tf.uint8
    np.testing.assert_array_equal(
        labels["shape"].numpy(), data.catalogue().labels["shape"][held_out]
    )
    images, _ = next(iter(judge_dataset(data, "train", batch_size=8)))
    assert images.dtype == tf.float32 and images.shape == (8, 32, 32, 3)
    with pytest.raises(ValueError, match="Expected split 'train' or 'held_out'"):
        judge_dataset(data, "test")


def test_conditional_accuracy_of_real_images_is_the_judges_accuracy(data, judge):
    catalogue = data.catalogue()
    _, held_out = judge_split(catalogue.num_items)
    images = catalogue.images.numpy()[held_out]
    labels = {name: values[held_out] for name, values in catalogue.labels.items()}
    expected = held_out_accuracy(judge, data)
    assert conditional_accuracy(judge, images, labels) == expected
    # Generated images arrive as float in [-1, 1]: quantised back, they read the same.
    as_generated = images.astype("float32") / 127.5 - 1.0
    assert conditional_accuracy(judge, as_generated, labels) == expected
    np.testing.assert_allclose(judge.embed(as_generated), judge.embed(images), atol=1e-5)
    assert set(expected) == {"shape", "colour", "pattern", "size"}


def test_personalisation_hit_rate_uses_the_judged_attributes(data, judge):
    catalogue = data.catalogue()
    users = data.users()
    images = catalogue.images.numpy()[:10]
    predicted = judge.predict_attributes(images)
    user_ids = np.arange(10) % len(users["user_id"])
    strong = list(data.info.strong_preferences)
    assert strong == ["colour", "shape"]  # pattern is a weak preference on shapes
    expected = preference_hits(predicted, user_ids, users, strong).mean()
    rate = personalisation_hit_rate(judge, images, user_ids, users, strong)
    assert rate == pytest.approx(expected)


def test_judge_saves_and_loads_with_equal_outputs(judge, tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("uint8")
    check_saving(judge, images, tmp_path=tmp_path)
    assert judge.embed(images).shape == (3, 16)


def test_judge_validates_its_arguments():
    with pytest.raises(ValueError, match="Expected attributes to be a non-empty dict"):
        AttributeJudge(32, {})


# --- training helpers: grids, time limit, precision scope -------------------------------------


def test_image_grid_tiles_rows_and_columns():
    images = np.zeros((2, 3, 4, 4, 3), "uint8")
    images[1, 2] = 200
    grid = image_grid(images, padding=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3)
    assert grid[6:10, 11:15].min() == 200 and grid[0].min() == 255
    assert image_grid(np.zeros((5, 4, 4, 3), "float32")).shape == (2 * 6 + 2, 3 * 6 + 2, 3)


def test_sample_grid_writes_pngs_and_tensorboard_images(tmp_path):
    class Fake(keras.Model):
        def generate(self, conditions, num, seed, dtype):
            rng = np.random.default_rng(seed)
            return rng.integers(0, 256, (len(conditions), num, 8, 8, 3)).astype("uint8")

    callback = SampleGrid(["a", "b"], directory=tmp_path / "png", num=3, log_dir=tmp_path / "tb")
    callback.set_model(Fake())
    callback.params = {"epochs": 2}
    callback.on_train_begin()
    for epoch in range(2):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch)
    callback.on_train_end()
    assert [os.path.basename(p) for p in callback.paths] == ["epoch_001.png", "epoch_002.png"]
    decoded = tf.io.decode_png(tf.io.read_file(callback.paths[0])).numpy()
    np.testing.assert_array_equal(decoded, callback.grid())  # fixed noise: the same grid
    events = [f for f in os.listdir(tmp_path / "tb") if f.startswith("events")]
    summaries = [
        value
        for event in tf.compat.v1.train.summary_iterator(str(tmp_path / "tb" / events[0]))
        for value in event.summary.value
    ]
    assert [v.tag for v in summaries] == ["samples", "samples"]
    assert summaries[0].metadata.plugin_data.plugin_name == "images"
    width, height, png = summaries[1].tensor.string_val
    assert (int(width), int(height)) == decoded.shape[1::-1]
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), decoded)
    with pytest.raises(ValueError, match="Expected a directory"):
        SampleGrid(["a"])


def test_time_limit_stops_training():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    limit = TimeLimit(minutes=1e-9)
    x = np.zeros((64, 2), "float32")
    model.fit(x, x[:, :1], batch_size=8, epochs=5, callbacks=[limit], verbose=0)
    assert limit.steps == 1


def test_precision_policy_scope_restores_the_global_policy():
    with precision_policy("mixed_float16") as policy:
        assert policy.name == "mixed_float16"
        assert keras.layers.Dense(2).compute_dtype == "float16"
    assert keras.config.dtype_policy().name == "float32"
    with pytest.raises(ValueError, match="Expected a policy name"):
        with precision_policy("float64"):
            pass


def test_docstring_examples_run():
    import doctest

    import mmrec.training
    from mmrec.evaluation import generation
    from mmrec.training import callbacks

    for module in (generation, callbacks, mmrec.training):
        result = doctest.testmod(module, extraglobs={"np": np, "tf": tf, "keras": keras})
        assert result.failed == 0 and result.attempted > 0, module.__name__
