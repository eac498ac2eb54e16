"""`ConditionalVAE`: a conditional VAE with a β-weighted KL term and exact ELBO reporting.

Where it sits in the data flow: like `ConditionalGAN`, it trains with
``model.fit`` on ``data.generation_pairs(split)`` and generates for attributes,
a description or a user; ``model.evaluate`` on held-out pairs reports the
reconstruction term, the KL term and the negative ELBO in nats per image.

Likelihood: each sub-pixel is an 8-bit value; ``p(x | z)`` is a *discretised
logistic* (as in PixelCNN++, one component) centred on the decoder's output with
a learned per-channel scale. Its probabilities are exact bin masses, so the
negative ELBO is an upper bound on ``-log p(x)`` in nats per (discrete) image,
comparable with other discrete likelihoods (divide by ``H·W·3·ln 2`` for bits
per dimension). The learned scale calibrates the reconstruction/KL trade-off
(Rybkin et al. 2021, "Simple and effective VAE training with calibrated decoders").
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from mmrec.layers.dtypes import serialize_policy
from mmrec.models.conditioning import conditioning_from_dataset
from mmrec.models.image_generation import ConditionalImageModel
from mmrec.models.image_networks import (
    Generator,
    ScaleImages,
    VAEEncoder,
    check_generator_network,
)
from mmrec.models.training_utils import mean_over_global_batch, num_replicas

_BIN = 1.0 / 255.0  # half the width of one 8-bit bin in [-1, 1]


def discretized_logistic_log_likelihood(x, mean, log_scale):
    """``log P(x)`` per sub-pixel for 8-bit images scaled to [-1, 1] (float32, same shape).

    The probability of the bin ``[x − 1/255, x + 1/255]`` under a logistic with
    the given mean and log-scale; the edge bins take the tails. A density fallback
    keeps very sharp distributions finite.
    """
    x, mean = ops.cast(x, "float32"), ops.cast(mean, "float32")
    log_scale = ops.cast(log_scale, "float32")
    centred = x - mean
    inverse_scale = ops.exp(-log_scale)
    plus = inverse_scale * (centred + _BIN)
    minus = inverse_scale * (centred - _BIN)
    log_cdf_plus = plus - ops.softplus(plus)  # log sigmoid(plus), for the x = -1 bin
    log_one_minus_cdf_minus = -ops.softplus(minus)  # for the x = +1 bin
    mass = ops.sigmoid(plus) - ops.sigmoid(minus)
    middle = inverse_scale * centred
    log_density = middle - log_scale - 2.0 * ops.softplus(middle) + math.log(2 * _BIN)
    log_mass = ops.where(mass > 1e-5, ops.log(ops.maximum(mass, 1e-12)), log_density)
    return ops.where(
        x < -0.999, log_cdf_plus, ops.where(x > 0.999, log_one_minus_cdf_minus, log_mass)
    )


@keras.saving.register_keras_serializable(package="mmrec")
class ConditionalVAE(ConditionalImageModel):
    """A conditional VAE for item images: attributes, a description or a user → images.

    Encoder ``q(z | x, c)`` (`VAEEncoder`), decoder ``p(x | z, c)`` (a `Generator`:
    its tanh output is the mean of a discretised logistic with learned
    per-channel scale), prior ``N(0, I)``. Training minimises
    ``reconstruction + β·KL`` per image (plus, for text and users, the
    conditioning path's auxiliary loss, as in `ConditionalGAN`); the
    reparameterisation noise comes from a `keras.random.SeedGenerator`.
    ``evaluate`` reports ``reconstruction`` (``−E_q log p(x|z,c)``), ``kl`` and
    ``neg_elbo`` (their sum with β = 1), in nats per image; ``loss`` is the
    training objective (β-weighted, plus the text path's auxiliary loss), and
    text and user models also report ``condition_loss``. `generate` decodes
    ``z ~ N(0, I)`` and returns the decoder's mean image.

    Args:
        encoder: a `VAEEncoder`.
        decoder: a `Generator` (or any network that passes `check_generator_network`)
            with the encoder's ``latent_dim`` and ``image_size``.
        conditioning: a `Conditioning` (`mmrec.models.conditioning`) whose
            ``condition_dim`` is the encoder's and the decoder's.
        beta: weight of the KL term in the training loss.
        seed: seed of the model's `keras.random.SeedGenerator`.
        conditioner, condition, preference_model: the older way to pass the
            conditioning, as in `ConditionalGAN`; still accepted.

    Example:

    >>> from mmrec.models.conditioning import AttributeConditioning
    >>> attributes = {"shape": 8, "colour": 8}
    >>> vae = ConditionalVAE(
    ...     encoder=VAEEncoder(16, condition_dim=16, latent_dim=8, filters=(8, 16)),
    ...     decoder=Generator(16, condition_dim=16, latent_dim=8, filters=(16, 8, 4)),
    ...     conditioning=AttributeConditioning.from_attributes(attributes, embedding_dim=8))
    >>> vae.compile()
    >>> batch = {"image": np.zeros((4, 16, 16, 3), "uint8"),
    ...          "label_shape": np.arange(4), "label_colour": np.arange(4)}
    >>> history = vae.fit(tf.data.Dataset.from_tensors(batch).repeat(2), verbose=0)
    >>> sorted(vae.evaluate(tf.data.Dataset.from_tensors(batch), return_dict=True, verbose=0))
    ['kl', 'loss', 'neg_elbo', 'reconstruction']
    """

    def __init__(
        self,
        encoder,
        decoder,
        conditioning=None,
        beta=1.0,
        seed=None,
        conditioner=None,
        condition=None,
        preference_model=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(encoder, VAEEncoder):
            raise ValueError(f"Expected a VAEEncoder. Received: encoder={encoder!r}")
        check_generator_network(decoder, "decoder")
        if encoder.latent_dim != decoder.latent_dim or encoder.image_size != decoder.image_size:
            raise ValueError(
                "Expected the encoder and decoder to share latent_dim and image_size. Received: "
                f"latent_dim {encoder.latent_dim} / {decoder.latent_dim}, image_size "
                f"{encoder.image_size} / {decoder.image_size}"
            )
        self._init_conditioning(
            conditioning if conditioning is not None else conditioner,
            seed,
            condition,
            preference_model,
        )
        width = self.conditioning.condition_dim
        if not width == encoder.condition_dim == decoder.condition_dim:
            raise ValueError(
                "Expected the conditioning's output width to equal the encoder's and the "
                f"decoder's condition_dim. Received: {width}, "
                f"{encoder.condition_dim}, {decoder.condition_dim}"
            )
        if not beta >= 0:
            raise ValueError(f"Expected beta >= 0. Received: beta={beta!r}")
        self.encoder = encoder
        self.decoder = decoder
        self.scale_images = ScaleImages(name="scale_images")
        self.beta = float(beta)
        self.seed = seed
        # Per-channel log-scale of the discretised logistic (a calibrated decoder).
        self.log_scale = self.add_weight(
            shape=(3,),
            initializer=keras.initializers.Constant(math.log(0.1)),
            name="log_scale",
            dtype="float32",
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.neg_elbo_tracker = keras.metrics.Mean(name="neg_elbo")
        self.condition_loss_tracker = keras.metrics.Mean(name="condition_loss")
        self.built = True

    @property
    def latent_dim(self) -> int:
        return self.decoder.latent_dim

    @property
    def metrics(self):
        metrics = [
            self.loss_tracker,
            self.reconstruction_tracker,
            self.kl_tracker,
            self.neg_elbo_tracker,
        ]
        if self.conditioning.reports_condition_loss:
            metrics.append(self.condition_loss_tracker)
        return metrics

    def compile(self, optimizer=None, jit_compile="auto", **kwargs):
        """Adam(1e-3) by default (wrapped in a `LossScaleOptimizer` under ``mixed_float16``)."""
        optimizer = optimizer or keras.optimizers.Adam(1e-3)
        self._compile_one_optimizer(optimizer, self._variables(), jit_compile, **kwargs)

    def _variables(self):
        return (
            list(self.encoder.trainable_variables)
            + list(self.decoder.trainable_variables)
            + self._condition_variables()
            + [self.log_scale]
        )

    def _terms(self, data, training):
        """Per-example (reconstruction, KL, conditioning loss or None)."""
        real = self.scale_images(data["image"])
        labels = self._labels(data)
        condition_inputs = self.conditioning.training_inputs(data, labels)
        condition = self.conditioner(condition_inputs, training=training)
        z_mean, z_log_var = self.encoder({"image": real, "condition": condition}, training=training)
        z_log_var = ops.clip(z_log_var, -12.0, 8.0)
        epsilon = self._normal(ops.shape(z_mean))
        z = z_mean + ops.exp(0.5 * z_log_var) * epsilon
        mean = self.decoder({"noise": z, "condition": condition}, training=training)
        log_likelihood = discretized_logistic_log_likelihood(real, mean, self.log_scale)
        reconstruction = -ops.sum(log_likelihood, axis=(1, 2, 3))
        kl = 0.5 * ops.sum(ops.exp(z_log_var) + ops.square(z_mean) - 1.0 - z_log_var, axis=-1)
        condition_loss = self.conditioning.auxiliary_loss(condition, labels)
        return reconstruction, kl, condition_loss

    def _track(self, loss, reconstruction, kl, condition_loss):
        replicas = num_replicas()
        if condition_loss is not None:
            self.condition_loss_tracker.update_state(ops.mean(condition_loss))
        self.loss_tracker.update_state(loss * replicas)
        self.reconstruction_tracker.update_state(ops.mean(reconstruction))
        self.kl_tracker.update_state(ops.mean(kl))
        self.neg_elbo_tracker.update_state(ops.mean(reconstruction + kl))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        variables = self._variables()
        with tf.GradientTape() as tape:
            reconstruction, kl, condition_loss = self._terms(data, training=True)
            per_example = reconstruction + self.beta * kl
            if condition_loss is not None:
                per_example += condition_loss
            loss = mean_over_global_batch(per_example)
            scaled = self.optimizer.scale_loss(loss)
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        own_loss = self._train_own(data, self._labels(data))
        if own_loss is not None:
            condition_loss = own_loss
        return self._track(loss, reconstruction, kl, condition_loss)

    def test_step(self, data):
        reconstruction, kl, condition_loss = self._terms(data, training=False)
        per_example = reconstruction + self.beta * kl
        if condition_loss is not None:
            per_example += condition_loss
        own_loss = self.conditioning.own_loss(data, self._labels(data))
        if own_loss is not None:
            condition_loss = own_loss
        loss = mean_over_global_batch(per_example)
        return self._track(loss, reconstruction, kl, condition_loss)

    def decode(self, noise, network_inputs):
        condition = self.conditioner(network_inputs, training=False)
        return self.decoder({"noise": noise, "condition": condition}, training=False)

    @classmethod
    def from_dataset(
        cls,
        data,
        condition="attributes",
        user_encoder=None,
        latent_dim=64,
        decoder_filters=None,
        encoder_filters=None,
        dtype=None,
        **kwargs,
    ):
        """Builds a ConditionalVAE for a dataset's image size, attributes and vocabulary.

        Arguments as in `ConditionalGAN.from_dataset`; ``kwargs`` (``beta``,
        ``seed``, ``name``) go to the constructor.
        """
        conditioning = conditioning_from_dataset(
            data, condition, user_encoder=user_encoder, dtype=dtype
        )
        image_size = data.metadata.image_size
        encoder = VAEEncoder(
            image_size,
            condition_dim=conditioning.condition_dim,
            latent_dim=latent_dim,
            filters=encoder_filters,
            dtype=dtype,
            name="encoder",
        )
        decoder = Generator(
            image_size,
            condition_dim=conditioning.condition_dim,
            latent_dim=latent_dim,
            filters=decoder_filters,
            dtype=dtype,
            name="decoder",
        )
        return cls(encoder, decoder, conditioning, dtype=dtype, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "conditioning": keras.saving.serialize_keras_object(self.conditioning),
            "beta": self.beta,
            "seed": self.seed,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "decoder", "conditioning", "conditioner", "preference_model"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
