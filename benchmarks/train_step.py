"""Cost of ConditionalGAN's train step vs. a plain keras.io DCGAN-style step on the same networks.

    nice python benchmarks/train_step.py --data tf_records/shapes \
        --out benchmarks/results/train_step.json

Both steps train the *same* generator, discriminator and conditioner (built by
`ConditionalGAN.from_dataset`, 32×32 shapes) on the same in-memory batch:

* ``plain``: the train step of the keras.io "DCGAN to generate face images"
  example (Keras 3): generate, concatenate with the (pre-scaled) real images,
  one BCE discriminator update with noisy labels, one BCE generator update
  with "misleading" labels — conditioned on the labels because the networks are;
* ``ours``: `ConditionalGAN.train_step` with its defaults — uint8 scaling in the
  step, per-global-batch losses, auxiliary-classifier losses, differentiable
  augmentation, loss scaling hooks, the EMA update and four metric trackers;
* ``ours (no aug, no EMA)``: the same with ``augment=False`` and ``ema_decay=0``.

Each configuration runs with and without XLA (``jit_compile``). Timings are
medians of interleaved repeats (the machine is shared), and the ratio
ours / plain comes from the same run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import print_table, write_json  # noqa: E402
from keras import ops  # noqa: E402

import mmrec  # noqa: E402
from mmrec.models import ConditionalGAN  # noqa: E402


class PlainDCGAN(keras.Model):
    """The keras.io DCGAN train step (Keras 3 version), on conditional networks."""

    def __init__(self, generator, discriminator, conditioner, attributes, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.conditioner = conditioner
        self.attributes = list(attributes)
        self.latent_dim = generator.latent_dim
        self.seed_generator = keras.random.SeedGenerator(1337)
        self.built = True

    def compile(self, d_optimizer, g_optimizer, loss_fn, jit_compile=False):
        super().compile(optimizer=None, jit_compile=jit_compile)
        self.d_optimizer = d_optimizer
        self.g_optimizer = g_optimizer
        self.loss_fn = loss_fn
        self.d_loss_metric = keras.metrics.Mean(name="d_loss")
        self.g_loss_metric = keras.metrics.Mean(name="g_loss")

    @property
    def metrics(self):
        return [self.d_loss_metric, self.g_loss_metric]

    def train_step(self, data):
        real_images = data["image"]  # scaled to [-1, 1] in the input pipeline, as on keras.io
        labels = {f"label_{a}": data[f"label_{a}"] for a in self.attributes}
        batch_size = ops.shape(real_images)[0]
        random_latent_vectors = keras.random.normal(
            shape=(batch_size, self.latent_dim), seed=self.seed_generator
        )
        condition = self.conditioner(labels, training=True)
        generated_images = self.generator(
            {"noise": random_latent_vectors, "condition": condition}, training=True
        )
        combined_images = ops.concatenate([generated_images, real_images], axis=0)
        both = {k: ops.concatenate([v, v], axis=0) for k, v in labels.items()}
        targets = ops.concatenate([ops.ones((batch_size, 1)), ops.zeros((batch_size, 1))], axis=0)
        targets += 0.05 * tf.random.uniform(tf.shape(targets))
        with tf.GradientTape() as tape:
            predictions = self.discriminator({"image": combined_images, **both}, training=True)
            d_loss = self.loss_fn(targets, predictions["logit"])
        grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
        self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))

        random_latent_vectors = keras.random.normal(
            shape=(batch_size, self.latent_dim), seed=self.seed_generator
        )
        misleading_labels = ops.zeros((batch_size, 1))
        g_variables = self.generator.trainable_weights + self.conditioner.trainable_weights
        with tf.GradientTape() as tape:
            condition = self.conditioner(labels, training=True)
            fake = self.generator(
                {"noise": random_latent_vectors, "condition": condition}, training=True
            )
            predictions = self.discriminator({"image": fake, **labels}, training=True)
            g_loss = self.loss_fn(misleading_labels, predictions["logit"])
        grads = tape.gradient(g_loss, g_variables)
        self.g_optimizer.apply_gradients(zip(grads, g_variables))
        self.d_loss_metric.update_state(d_loss)
        self.g_loss_metric.update_state(g_loss)
        return {"d_loss": self.d_loss_metric.result(), "g_loss": self.g_loss_metric.result()}


def build(kind, data, jit_compile, seed):
    keras.utils.set_random_seed(seed)
    options = {"augment": False} if kind == "ours (no aug, no EMA)" else {}
    gan = ConditionalGAN.from_dataset(
        data, ema_decay=0.0 if options else 0.999, seed=seed, name="gan"
    )
    if kind == "plain":
        model = PlainDCGAN(gan.generator, gan.discriminator, gan.conditioner, gan.attributes)
        model.compile(
            d_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
            g_optimizer=keras.optimizers.Adam(2e-4, beta_1=0.5),
            loss_fn=keras.losses.BinaryCrossentropy(from_logits=True),
            jit_compile=jit_compile,
        )
        return model
    gan.compile(jit_compile=jit_compile, **options)
    return gan


def batches(data, kind, batch_size):
    """One real batch repeated: the step's cost without the input pipeline."""
    batch = next(iter(data.generation_pairs("train", batch_size=batch_size, drop_remainder=True)))
    batch = {k: v for k, v in batch.items() if k == "image" or k.startswith("label_")}
    if kind == "plain":
        batch["image"] = tf.cast(batch["image"], tf.float32) / 127.5 - 1.0
    return tf.data.Dataset.from_tensors(batch).repeat()


def time_steps(model, ds, steps):
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return (time.perf_counter() - start) / steps


def run(data_path, steps, repeats, warmup, batch_size, seed):
    data = mmrec.data.load(data_path)
    kinds = ["plain", "ours", "ours (no aug, no EMA)"]
    rows = []
    for jit_compile in (False, True):
        models, datasets, samples = {}, {}, {}
        for kind in kinds:
            models[kind] = build(kind, data, jit_compile, seed)
            datasets[kind] = batches(data, kind, batch_size)
            start = time.perf_counter()
            time_steps(models[kind], datasets[kind], warmup)  # traces (and XLA-compiles)
            samples[kind] = []
            print(
                f"  {kind}, jit_compile={jit_compile}: warm-up {time.perf_counter() - start:.1f} s"
            )
        for _ in range(repeats):  # interleaved, so that load changes hit every variant
            for kind in kinds:
                samples[kind].append(time_steps(models[kind], datasets[kind], steps))
        plain = statistics.median(samples["plain"])
        for kind in kinds:
            ms = 1000 * statistics.median(samples[kind])
            rows.append(
                {
                    "step": kind,
                    "jit_compile": jit_compile,
                    "ms/step": f"{ms:.1f}",
                    "images/s": f"{batch_size / (ms / 1000):.0f}",
                    "ratio vs plain": f"{ms / (1000 * plain):.3f}",
                    "samples_ms": [round(1000 * s, 1) for s in samples[kind]],
                }
            )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--out", default="benchmarks/results/train_step.json")
    parser.add_argument("--steps", type=int, default=30, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.data, "dataset.json")):
        mmrec.data.write_shapes(args.data)
    rows = run(args.data, args.steps, args.repeats, args.warmup, args.batch_size, args.seed)
    print()
    print_table(rows, ["step", "jit_compile", "ms/step", "images/s", "ratio vs plain"])
    write_json(
        args.out,
        {
            "benchmark": "train_step",
            "data": args.data,
            "batch_size": args.batch_size,
            "steps_per_repeat": args.steps,
            "repeats": args.repeats,
            "statistic": "median over interleaved repeats",
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
