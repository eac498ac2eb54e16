"""mmrec training: `train` (one run, config → `model.fit` → run folder) over a registry of
run kinds (`mmrec.training.kinds`), tf.distribute strategies, callbacks (sample grids,
TensorBoard scalars) and the mixed-precision policy scope."""

import contextlib

import keras

from mmrec.training.callbacks import SampleGrid, TimeLimit, image_grid, write_png

PRECISION_POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")


@contextlib.contextmanager
def precision_policy(name):
    """Builds models under a Keras dtype policy; the previous global policy comes back after.

    ``"mixed_float16"`` / ``"mixed_bfloat16"``: float16/bfloat16 compute, float32
    weights (mmrec models keep their outputs float32). The policy is read when a
    layer is created, so create the model inside the block; `ConditionalGAN` and
    `ConditionalVAE` wrap their optimizers in `LossScaleOptimizer` under float16.

    Example:

    >>> with precision_policy("mixed_bfloat16"):
    ...     layer = keras.layers.Dense(2)
    >>> layer.compute_dtype, keras.config.dtype_policy().name
    ('bfloat16', 'float32')
    """
    if name not in PRECISION_POLICIES:
        raise ValueError(f"Expected a policy name in {PRECISION_POLICIES}. Received: name={name!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield keras.config.dtype_policy()
    finally:
        keras.config.set_dtype_policy(previous)


# After `precision_policy`: the runner uses it.
from mmrec.training.configs import resolve_config  # noqa: E402
from mmrec.training.distribute import configure_cpu_devices, make_strategy  # noqa: E402
from mmrec.training.kinds import (  # noqa: E402
    RunKind,
    RunPlan,
    get_run_kind,
    register_run_kind,
    run_kind_names,
)
from mmrec.training.runner import RunResult, train, train_or_reuse  # noqa: E402
from mmrec.training.runs import load_run_model  # noqa: E402

__all__ = [
    "PRECISION_POLICIES",
    "RunKind",
    "RunPlan",
    "RunResult",
    "SampleGrid",
    "TimeLimit",
    "configure_cpu_devices",
    "get_run_kind",
    "image_grid",
    "load_run_model",
    "make_strategy",
    "precision_policy",
    "register_run_kind",
    "resolve_config",
    "run_kind_names",
    "train",
    "train_or_reuse",
    "write_png",
]
