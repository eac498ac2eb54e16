"""The Keras internals mmrec relies on, in one place (STYLE.md: private APIs live here only).

Each has no public equivalent in Keras 3.15; `tests/test_compat.py` fails as soon
as one of them changes, so an upgrade of Keras shows where to look.
"""

from __future__ import annotations


def sublayers(layer, include_self=True, recursive=True):
    """Every layer inside ``layer`` (nested ones too with ``recursive``), as Keras walks them.

    Keras has no public walk over a layer's sublayers; `Layer._flatten_layers` is
    the one Keras itself uses (for weights, saving and dtype policies).
    """
    return list(layer._flatten_layers(include_self=include_self, recursive=recursive))


def in_safe_mode():
    """Whether `keras.saving.load_model` is deserialising in safe mode (None outside a load).

    `keras.layers.TFSMLayer` makes the same check; there is no public accessor.
    """
    from keras.src.saving.serialization_lib import in_safe_mode as keras_in_safe_mode

    return keras_in_safe_mode()


def build_for_distribution(model, element_spec):
    """Builds ``model``'s optimizer, compiled losses and metrics for batches of ``element_spec``
    under the current strategy scope, and detaches the model from the strategy it was built
    under, so that a custom training loop can run its steps under another one.

    What `Model.fit` does first (`Model._symbolic_build`); there is no public way to do it
    before `fit` under a strategy other than the model's.
    """
    model._symbolic_build(data_batch=element_spec)
    model._distribute_strategy = None
