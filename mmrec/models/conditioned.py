"""What every conditional generator shares: its conditioning, batches, own optimizer, seeds.

The image generators (`ConditionalGAN`, `ConditionalVAE`, through
`mmrec.models.image_generation.ConditionalImageModel`) and the text generator
(`ConditionalTextGenerator`) hold a `Conditioning` (what the output is asked to
show) and train on batches of ``generation_pairs``. What depends on the kind of
condition is asked of the conditioning; what depends on the output (an image, a
text) is the subclass's.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from mmrec.models.attributes import label_key
from mmrec.models.conditioning import Conditioning
from mmrec.models.training_utils import wrap_for_policy


class ConditionedGenerator(keras.Model):
    """Base of the conditional generators. Not used directly.

    A subclass sets `content_key` (the batch feature it generates: ``"image"``,
    ``"text"``) and calls `_set_conditioning` in its ``__init__``.
    """

    content_key = None

    def _set_conditioning(self, conditioning, seed):
        if not isinstance(conditioning, Conditioning):
            raise ValueError(
                "Expected a Conditioning (e.g. mmrec.models.conditioning.AttributeConditioning)."
                f" Received: {conditioning!r}"
            )
        self.conditioning = conditioning
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
        keys = [self.content_key] + [label_key(name) for name in self.attributes]
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

    # --- compiling ------------------------------------------------------------------------

    def _compile_one_optimizer(self, optimizer, variables, jit_compile, **kwargs):
        """`keras.Model.compile` with one ``optimizer`` (wrapped in a `LossScaleOptimizer`
        under ``mixed_float16``) built over ``variables``, and the conditioning's own one."""
        policy = self.decoder.dtype_policy.name
        optimizer = wrap_for_policy(optimizer, policy)
        super().compile(
            optimizer=optimizer, jit_compile=self._resolve_jit_compile(jit_compile), **kwargs
        )
        self.optimizer.build(variables)
        self._build_own_optimizer(policy)

    def get_compile_config(self):
        # Optimizer states are not saved: a loaded model generates, and trains again
        # after `compile()`.
        return {}

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

    def _seed(self, seed):
        if seed is None:
            return self.seed_generator
        if isinstance(seed, keras.random.SeedGenerator):
            return seed
        return keras.random.SeedGenerator(int(seed))
