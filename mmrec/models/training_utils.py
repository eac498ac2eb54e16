"""What the TF training steps of the generative models share under `tf.distribute` and
mixed precision: global-batch loss reduction, optimizers, per-replica random numbers.

Per-example losses are summed over the examples of a replica and divided by the
*global* batch size (`mean_over_global_batch`), so that the replicas' gradients
sum to those of the global batch; metrics undo that division with `num_replicas`.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


def mean_over_global_batch(per_example):
    """Σ per-example losses / global batch size: replicas' gradients then sum correctly."""
    return tf.nn.compute_average_loss(ops.cast(per_example, "float32"))


def num_replicas() -> int:
    """Replicas in sync under the current `tf.distribute` strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def wrap_for_policy(optimizer, policy_name):
    """Wraps ``optimizer`` in a `LossScaleOptimizer` under ``mixed_float16`` (once).

    Keras wraps only the optimizer passed to `Model.compile`; a model with
    several optimizers wraps each of its own.
    """
    if policy_name == "mixed_float16" and not isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer
    ):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def replica_seed(seed_generator):
    """The generator's next seed, distinct on each replica of a `tf.distribute` strategy.

    A `keras.random.SeedGenerator` holds one state for all replicas, so under a
    `MirroredStrategy` every replica draws the *same* numbers (the same noise
    for each replica's share of the batch). The replica id is folded into the
    seed's first word; with one replica the seed is unchanged, so results equal
    `keras.random.normal(..., seed=seed_generator)`.
    """
    seed = seed_generator.next()
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return seed
    replica = tf.cast(context.replica_id_in_sync_group, seed.dtype)
    return seed + tf.stack([replica * 7919, tf.zeros_like(replica)])


def clone_network(model, name):
    """A frozen copy of a functional model with the same weights (e.g. for an EMA)."""
    config = model.get_config()
    config["name"] = name
    clone = model.__class__.from_config(config)
    clone.set_weights(model.get_weights())
    clone.trainable = False
    return clone
