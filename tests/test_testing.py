"""The shared checks in mmrec/testing.py catch the mistakes they are meant to catch."""

import keras
import numpy as np
import pytest

from mmrec.testing import run_layer_checks

X = np.random.default_rng(0).normal(size=(2, 3)).astype("float32")


@keras.saving.register_keras_serializable(package="mmrec_tests")
class _Scale(keras.layers.Layer):
    """A correct layer: y = x * w (w per feature) + offset."""

    def __init__(self, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.offset = offset

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

    def call(self, x):
        return keras.ops.cast(x * self.w + self.offset, "float32")

    def get_config(self):
        return {**super().get_config(), "offset": self.offset}


@keras.saving.register_keras_serializable(package="mmrec_tests")
class _ForgetsConfig(_Scale):
    def get_config(self):
        return keras.layers.Layer.get_config(self)  # drops "offset"


@keras.saving.register_keras_serializable(package="mmrec_tests")
class _LowPrecisionOutput(_Scale):
    def call(self, x):
        return x * self.w  # compute dtype: float16 under mixed_float16


@keras.saving.register_keras_serializable(package="mmrec_tests")
class _DeadWeight(_Scale):
    def build(self, input_shape):
        super().build(input_shape)
        self.unused = self.add_weight(shape=(1,), initializer="zeros")


def test_a_correct_layer_passes(tmp_path):
    layer = run_layer_checks(
        _Scale, {"offset": 1.0}, X, expected_output_shape=(2, 3), tmp_path=tmp_path
    )
    assert isinstance(layer, _Scale)


def test_wrong_shape_is_caught():
    with pytest.raises(AssertionError, match=r"output shape \(2, 3\) != expected \(2, 4\)"):
        run_layer_checks(_Scale, {}, X, expected_output_shape=(2, 4))


def test_incomplete_config_is_caught():
    with pytest.raises(AssertionError, match="outputs differ after from_config"):
        run_layer_checks(_ForgetsConfig, {"offset": 1.0}, X)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")
def test_untrained_weight_is_caught():
    with pytest.raises(AssertionError, match="fit did not update the trainable weight"):
        run_layer_checks(_DeadWeight, {}, X)


def test_low_precision_output_is_caught():
    with pytest.raises(AssertionError, match="mixed_float16: output is float16"):
        run_layer_checks(_LowPrecisionOutput, {}, X)
    assert keras.config.dtype_policy().name == "float32"  # restored after the failure
