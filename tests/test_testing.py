"""The shared checks in mmrec/testing.py catch the mistakes they are meant to catch."""

import keras
import numpy as np
import pytest

from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.testing import check_dtype_round_trip, run_layer_checks

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


@keras.saving.register_keras_serializable(package="mmrec_tests")
class _WithSublayer(_Scale):
    """A correct layer with a sublayer built in `build`, with the layer's own policy."""

    def build(self, input_shape):
        super().build(input_shape)
        self.dense = keras.layers.Dense(2, dtype=self.dtype_policy)
        self.dense.build(input_shape)

    def call(self, x):
        return keras.ops.cast(self.dense(x * self.w), "float32")


@keras.saving.register_keras_serializable(package="mmrec_tests")
class _SublayerTakesGlobalPolicy(_WithSublayer):
    def build(self, input_shape):
        super().build(input_shape)
        self.dense = keras.layers.Dense(2)  # the global policy of the moment


@keras.saving.register_keras_serializable(package="mmrec_tests")
class _Network(keras.Model):
    """A correct functional network: explicit dtype, passed down, kept, and in the config."""

    def __init__(self, units=2, dtype=None, **kwargs):
        policy = resolve_policy(dtype)
        self.dense = keras.layers.Dense(units, dtype=policy)
        inputs = keras.Input(shape=(3,), name="x")
        super().__init__(inputs=inputs, outputs=self.dense(inputs), **kwargs)
        self.dtype_policy = policy
        self.units = units

    def get_config(self):
        return {
            "name": self.name,
            "units": self.units,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="mmrec_tests")
class _NetworkDropsDtype(_Network):
    def get_config(self):
        config = super().get_config()
        del config["dtype"]
        return config


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


@pytest.mark.parametrize("cls", [_WithSublayer, _Network], ids=lambda c: c.__name__)
def test_correct_dtype_handling_passes_the_round_trip(cls, tmp_path):
    check_dtype_round_trip(cls, {}, X, tmp_path=tmp_path)
    assert keras.config.dtype_policy().name == "float32"


def test_sublayer_on_the_global_policy_is_caught():
    with pytest.raises(
        AssertionError, match=r"dtype policies changed .* mixed_bfloat16 -> float32"
    ):
        check_dtype_round_trip(_SublayerTakesGlobalPolicy, {}, X)
    assert keras.config.dtype_policy().name == "float32"  # restored after the failure


def test_network_that_drops_its_dtype_is_caught():
    with pytest.raises(
        AssertionError, match=r"dtype policies changed .* mixed_bfloat16 -> float32"
    ):
        check_dtype_round_trip(_NetworkDropsDtype, {}, X)
