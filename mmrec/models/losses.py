"""Losses shared by the generative models, written with `keras.ops` (any backend).

The reductions that make them correct under `tf.distribute` (per-example losses
summed and divided by the *global* batch) live with the TF training steps, in
`mmrec.models.training_utils`.
"""

from __future__ import annotations

import keras
from keras import ops


def per_example_cross_entropy(logits_by_attribute, labels):
    """Σ over attributes of the sparse softmax cross-entropy, per example ([B], float32).

    ``logits_by_attribute`` and ``labels`` are dicts keyed by attribute name.

    Example:

    >>> logits = {"shape": np.array([[9.0, 0.0], [0.0, 9.0]])}
    >>> np.round(ops.convert_to_numpy(per_example_cross_entropy(logits, {"shape": [0, 0]})), 3)
    array([0.   , 9.   ], dtype=float32)
    """
    total = 0.0
    for name, logits in logits_by_attribute.items():
        total = total + keras.losses.sparse_categorical_crossentropy(
            labels[name], ops.cast(logits, "float32"), from_logits=True
        )
    return total
