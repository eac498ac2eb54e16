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
from mmrec.models.conditioning import Conditioning, get_conditioning
from mmrec.models.image_networks import to_uint8
from mmrec.models.training_utils import replica_seed, wrap_for_policy

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


class ConditionalImageModel(keras.Model):
    """Base of the conditional image generators. Not used directly.

    A subclass calls `_init_conditioning` in its ``__init__`` and implements
    ``decode(noise, network_inputs)`` (images in [-1, 1] from noise and the
    conditioning network's inputs, in inference mode) and ``latent_dim``.
    """

    def _init_conditioning(self, conditioning, seed, condition=None, preference_model=None):
        self.conditioning = as_conditioning(conditioning, condition, preference_model)
        self.seed_generator = keras.random.SeedGenerator(seed)

    # --- what the conditioning decides -----------------------------------------------------

    @property
    def condition(self) -> str:
        """The kind of condition, e.g. ``"attributes"``, ``"text"`` or ``"user"``."""
        return self.conditioning.kind

    @property
    def conditioner(self) -> keras.Model:
        """The conditioning's network (raw condition inputs → conditioning vector)."""
        return self.conditioning.network

    @property
    def preference_model(self):
        """The user conditioning's `AttributePreferenceModel` (None for other kinds)."""
        return getattr(self.conditioning, "preference_model", None)

    @property
    def attributes(self) -> dict:
        return self.conditioning.attributes

    def feature_keys(self) -> list[str]:
        """The batch features training and evaluation read (other keys are dropped)."""
        keys = ["image"] + [label_key(name) for name in self.attributes]
        return keys + [k for k in self.conditioning.batch_keys() if k not in keys]

    def _select_features(self, data):
        """Drops the batch features the model does not read (e.g. audio, or text under XLA).

        Like keras-hub tasks, which map their preprocessor over a `tf.data.Dataset`
        passed to `fit`: fewer host-to-device copies, and no `tf.string` tensors
        enter an XLA-compiled step unless the model needs them.
        """
        keys = self.feature_keys()
        if isinstance(data, tf.data.Dataset) and isinstance(data.element_spec, dict):
            present = [k for k in keys if k in data.element_spec]
            return data.map(
                lambda batch: {k: batch[k] for k in present}, num_parallel_calls=tf.data.AUTOTUNE
            )
        if isinstance(data, dict):
            return {k: data[k] for k in keys if k in data}
        return data

    def fit(self, x=None, y=None, *args, **kwargs):
        if kwargs.get("validation_data") is not None:
            kwargs["validation_data"] = self._select_features(kwargs["validation_data"])
        return super().fit(self._select_features(x), y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        return super().evaluate(self._select_features(x), y, *args, **kwargs)

    def _resolve_jit_compile(self, jit_compile):
        """``"auto"`` → no XLA when the conditioning cannot run in it (tensorflow-text ops)."""
        if jit_compile == "auto" and not self.conditioning.jit_compatible:
            return False
        return jit_compile

    # --- training-time conditioning -------------------------------------------------------

    def _labels(self, data):
        return {name: ops.cast(data[label_key(name)], "int32") for name in self.attributes}

    def _condition_variables(self):
        """The conditioning's variables trained with the generator (or decoder)."""
        return list(self.conditioner.trainable_variables) + list(
            self.conditioning.auxiliary_variables()
        )

    def _build_own_optimizer(self, policy_name):
        """The optimizer of the conditioning's own part (e.g. the user preference head)."""
        self.own_optimizer = None
        variables = self.conditioning.own_variables()
        if variables:
            optimizer = keras.optimizers.Adam(self.conditioning.own_learning_rate)
            optimizer = wrap_for_policy(optimizer, policy_name)
            optimizer.build(variables)
            self.own_optimizer = optimizer

    def _train_own(self, data, labels):
        """One update of the conditioning's own part; its per-example loss (or None)."""
        if self.own_optimizer is None:
            return None
        variables = self.conditioning.own_variables()
        with tf.GradientTape() as tape:
            per_example = self.conditioning.own_loss(data, labels)
            loss = tf.nn.compute_average_loss(per_example)
            scaled = self.own_optimizer.scale_loss(loss)
        self.own_optimizer.apply(tape.gradient(scaled, variables), variables)
        return per_example

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

    def preferred_attributes(self, history, num=1, seed=None, temperature=1.0):
        """Samples the attributes users prefer (user-conditioned models).

        Returns ``{attribute: int32 array [users, num]}``; see
        `UserConditioning.preferred_attributes`.
        """
        if not hasattr(self.conditioning, "preferred_attributes"):
            raise ValueError(
                "preferred_attributes needs a user-conditioned model (condition='user'). "
                f"Received: condition={self.condition!r}"
            )
        return self.conditioning.preferred_attributes(history, num, self._seed(seed), temperature)

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

    def _seed(self, seed):
        if seed is None:
            return self.seed_generator
        if isinstance(seed, keras.random.SeedGenerator):
            return seed
        return keras.random.SeedGenerator(int(seed))
