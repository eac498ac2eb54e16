"""What `ConditionalGAN` and `ConditionalVAE` share: conditioning, batches, randomness, generate.

Where it sits in the data flow: between the conditioning (what an image is asked
to show, `mmrec.models.conditioning`) and the image networks
(`mmrec.models.image_networks`). The training steps are TensorFlow's (the
Keras guide "Customizing what happens in fit() with TensorFlow"); nothing here
switches on the kind of condition: the conditioning object carries that.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mmrec.models.attributes import check_positive_int, label_key
from mmrec.models.conditioned import ConditionedGenerator
from mmrec.models.conditioning import Conditioning, get_conditioning
from mmrec.models.image_networks import to_uint8
from mmrec.models.training_utils import replica_seed

GENERATE_CHUNK = 512  # images decoded per call in `generate`


def as_conditioning(conditioning, condition=None, preference_model=None) -> Conditioning:
    """A `Conditioning`, also from the older ``(conditioner, condition, preference_model)``.

    A bare conditioner network is wrapped in the conditioning of ``condition``
    (``None``: attributes for an `AttributeConditioner`, text for a
    `TextConditioner`).
    """
    if isinstance(conditioning, Conditioning):
        if condition is not None and condition != conditioning.kind:
            raise ValueError(
                f"Expected condition={conditioning.kind!r} for a {type(conditioning).__name__}. "
                f"Received: condition={condition!r}"
            )
        return conditioning
    if not isinstance(conditioning, keras.Model):
        raise ValueError(
            "Expected a Conditioning (e.g. mmrec.models.conditioning.AttributeConditioning) or "
            f"a conditioner network. Received: {conditioning!r}"
        )
    if condition is None:
        condition = "text" if type(conditioning).__name__ == "TextConditioner" else "attributes"
    cls = get_conditioning(condition)
    if cls.requires_user_encoder:
        if preference_model is None:
            raise ValueError(
                f"Expected a preference_model (an AttributePreferenceModel) for "
                f"condition={condition!r}. Received: preference_model=None"
            )
        return cls(conditioning, preference_model, name="conditioning")
    if preference_model is not None:
        raise ValueError(
            f"Expected no preference_model for condition={condition!r}. "
            f"Received: {type(preference_model).__name__}"
        )
    return cls(conditioning, name="conditioning")


class ConditionalImageModel(ConditionedGenerator):
    """Base of the conditional image generators. Not used directly.

    A subclass calls `_init_conditioning` in its ``__init__`` and implements
    ``decode(noise, network_inputs)`` (images in [-1, 1] from noise and the
    conditioning network's inputs, in inference mode) and ``latent_dim``.
    """

    content_key = "image"

    def _init_conditioning(self, conditioning, seed, condition=None, preference_model=None):
        self._set_conditioning(as_conditioning(conditioning, condition, preference_model), seed)

    # --- randomness in the train and test steps (distinct per replica) ------------------------

    def _normal(self, shape):
        return tf.random.stateless_normal(shape, seed=replica_seed(self.seed_generator))

    def _uniform(self, shape):
        return tf.random.stateless_uniform(shape, seed=replica_seed(self.seed_generator))

    def _randint(self, shape, low, high):
        seed = replica_seed(self.seed_generator)
        return tf.random.stateless_uniform(shape, seed, minval=low, maxval=high, dtype="int32")

    # --- generation -------------------------------------------------------------------------

    def decode(self, noise, network_inputs):
        """Images in [-1, 1] from noise ``[B, latent_dim]`` and the conditioning network's
        inputs, in inference mode (what `generate`, `call` and the exported signature run)."""
        raise NotImplementedError

    @property
    def latent_dim(self) -> int:
        raise NotImplementedError

    def call(self, inputs, training=False):
        """A batch of served condition inputs (e.g. ``label_*``, ``text`` or ``history``) → images.

        A conditioning whose network takes attribute labels (attributes, user) also
        accepts the ``label_<attribute>`` inputs directly.
        """
        served = self.conditioning.serving_inputs()
        if all(name in inputs for name in served):

            def sample(logits, stream):
                drawn = keras.random.categorical(logits, 1, seed=self.seed_generator)
                return ops.cast(drawn[:, 0], "int32")

            network_inputs, _ = self.conditioning.resolve(inputs, sample)
        elif self.conditioning.takes_labels:
            network_inputs = {label_key(n): inputs[label_key(n)] for n in self.attributes}
        else:
            raise ValueError(f"Expected inputs {sorted(served)}. Received: {sorted(inputs)}")
        batch = ops.shape(keras.tree.flatten(network_inputs)[0])[0]
        noise = keras.random.normal((batch, self.latent_dim), seed=self.seed_generator)
        return self.decode(noise, network_inputs)

    def generate(
        self, condition=None, num=1, seed=None, dtype="float32", temperature=1.0, user_history=None
    ):
        """Generates ``num`` images for each condition.

        Args:
            condition: what to show, as the conditioning takes it: a dict of
                attributes (``{attribute: id or class name, or a list of them}``,
                every attribute given) for attribute and user models; a description
                or a list of them for text models; a history of item ids (one user)
                or a list of histories for user models.
            num: images per condition.
            seed: an int for reproducible noise (and preference samples); ``None``
                uses (and advances) the model's seed generator.
            dtype: ``"float32"`` (values in [-1, 1]) or ``"uint8"`` (pixels in [0, 255]).
            temperature: for users: divides the preference logits before sampling.
            user_history: the same as ``condition`` for a user-conditioned model.

        Returns:
            A NumPy array ``[num, H, W, 3]`` for one condition, ``[conditions, num,
            H, W, 3]`` for a list of them.
        """
        if user_history is not None:
            condition = user_history
        if condition is None:
            raise ValueError("Expected a condition (see the docstring). Received: condition=None")
        if dtype not in ("float32", "uint8"):
            raise ValueError(f"Expected dtype 'float32' or 'uint8'. Received: dtype={dtype!r}")
        check_positive_int("num", num)
        seed_generator = self._seed(seed)
        inputs, single = self.conditioning.parse(condition, num, seed_generator, temperature)
        rows = keras.tree.flatten(inputs)[0]
        total = len(rows)
        noise = ops.convert_to_numpy(
            keras.random.normal((total, self.latent_dim), seed=seed_generator)
        )
        images = []
        for start in range(0, total, GENERATE_CHUNK):
            chunk = slice(start, start + GENERATE_CHUNK)
            part = keras.tree.map_structure(
                lambda v, rows=chunk: ops.convert_to_tensor(v[rows]), inputs
            )
            decoded = self.decode(ops.convert_to_tensor(noise[chunk]), part)
            images.append(ops.convert_to_numpy(decoded))
        images = np.concatenate(images).astype("float32")
        images = images.reshape((-1, num) + images.shape[1:])
        if single:
            images = images[0]
        return to_uint8(images) if dtype == "uint8" else images
