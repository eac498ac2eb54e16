"""Forward + backward throughput of the networks, in float32 and mixed_bfloat16, on any backend.

    python benchmarks/networks_speed.py --batch-size 64 --steps 20 --image-size 32
    KERAS_BACKEND=jax python benchmarks/networks_speed.py --out benchmarks/results/x.json

For the `Generator`, the `Discriminator` and the `MultimodalItemEncoder`, one
step is a forward pass in training mode, a scalar loss (the mean square of the
float outputs) and its gradients with respect to every trainable weight; the
optimizer update is left out, so the numbers are about the networks alone.
The step is compiled with the current Keras backend: ``jax.jit`` over
``jax.value_and_grad`` of ``model.stateless_call`` under JAX,
``tf.function(jit_compile=True)`` around a ``tf.GradientTape`` under
TensorFlow (``--no-jit`` runs them uncompiled / as a plain graph). TensorFlow
is imported only under its own backend.

The item encoder gets token ids for its text (tokenising strings needs
tensorflow-text, which only runs under TensorFlow), images of ``--image-size``
and 0.5 s of 16 kHz audio. Timings are medians over ``--steps`` steps after
two warm-up steps (which include compilation); the policies alternate step by
step so that a busy shared machine slows both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import print_table, write_json  # noqa: E402
from keras import ops, tree  # noqa: E402

from mmrec.layers import MultimodalItemEncoder  # noqa: E402
from mmrec.models.image_networks import Discriminator, Generator  # noqa: E402

POLICIES = ("float32", "mixed_bfloat16")
ATTRIBUTES = {"shape": 8, "colour": 8}
CONDITION_DIM = 128
LATENT_DIM = 64
VOCABULARY_SIZE = 1000
SEQUENCE_LENGTH = 32
AUDIO_SAMPLES = 8000  # 0.5 s at 16 kHz


def build_networks(image_size, batch_size, policy):
    """``{name: (model, inputs)}`` with inputs as backend tensors."""
    rng = np.random.default_rng(0)
    generator_inputs = {
        "noise": rng.normal(size=(batch_size, LATENT_DIM)),
        "condition": rng.normal(size=(batch_size, CONDITION_DIM)),
    }
    discriminator_inputs = {
        "image": rng.uniform(-1, 1, (batch_size, image_size, image_size, 3)),
        **{f"label_{a}": rng.integers(0, n, batch_size) for a, n in ATTRIBUTES.items()},
    }
    item_inputs = {
        "image": rng.integers(0, 256, (batch_size, image_size, image_size, 3)).astype("uint8"),
        "text": rng.integers(0, VOCABULARY_SIZE, (batch_size, SEQUENCE_LENGTH)),
        "audio": rng.uniform(-1, 1, (batch_size, AUDIO_SAMPLES)),
    }
    text_config = {"vocabulary_size": VOCABULARY_SIZE, "sequence_length": SEQUENCE_LENGTH}
    networks = {
        "generator": (
            Generator(image_size, CONDITION_DIM, LATENT_DIM, dtype=policy),
            generator_inputs,
        ),
        "discriminator": (
            Discriminator(image_size, ATTRIBUTES, dtype=policy),
            discriminator_inputs,
        ),
        "item_encoder": (
            MultimodalItemEncoder(encoder_config={"text": text_config}, dtype=policy),
            item_inputs,
        ),
    }
    return {
        name: (model, tree.map_structure(_to_tensor, inputs))
        for name, (model, inputs) in networks.items()
    }


def _to_tensor(x):
    x = np.asarray(x)
    dtype = {"f": "float32", "i": "int32"}.get(x.dtype.kind, x.dtype.name)
    return ops.convert_to_tensor(x.astype(dtype))


def scalar_loss(outputs):
    """The mean square of every float output, summed: a loss that reaches every weight."""
    return sum(ops.mean(ops.square(ops.cast(x, "float32"))) for x in tree.flatten(outputs))


def jax_step(model, inputs, jit):
    """A function running one forward + backward pass (``jax.value_and_grad``)."""
    import jax

    def loss_fn(trainable, non_trainable):
        outputs, non_trainable = model.stateless_call(
            trainable, non_trainable, inputs, training=True
        )
        return scalar_loss(outputs), non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    if jit:
        grad_fn = jax.jit(grad_fn)
    state = {
        "trainable": [v.value for v in model.trainable_variables],
        "non_trainable": [v.value for v in model.non_trainable_variables],
    }

    def step():
        (loss, non_trainable), grads = grad_fn(state["trainable"], state["non_trainable"])
        state["non_trainable"] = non_trainable  # batch-norm statistics, as in training
        jax.block_until_ready((loss, grads))

    return step


def tensorflow_step(model, inputs, jit):
    """A function running one forward + backward pass (``tf.GradientTape``)."""
    import tensorflow as tf

    @tf.function(jit_compile=jit)
    def grad_fn():
        with tf.GradientTape() as tape:
            loss = scalar_loss(model(inputs, training=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    def step():
        loss, _ = grad_fn()
        loss.numpy()  # waits for the step

    return step


STEPS = {"jax": jax_step, "tensorflow": tensorflow_step}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per network and policy")
    parser.add_argument("--image-size", type=int, default=32, choices=(16, 32, 64))
    parser.add_argument("--no-jit", action="store_true", help="run the steps uncompiled")
    parser.add_argument("--out", default="benchmarks/results/networks_speed.json")
    args = parser.parse_args(argv)

    backend = keras.backend.backend()
    if backend not in STEPS:
        parser.error(f"Expected the jax or tensorflow Keras backend. Received: {backend!r}")
    make_step = STEPS[backend]

    by_policy = {p: build_networks(args.image_size, args.batch_size, p) for p in POLICIES}
    rows = []
    for name in by_policy[POLICIES[0]]:
        steps = {p: make_step(*by_policy[p][name], jit=not args.no_jit) for p in POLICIES}
        seconds = {p: [] for p in POLICIES}
        for i in range(2 + args.steps):
            for policy, step in steps.items():
                start = time.perf_counter()
                step()
                if i >= 2:  # the first two include compilation
                    seconds[policy].append(time.perf_counter() - start)
        row = {"network": name}
        for policy in POLICIES:
            median = statistics.median(seconds[policy])
            row[f"{policy} ms/step"] = round(1000 * median, 2)
            row[f"{policy} examples/s"] = round(args.batch_size / median, 1)
        row["bf16 / f32"] = round(row["mixed_bfloat16 examples/s"] / row["float32 examples/s"], 2)
        rows.append(row)

    print(
        f"backend={backend}  batch_size={args.batch_size}  image_size={args.image_size}  "
        f"steps={args.steps}  jit={not args.no_jit}\n"
    )
    columns = ["network"]
    columns += [f"{p} examples/s" for p in POLICIES] + [f"{p} ms/step" for p in POLICIES]
    print_table(rows, columns + ["bf16 / f32"])

    payload = {
        "backend": backend,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "steps": args.steps,
        "jit": not args.no_jit,
        "results": rows,
    }
    write_json(args.out, payload)


if __name__ == "__main__":
    main()
