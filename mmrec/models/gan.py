"""`ConditionalGAN`: a conditional DCGAN with projection + auxiliary-classifier discriminator.

Where it sits in the data flow: it trains with ``model.fit`` on
``data.generation_pairs(split)`` batches (``history``, the chosen item's uint8
``image``, ``text`` and ``label_<attribute>``s) and generates images for
attributes, a description, or a user (through a frozen user encoder, see
`mmrec.models.conditioning`). The networks live in `mmrec.models.image_networks`.

The training step follows the Keras guide "Customizing what happens in fit()
with TensorFlow": one discriminator update then one generator update per
batch, each with its own optimizer (each wrapped in a `LossScaleOptimizer`
under ``mixed_float16``), losses averaged over the *global* batch
(``tf.nn.compute_average_loss``, correct under ``tf.distribute``), and an
exponential moving average (EMA) of the generator's and the conditioner's
weights that `generate` samples from.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from mmrec.layers.dtypes import serialize_policy
from mmrec.models.attributes import label_key, num_classes
from mmrec.models.conditioning import conditioning_from_dataset
from mmrec.models.image_generation import ConditionalImageModel
from mmrec.models.image_networks import (
    Discriminator,
    Generator,
    ScaleImages,
    check_generator_network,
)
from mmrec.models.losses import per_example_cross_entropy
from mmrec.models.training_utils import (
    clone_network,
    mean_over_global_batch,
    num_replicas,
    wrap_for_policy,
)

GAN_LOSSES = ("bce", "hinge")


@keras.saving.register_keras_serializable(package="mmrec")
class ConditionalGAN(ConditionalImageModel):
    """A conditional GAN for item images: attributes, a description or a user → images.

    Generator: noise + a conditioning vector → image (DCGAN-style, conditional
    batch normalisation). Discriminator: projection on the item's attribute
    labels plus auxiliary classifier heads (trained on real images only); the
    generator is asked to fool the first and to have its images classified as
    requested by the second. `generate` samples from an EMA of the generator's
    (and the conditioner's) weights.

    What it is conditioned on is a conditioning object (`mmrec.models.conditioning`):
    ``AttributeConditioning`` (attribute ids → learned embeddings),
    ``TextConditioning`` (a description → WordPiece → small transformer, plus
    auxiliary heads that make the text embedding predict the attributes it
    names) or ``UserConditioning`` (a history → a *frozen* user encoder → the
    attribute distributions the user prefers; sampled attributes feed the
    attribute network, which trains on the chosen items' own labels).
    ``from_dataset(data, condition="user", user_encoder=...)`` picks one by name.

    Args:
        generator: a `Generator`, or any generator network that passes
            `check_generator_network` (docs/extending.md).
        discriminator: a `Discriminator` (its ``attributes`` are the model's).
        conditioning: a `Conditioning` whose ``condition_dim`` is the generator's
            (a bare conditioner network is wrapped; see ``condition``).
        ema_decay: decay of the generator's EMA (warmed up as
            ``min(ema_decay, (1 + step) / (10 + step))``); 0 disables the EMA.
        seed: seed of the model's `keras.random.SeedGenerator`.
        conditioner, condition, preference_model: the older way to pass the
            conditioning (a network, the kind's name, the user preference model);
            still accepted.

    Example:

    >>> from mmrec.models import Discriminator, Generator
    >>> from mmrec.models.conditioning import AttributeConditioning
    >>> attributes = {"shape": 8, "colour": 8}
    >>> gan = ConditionalGAN(
    ...     generator=Generator(16, condition_dim=16, latent_dim=8, filters=(16, 8, 4)),
    ...     discriminator=Discriminator(16, attributes, filters=(8, 16), feature_dim=16),
    ...     conditioning=AttributeConditioning.from_attributes(attributes, embedding_dim=8))
    >>> gan.compile()
    >>> batch = {"image": np.zeros((4, 16, 16, 3), "uint8"),
    ...          "label_shape": np.arange(4), "label_colour": np.arange(4)}
    >>> history = gan.fit(tf.data.Dataset.from_tensors(batch).repeat(2), verbose=0)
    >>> gan.generate({"shape": 3, "colour": 1}, num=2, seed=0).shape
    (2, 16, 16, 3)
    """

    def __init__(
        self,
        generator,
        discriminator,
        conditioning=None,
        ema_decay=0.999,
        seed=None,
        conditioner=None,
        condition=None,
        preference_model=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_generator_network(generator, "generator")
        if not isinstance(discriminator, Discriminator):
            raise ValueError(f"Expected a Discriminator. Received: discriminator={discriminator!r}")
        self._init_conditioning(
            conditioning if conditioning is not None else conditioner,
            seed,
            condition,
            preference_model,
        )
        if self.conditioning.condition_dim != generator.condition_dim:
            raise ValueError(
                "Expected the conditioning's output width to equal the generator's "
                f"condition_dim. Received: {self.conditioning.condition_dim} != "
                f"{generator.condition_dim}"
            )
        if generator.image_size != discriminator.image_size:
            raise ValueError(
                "Expected the generator and the discriminator to have one image_size. "
                f"Received: {generator.image_size} and {discriminator.image_size}"
            )
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"Expected 0 <= ema_decay < 1. Received: ema_decay={ema_decay!r}")
        self.generator = generator
        self.discriminator = discriminator
        if num_classes(self.attributes) != num_classes(discriminator.attributes):
            raise ValueError(
                "Expected the conditioning and the discriminator to have the same attributes. "
                f"Received: {num_classes(self.attributes)} and "
                f"{num_classes(discriminator.attributes)}"
            )
        self.scale_images = ScaleImages(name="scale_images")
        self.ema_decay = ema_decay
        self.seed = seed
        if ema_decay:
            self.ema_generator = clone_network(generator, "ema_generator")
            self.ema_conditioner = clone_network(self.conditioner, "ema_conditioner")
        else:
            self.ema_generator, self.ema_conditioner = generator, self.conditioner
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.real_accuracy = keras.metrics.Mean(name="real_accuracy")
        self.fake_accuracy = keras.metrics.Mean(name="fake_accuracy")
        self.condition_loss_tracker = keras.metrics.Mean(name="condition_loss")
        self.built = True

    @property
    def latent_dim(self) -> int:
        return self.generator.latent_dim

    @property
    def metrics(self):
        metrics = [
            self.d_loss_tracker,
            self.g_loss_tracker,
            self.real_accuracy,
            self.fake_accuracy,
        ]
        if self.conditioning.reports_condition_loss:
            metrics.append(self.condition_loss_tracker)
        return metrics

    # --- compile --------------------------------------------------------------------------

    def compile(
        self,
        d_optimizer=None,
        g_optimizer=None,
        loss="bce",
        ac_weight=1.0,
        r1_weight=0.0,
        augment=True,
        jit_compile="auto",
        **kwargs,
    ):
        """Configures training; with no arguments, the defaults that train well.

        Args:
            d_optimizer: the discriminator's optimizer; default Adam(4e-4, beta_1=0.5).
                Twice the generator's rate (the two time-scale update rule, Heusel et
                al. 2017): the auxiliary classifier heads learn the attributes of real
                images faster, and the generator can only be as faithful to a
                condition as they are (measured in docs/generation.md).
            g_optimizer: the generator's (and conditioner's) optimizer; default
                Adam(2e-4, beta_1=0.5).
            loss: ``"bce"`` (the non-saturating GAN loss) or ``"hinge"``.
            ac_weight: weight of the auxiliary classifier losses.
            r1_weight: weight γ of the R1 penalty ``γ/2·‖∇_x D(x)‖²`` on real
                images (0 disables it; it costs a second backward pass).
            augment: differentiable augmentation of every image the discriminator
                sees, real and fake (random horizontal flip and a shift of up to
                1/8 of the side; Zhao et al. 2020, "Differentiable augmentation
                for data-efficient GAN training"). With a catalogue of a few
                thousand images the discriminator otherwise memorises them, and
                its classifier heads become easy to fool with non-robust features.
            jit_compile: ``True`` compiles the step with XLA; ``"auto"`` lets Keras
                decide (XLA is skipped for a conditioning that cannot run in it,
                e.g. text: tensorflow-text ops have no XLA kernels).
            **kwargs: passed to `keras.Model.compile` (e.g. ``steps_per_execution``).
        """
        if loss not in GAN_LOSSES:
            raise ValueError(f"Expected loss to be one of {GAN_LOSSES}. Received: loss={loss!r}")
        for name, value in (("ac_weight", ac_weight), ("r1_weight", r1_weight)):
            if not value >= 0:
                raise ValueError(f"Expected {name} >= 0. Received: {name}={value!r}")
        policy = self.generator.dtype_policy.name
        self.d_optimizer = wrap_for_policy(
            d_optimizer or keras.optimizers.Adam(4e-4, beta_1=0.5), policy
        )
        self.g_optimizer = wrap_for_policy(
            g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5), policy
        )
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self._g_variables())
        self._build_own_optimizer(policy)
        self.gan_loss = loss
        self.ac_weight = float(ac_weight)
        self.r1_weight = float(r1_weight)
        self.augment = bool(augment)
        super().compile(
            optimizer=None, jit_compile=self._resolve_jit_compile(jit_compile), **kwargs
        )

    def _g_variables(self):
        return list(self.generator.trainable_variables) + self._condition_variables()

    # --- losses ---------------------------------------------------------------------------

    def _d_adversarial(self, real_logit, fake_logit):
        if self.gan_loss == "hinge":
            return ops.relu(1.0 - real_logit) + ops.relu(1.0 + fake_logit)
        return ops.softplus(-real_logit) + ops.softplus(fake_logit)

    def _g_adversarial(self, fake_logit):
        if self.gan_loss == "hinge":
            return -fake_logit
        return ops.softplus(-fake_logit)

    def _accuracy(self, outputs, labels):
        hits = [
            ops.mean(ops.cast(ops.equal(ops.argmax(outputs[n], axis=-1), labels[n]), "float32"))
            for n in self.attributes
        ]
        return ops.mean(ops.stack(hits))

    def _augment(self, images):
        """Random horizontal flip + shift by up to 1/8 of the side (edges repeated), per image.

        Differentiable (a gather), so the generator's gradients pass through it.
        """
        if not self.augment:
            return images
        batch, size = ops.shape(images)[0], images.shape[1]
        shift = max(1, size // 8)
        offsets = self._randint((batch, 2), -shift, shift + 1)
        flip = self._uniform((batch, 1)) < 0.5
        positions = ops.arange(size, dtype="int32")[None, :]
        columns = ops.where(flip, size - 1 - positions, positions)
        rows = ops.clip(positions + offsets[:, :1], 0, size - 1)
        columns = ops.clip(columns + offsets[:, 1:], 0, size - 1)
        images = tf.gather(images, rows, axis=1, batch_dims=1)
        return tf.gather(images, columns, axis=2, batch_dims=1)

    # --- steps ----------------------------------------------------------------------------

    def train_step(self, data):
        real = self.scale_images(data["image"])
        labels = self._labels(data)
        condition_inputs = self.conditioning.training_inputs(data, labels)
        batch = ops.shape(real)[0]
        label_inputs = {label_key(n): v for n, v in labels.items()}

        # Discriminator: real and fake images share one batch (no batch norm in D).
        noise = self._normal((batch, self.latent_dim))
        condition = self.conditioner(condition_inputs, training=True)
        fake = self.generator({"noise": noise, "condition": condition}, training=True)
        images = ops.concatenate([real, ops.stop_gradient(fake)], axis=0)
        both = {label_key(n): ops.concatenate([v, v], axis=0) for n, v in labels.items()}
        with tf.GradientTape() as tape:
            if self.r1_weight:
                with tf.GradientTape() as r1_tape:
                    r1_tape.watch(images)
                    outputs = self.discriminator(
                        {"image": self._augment(images), **both}, training=True
                    )
                    real_sum = ops.sum(outputs["logit"][:batch])
                gradients = ops.cast(r1_tape.gradient(real_sum, images)[:batch], "float32")
                r1 = 0.5 * self.r1_weight * ops.sum(ops.square(gradients), axis=(1, 2, 3))
            else:
                outputs = self.discriminator(
                    {"image": self._augment(images), **both}, training=True
                )
                r1 = 0.0
            logits = outputs["logit"][:, 0]
            per_example = self._d_adversarial(logits[:batch], logits[batch:]) + r1
            real_classes = {n: outputs[n][:batch] for n in self.attributes}
            per_example += self.ac_weight * per_example_cross_entropy(real_classes, labels)
            d_loss = mean_over_global_batch(per_example)
            scaled = self.d_optimizer.scale_loss(d_loss)
        d_variables = self.discriminator.trainable_variables
        self.d_optimizer.apply(tape.gradient(scaled, d_variables), d_variables)

        # Generator (and conditioner): fool D and be classified as requested.
        noise = self._normal((batch, self.latent_dim))
        g_variables = self._g_variables()
        with tf.GradientTape() as tape:
            condition = self.conditioner(condition_inputs, training=True)
            fake = self.generator({"noise": noise, "condition": condition}, training=True)
            fake_outputs = self.discriminator(
                {"image": self._augment(fake), **label_inputs}, training=True
            )
            per_example = self._g_adversarial(fake_outputs["logit"][:, 0])
            fake_classes = {n: fake_outputs[n] for n in self.attributes}
            per_example += self.ac_weight * per_example_cross_entropy(fake_classes, labels)
            condition_loss = self.conditioning.auxiliary_loss(condition, labels)
            if condition_loss is not None:
                per_example += condition_loss
            g_loss = mean_over_global_batch(per_example)
            scaled = self.g_optimizer.scale_loss(g_loss)
        self.g_optimizer.apply(tape.gradient(scaled, g_variables), g_variables)
        self._update_ema()
        own_loss = self._train_own(data, labels)
        if own_loss is not None:
            condition_loss = own_loss

        replicas = num_replicas()
        self.d_loss_tracker.update_state(d_loss * replicas)
        self.g_loss_tracker.update_state(g_loss * replicas)
        self.real_accuracy.update_state(self._accuracy(real_classes, labels))
        self.fake_accuracy.update_state(self._accuracy(fake_classes, labels))
        if condition_loss is not None:
            self.condition_loss_tracker.update_state(ops.mean(condition_loss))
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """The same losses on held-out pairs, without updates (fakes from the EMA generator)."""
        real = self.scale_images(data["image"])
        labels = self._labels(data)
        condition_inputs = self.conditioning.training_inputs(data, labels)
        batch = ops.shape(real)[0]
        label_inputs = {label_key(n): v for n, v in labels.items()}
        noise = self._normal((batch, self.latent_dim))
        fake = self.decode(noise, condition_inputs)
        real_outputs = self.discriminator({"image": real, **label_inputs}, training=False)
        fake_outputs = self.discriminator({"image": fake, **label_inputs}, training=False)
        real_classes = {n: real_outputs[n] for n in self.attributes}
        fake_classes = {n: fake_outputs[n] for n in self.attributes}
        d_per_example = self._d_adversarial(
            real_outputs["logit"][:, 0], fake_outputs["logit"][:, 0]
        )
        d_per_example += self.ac_weight * per_example_cross_entropy(real_classes, labels)
        g_per_example = self._g_adversarial(fake_outputs["logit"][:, 0])
        g_per_example += self.ac_weight * per_example_cross_entropy(fake_classes, labels)
        condition = self.conditioner(condition_inputs, training=False)
        condition_loss = self.conditioning.auxiliary_loss(condition, labels)
        if condition_loss is not None:
            g_per_example += condition_loss
        own_loss = self.conditioning.own_loss(data, labels)
        if own_loss is not None:
            condition_loss = own_loss
        if condition_loss is not None:
            self.condition_loss_tracker.update_state(ops.mean(condition_loss))
        replicas = num_replicas()
        self.d_loss_tracker.update_state(mean_over_global_batch(d_per_example) * replicas)
        self.g_loss_tracker.update_state(mean_over_global_batch(g_per_example) * replicas)
        self.real_accuracy.update_state(self._accuracy(real_classes, labels))
        self.fake_accuracy.update_state(self._accuracy(fake_classes, labels))
        return {m.name: m.result() for m in self.metrics}

    def _update_ema(self):
        if not self.ema_decay:
            return
        step = ops.cast(self.g_optimizer.iterations, "float32")
        decay = ops.minimum(self.ema_decay, (1.0 + step) / (10.0 + step))
        pairs = [(self.generator, self.ema_generator), (self.conditioner, self.ema_conditioner)]
        for online, ema in pairs:
            for source, target in zip(online.weights, ema.weights):
                if not keras.backend.is_float_dtype(target.dtype):
                    continue
                value = ops.cast(source, target.dtype)
                target.assign(
                    target * ops.cast(decay, target.dtype)
                    + value * ops.cast(1.0 - decay, target.dtype)
                )

    # --- generation -----------------------------------------------------------------------

    def decode(self, noise, network_inputs):
        condition = self.ema_conditioner(network_inputs, training=False)
        return self.ema_generator({"noise": noise, "condition": condition}, training=False)

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_dataset(
        cls,
        data,
        condition="attributes",
        user_encoder=None,
        latent_dim=64,
        generator_filters=None,
        discriminator_filters=None,
        dtype=None,
        **kwargs,
    ):
        """Builds a ConditionalGAN for a dataset's image size, attributes and vocabulary.

        Args:
            data: a `mmrec.data.MultimodalDataset` (from `mmrec.data.load`).
            condition: a registered kind (``"attributes"``, ``"text"``, ``"user"``) or
                a `Conditioning` object.
            user_encoder: for ``"user"``: ``recommender.build_user_encoder()`` (any
                `keras.Model` ``{"history": int32 [B, L]}`` → ``[B, D]``); frozen.
            latent_dim: width of the noise vector.
            generator_filters: `Generator` widths (``None``: defaults for the image size).
            discriminator_filters: `Discriminator` widths (``None``: defaults).
            dtype: the networks' dtype policy (``None``: the global policy).
            **kwargs: passed to the constructor (``ema_decay``, ``seed``, ``name``).
        """
        conditioning = conditioning_from_dataset(
            data, condition, user_encoder=user_encoder, dtype=dtype
        )
        image_size = data.metadata.image_size
        generator = Generator(
            image_size,
            condition_dim=conditioning.condition_dim,
            latent_dim=latent_dim,
            filters=generator_filters,
            dtype=dtype,
            name="generator",
        )
        discriminator = Discriminator(
            image_size,
            conditioning.attributes,
            filters=discriminator_filters,
            dtype=dtype,
            name="discriminator",
        )
        return cls(generator, discriminator, conditioning, dtype=dtype, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "conditioning": keras.saving.serialize_keras_object(self.conditioning),
            "ema_decay": self.ema_decay,
            "seed": self.seed,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in (
            "generator",
            "discriminator",
            "conditioning",
            "conditioner",
            "preference_model",
        ):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
