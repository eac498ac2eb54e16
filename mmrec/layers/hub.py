"""`HubEncoder`: a TF Hub model (or any local SavedModel) as a Keras 3 layer.

Where it sits in the data flow: in place of one of the per-modality encoders
of `mmrec.layers.encoders`, with the same call convention
(``encoder(inputs) -> [B, D]`` float32). It runs TensorFlow SavedModel
functions, so unlike the other networks it needs the TensorFlow backend.
"""

import inspect

import keras
import tensorflow as tf
import tensorflow_hub as hub

from mmrec.compat import in_safe_mode


def _variables_used_by(function):
    """(trainable, non-trainable) tf.Variables captured by a restored tf.function's traces."""
    if hasattr(function, "concrete_functions"):
        concrete_functions = function.concrete_functions
    else:  # A signature is already a ConcreteFunction.
        concrete_functions = [function]
    trainable, non_trainable, seen = [], [], set()
    for concrete in concrete_functions:
        for v in concrete.trainable_variables:
            if id(v) not in seen:
                seen.add(id(v))
                trainable.append(v)
    for concrete in concrete_functions:
        for v in concrete.variables:
            if id(v) not in seen:
                seen.add(id(v))
                non_trainable.append(v)
    return trainable, non_trainable


@keras.saving.register_keras_serializable(package="mmrec")
class HubEncoder(keras.layers.Layer):
    """A TF Hub model (or any local SavedModel) as a Keras 3 layer.

    ``tensorflow_hub.load(handle)`` loads the SavedModel; the layer calls
    either the object itself (TF2 "reusable SavedModel": ``obj(inputs)``, with
    ``training`` passed when the function takes it) or one of its
    ``signatures`` (``signature="serving_default"``: called with the input as
    keyword ``signature_input``). When the result is a dict, ``output_key``
    picks the tensor (e.g. ``"pooled_output"`` for BERT-style encoders). The
    output is cast to float32; it should be ``[B, D]``.

    The SavedModel's variables become this layer's weights, so
    ``trainable=True`` fine-tunes them with ``fit`` and ``.keras`` files store
    their current values. ``hub.KerasLayer`` is not used: it is Keras 2 only.

    Deserialisation (``from_config``, ``keras.saving.load_model``) loads and
    runs the SavedModel at ``handle`` again; like ``keras.layers.TFSMLayer``,
    it is refused unless ``safe_mode=False`` is passed (or unsafe
    deserialisation enabled), because a SavedModel is executable graph code.

    Args:
        handle: a TF Hub handle (URL) or the path of a SavedModel directory.
        trainable: whether ``fit`` updates the SavedModel's variables.
        signature: ``None`` to call the object, or a signature name.
        signature_input: the input keyword of the signature (with ``signature``).
        output_key: the key to pick when the model returns a dict.

    Example:

    >>> import tempfile
    >>> class Linear(tf.Module):
    ...     def __init__(self):
    ...         self.w = tf.Variable(tf.ones([4, 2]))
    ...     @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    ...     def __call__(self, x):
    ...         return tf.matmul(x, self.w)
    >>> path = tempfile.mkdtemp()
    >>> tf.saved_model.save(Linear(), path)
    >>> HubEncoder(path, trainable=True)(np.ones((3, 4), "float32")).numpy().tolist()
    [[4.0, 4.0], [4.0, 4.0], [4.0, 4.0]]
    """

    def __init__(
        self,
        handle,
        trainable=False,
        signature=None,
        signature_input="inputs",
        output_key=None,
        **kwargs,
    ):
        # Inputs go to the SavedModel in the dtype it was traced with, so no autocast.
        kwargs.setdefault("autocast", False)
        super().__init__(trainable=trainable, **kwargs)
        self.handle = str(handle)
        self.signature = signature
        self.signature_input = signature_input
        self.output_key = output_key
        # A SavedModel may hold any op; XLA support is unknown.
        self.supports_jit = False

        self._loaded = hub.load(self.handle)
        if signature is None:
            if not callable(self._loaded):
                raise ValueError(
                    "Expected the SavedModel to be callable (a reusable SavedModel), or a "
                    f"signature name. Received: handle={self.handle!r}, signature=None; "
                    f"available signatures: {sorted(self._loaded.signatures)}"
                )
            self._function = self._loaded.__call__
            try:
                parameters = inspect.signature(self._function).parameters
            except (TypeError, ValueError):
                parameters = {}
            self._takes_training = "training" in parameters
        else:
            if signature not in self._loaded.signatures:
                raise ValueError(
                    f"Expected signature to be one of {sorted(self._loaded.signatures)}. "
                    f"Received: signature={signature!r}"
                )
            self._function = self._loaded.signatures[signature]
            self._takes_training = False

        # Wrap (not copy) each tf.Variable in a Keras variable: the SavedModel's
        # functions read the very same storage that the optimizer updates.
        trainable_vars, non_trainable_vars = _variables_used_by(self._function)
        trainable_ids = {id(v) for v in trainable_vars}
        for variable in trainable_vars + non_trainable_vars:
            self._track_variable(
                keras.Variable(
                    initializer=variable,
                    trainable=id(variable) in trainable_ids,
                    dtype=variable.dtype,
                    shape=variable.shape,
                    name=variable.name.split(":")[0].replace("/", "_"),
                )
            )
        # A Keras 3 layer with tracked variables must say that it is built.
        self.built = True

    def call(self, inputs, training=None):
        if self.signature is not None:
            outputs = self._function(**{self.signature_input: inputs})
        elif self._takes_training:
            outputs = self._function(inputs, training=bool(training) and self.trainable)
        else:
            outputs = self._function(inputs)
        if isinstance(outputs, dict):
            if self.output_key is None:
                if len(outputs) != 1:
                    raise ValueError(
                        "Expected output_key to name one of the SavedModel's outputs "
                        f"{sorted(outputs)}. Received: output_key=None"
                    )
                (outputs,) = outputs.values()
            elif self.output_key not in outputs:
                raise ValueError(
                    f"Expected output_key to be one of {sorted(outputs)}. "
                    f"Received: output_key={self.output_key!r}"
                )
            else:
                outputs = outputs[self.output_key]
        return tf.cast(outputs, "float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "handle": self.handle,
                "signature": self.signature,
                "signature_input": self.signature_input,
                "output_key": self.output_key,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        if in_safe_mode() is not False:
            raise ValueError(
                "Requested the deserialization of a HubEncoder, which loads and runs the "
                f"SavedModel at handle={config.get('handle')!r}. This is refused in safe mode. "
                "If you trust it, pass safe_mode=False to keras.saving.load_model() or "
                "keras.saving.deserialize_keras_object(), or call "
                "keras.config.enable_unsafe_deserialization()."
            )
        return cls(**config)
