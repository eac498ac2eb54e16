"""The Keras internals of mmrec.compat still exist and do what mmrec needs (fails on a Keras upgrade
that changes them)."""

import keras
import numpy as np
import tensorflow as tf

from mmrec import compat


def test_sublayers_walks_nested_layers():
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")], name="inner")
    outer = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(1, name="head")])
    names = [layer.name for layer in compat.sublayers(outer, include_self=False)]
    assert {"inner", "dense", "head"} <= set(names)
    assert outer.name in [layer.name for layer in compat.sublayers(outer)]
    assert "dense" not in [
        l.name for l in compat.sublayers(outer, include_self=False, recursive=False)
    ]


def test_in_safe_mode_is_set_only_while_loading(tmp_path):
    seen = []

    @keras.saving.register_keras_serializable(package="test_compat")
    class Probe(keras.layers.Layer):
        def call(self, x):
            return x

        @classmethod
        def from_config(cls, config):
            seen.append(compat.in_safe_mode())
            return cls(**config)

    assert compat.in_safe_mode() is None
    model = keras.Sequential([keras.Input((2,)), Probe()])
    path = str(tmp_path / "probe.keras")
    model.save(path)
    keras.saving.load_model(path, safe_mode=True)
    keras.saving.load_model(path, safe_mode=False)
    assert seen == [True, False]


def test_build_for_distribution_builds_the_optimizer_and_detaches_the_strategy():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    spec = (tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None, 1), tf.float32))
    compat.build_for_distribution(model, spec)
    assert model.optimizer.built
    assert model._distribute_strategy is None
    model.fit(np.zeros((4, 3)), np.zeros((4, 1)), verbose=0)  # still trains
