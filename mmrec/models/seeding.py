"""Per-row seeded draws: what makes a generated item reproducible from its seed alone.

Where it sits in the data flow: inside generation, in Python and in exported
graphs alike. Row i of a batch is drawn from ``seeds[i]`` with stateless random
ops (``tf.random.stateless_*`` with seed ``[seeds[i], stream]``), so the same
seed gives the same noise and the same sampled attributes whatever else is in
the batch, eagerly, in a `tf.function` and inside TF Serving. Different things
drawn for one row (the image's noise, the sound's noise, each attribute) use
different ``stream`` numbers so that they are independent.
"""

from __future__ import annotations

import tensorflow as tf


def seeded_noise(seeds, dim, stream=0):
    """Standard normal noise ``float32 [B, dim]``, row i drawn from ``(seeds[i], stream)`` alone."""
    seeds = tf.cast(seeds, tf.int64)
    stream = tf.constant(stream, tf.int64)
    return tf.map_fn(
        lambda s: tf.random.stateless_normal([dim], seed=tf.stack([s, stream])),
        seeds,
        fn_output_signature=tf.float32,
    )


def seeded_categorical(seeds, logits, stream):
    """One class id per row from ``logits [B, C]`` (Gumbel-max), row i from ``seeds[i]``."""
    seeds = tf.cast(seeds, tf.int64)
    classes = logits.shape[-1]
    uniform = tf.map_fn(
        lambda s: tf.random.stateless_uniform(
            [classes], seed=tf.stack([s, tf.constant(stream, tf.int64)]), minval=1e-7, maxval=1.0
        ),
        seeds,
        fn_output_signature=tf.float32,
    )
    gumbel = -tf.math.log(-tf.math.log(uniform))
    return tf.cast(tf.argmax(tf.cast(logits, tf.float32) + gumbel, axis=-1), tf.int32)
