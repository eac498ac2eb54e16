"""tf.distribute for `model.fit`: one device, several devices of one machine, several machines.

Where it sits in the data flow: `mmrec.training.train` creates the strategy *before*
anything touches TensorFlow's runtime (a multi-worker strategy must be the first
thing a process does), builds the model in its scope and calls `model.fit`.

* ``"default"``: one device (the first GPU, else the CPU).
* ``"mirrored"``: `tf.distribute.MirroredStrategy` over every GPU of the machine;
  without GPUs, over every *logical* CPU device (see `configure_cpu_devices`,
  which splits one CPU into several for tests: same maths, no speed-up).
* ``"multiworker"``: `tf.distribute.MultiWorkerMirroredStrategy` across the
  machines that ``TF_CONFIG`` lists (docs/training.md shows a two-machine run and
  a Kubernetes Job). Every worker runs the same command; worker 0 (or the
  ``chief``) writes the run folder.

In every case ``batch_size`` is the *global* batch: each step splits it into
per-replica batches, and the models reduce their losses over the global batch.
"""

from __future__ import annotations

import contextlib
import json
import os

import tensorflow as tf

from mmrec import compat

STRATEGIES = ("default", "mirrored", "multiworker")


def configure_cpu_devices(count: int) -> None:
    """Splits the CPU into ``count`` logical devices (call before TensorFlow starts).

    For testing `"mirrored"` on a machine without GPUs: replicas on logical CPU
    devices share the same cores (no speed-up) but run the real distributed code
    paths — per-replica batches, cross-replica gradient reduction.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"Expected a positive number of CPU devices. Received: {count!r}")
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise ValueError(
                f"Cannot split the CPU into {count} devices: TensorFlow has already started "
                "in this process. Do it first thing (mmrec train --cpu-devices N does)."
            ) from None


def cluster_spec() -> dict:
    """``TF_CONFIG`` as a dict (``{}`` when unset)."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {text[:200]!r}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"Expected TF_CONFIG to be a JSON object. Received: {text[:200]!r}")
    return spec


def task_role() -> tuple[bool, str]:
    """``(is_chief, "worker-1")`` for this process (``(True, "chief")`` without ``TF_CONFIG``).

    The chief is the task of type ``"chief"`` or, when the cluster has none,
    worker 0 — as `MultiWorkerMirroredStrategy` decides.
    """
    spec = cluster_spec()
    task = spec.get("task", {})
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    if not spec:
        return True, "chief"
    has_chief = bool(spec.get("cluster", {}).get("chief"))
    is_chief = kind == "chief" or (kind == "worker" and index == 0 and not has_chief)
    return is_chief, f"{kind}-{index}"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` called ``name`` (see the module docstring)."""
    if name not in STRATEGIES:
        raise ValueError(f"Expected a strategy among {STRATEGIES}. Received: {name!r}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    spec = cluster_spec()
    workers = spec.get("cluster", {}).get("worker", []) + spec.get("cluster", {}).get("chief", [])
    if not workers or "task" not in spec:
        raise ValueError(
            '--strategy multiworker needs TF_CONFIG, e.g. TF_CONFIG=\'{"cluster": {"worker": '
            '["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\' on the '
            "first machine (index 1 on the second); see docs/training.md."
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def is_multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


@contextlib.contextmanager
def model_scope(strategy):
    """`strategy.scope()`, plus what multi-worker training needs to build mmrec models.

    `MultiWorkerMirroredStrategy` broadcasts every new variable's initial value
    from worker 0 with collective ops, which have no uint8 kernel, so building a
    `Recommender` (its catalogue images are a uint8 weight) fails there. The
    catalogue is data — identical on every worker and never updated — so small
    integer non-trainable variables are kept as plain per-worker variables.
    """
    with strategy.scope():
        if not is_multi_worker(strategy):
            yield
            return
        with tf.variable_creator_scope(_local_small_integer_variables):
            yield


def _local_small_integer_variables(next_creator, **kwargs):
    dtype = kwargs.get("dtype")
    dtype = tf.as_dtype(dtype) if dtype is not None else None
    small_integer = dtype in (tf.uint8, tf.int8, tf.uint16, tf.int16)
    if small_integer and not kwargs.get("trainable", True):
        # Calling ResourceVariable directly skips the strategy's variable creator.
        from tensorflow.python.ops import resource_variable_ops

        return resource_variable_ops.ResourceVariable(
            initial_value=kwargs["initial_value"],
            trainable=False,
            name=kwargs.get("name"),
            dtype=dtype,
        )
    return next_creator(**kwargs)


def prepare_for_fit(model, strategy, dataset) -> contextlib.AbstractContextManager:
    """Returns the context to call ``fit`` in; works around Keras 3.15 issues with strategies.

    A no-op for the ambient (default) strategy. Otherwise:

    1. Before the first step, ``fit`` of a model built in a strategy's scope takes
       one batch from a first iterator to build the model symbolically, then starts
       training on a *second* iterator — with another shuffle order than one device
       sees (``reshuffle_each_iteration``); under `MultiWorkerMirroredStrategy` that
       build even fails for a dict of int features (keras-team/keras#20329). Here
       the same build runs on the dataset's element spec (no batch consumed), the
       model's recorded strategy is cleared and ``fit`` runs inside the strategy's
       scope: the same strategy, and the same batches as on one device.
    2. Under `MultiWorkerMirroredStrategy`, ``fit`` reduces a step's scalar logs with
       ``strategy.reduce("MEAN", v, axis=0)``, which fails for scalars
       (tensorflow/tensorflow#72388); the steps return each log as a 1-vector, whose
       axis-0 mean across workers is the same number.
    """
    if strategy is tf.distribute.get_strategy():
        return contextlib.nullcontext()
    with strategy.scope():  # builds the optimizer, compiled losses and metrics
        compat.build_for_distribution(model, dataset.element_spec)
    if is_multi_worker(strategy):
        for name in ("train_step", "test_step"):
            setattr(model, name, _as_vectors(getattr(model, name)))
    return strategy.scope()


def _as_vectors(step):
    def wrapped(data):
        return {k: tf.reshape(v, [1]) for k, v in step(data).items()}

    return wrapped


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shards by example, not by file, across workers.

    With the default (by file), each worker reads different shards, so a
    multi-worker run sees other batches than a one-device run. By example, the
    global batches are the same ones a single device would see, split between
    the workers — reproducible runs at the cost of every worker reading every
    shard (cheap here: interaction records hold only ids).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
