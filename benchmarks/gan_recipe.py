"""The quickstart's cGAN recipe, old against new: what the judge reads, per step and per second.

    nice python benchmarks/gan_recipe.py --data tf_records/shapes

`mmrec quickstart` trains its user-conditioned cGAN with the ``"tiny"`` preset
of the ``gan`` run kind (``GAN_TINY`` in `mmrec.training.kinds.generators`).
This script trains, with `mmrec.training.train` exactly as the quickstart
does (same recommender, same judge, ``condition="user"``):

* ``old``: the preset before it was retuned (``OLD_TINY`` below), its own steps;
* ``old, new's steps``: the same recipe for as many steps as the new one, so
  that the table separates the recipe from the number of steps;
* ``new``: ``GAN_TINY``.

``--steps N`` trains every recipe for N steps instead. Each row gives the
judge's accuracy on the requested attributes, the personalisation hit-rate
(next to the preference head's sampled attributes', its ceiling, and the users'
own held-out items') and the run's
wall seconds (training, validation and evaluation). Seconds per step come from a
separate timing in one process: every recipe's model is built, traced, then
trained on one real batch for ``--timing-steps`` steps in turn, ``--repeats``
times, interleaved, so that load from other jobs hits every recipe alike; the
median is reported, and its ratio to the old recipe's.

The quickstart's recommender and judge (their ``"tiny"`` presets) are trained
into ``--out-dir`` once and reused (or given with ``--recommender`` and
``--judge``, e.g. ``runs/quickstart/recommender``). Writes
``<out-dir>/gan_recipe.json`` and the runs in
``<out-dir>/gan_recipe/``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import print_table, write_json  # noqa: E402

import mmrec  # noqa: E402
from mmrec.models import Recommender  # noqa: E402
from mmrec.training import train  # noqa: E402
from mmrec.training.configs import resolve_config  # noqa: E402
from mmrec.training.kinds.base import RunPlan  # noqa: E402
from mmrec.training.kinds.generators import GAN  # noqa: E402
from mmrec.training.runs import load_run_model  # noqa: E402

# The "tiny" preset before it was retuned: 6 epochs × 100 steps, and the model's
# own optimisation (null): Adam(2e-4) / Adam(4e-4), β2 0.999, ac_weight 1, no R1.
OLD_TINY = {
    "epochs": 6,
    "steps_per_epoch": 100,
    "latent_dim": 32,
    "generator_filters": [128, 64, 32, 16],
    "discriminator_filters": [32, 64, 64],
    "ema_decay": 0.99,
    "learning_rate": None,
    "d_learning_rate": None,
    "adam_beta_2": None,
    "ac_weight": None,
    "r1_weight": None,
}
ATTRIBUTES = ("shape", "colour", "pattern", "size")
LENGTH = ("epochs", "steps_per_epoch")
# Personalisation (user condition): the generated images' hit-rate, what the
# preference head's sampled attributes would hit if drawn perfectly, and the
# users' own held-out items'.
HIT_RATES = {
    "hit-rate": "hit_rate",
    "head's": "hit_rate_sampled_attributes",
    "own items": "hit_rate_held_out_items",
}


def total_steps(settings) -> int:
    return settings["epochs"] * settings["steps_per_epoch"]


def recipes(condition, steps) -> dict[str, dict]:
    """Name → the gan run's config, on top of the ``"tiny"`` preset."""
    old = {"preset": "tiny", **OLD_TINY, "condition": condition}
    new = {"preset": "tiny", "condition": condition}
    if steps:
        return {"old": with_steps(old, steps), "new": with_steps(new, steps)}
    new_steps = total_steps(resolve_config("gan", new))
    return {"old": old, "old, new's steps": with_steps(old, new_steps), "new": new}


def with_steps(config, steps) -> dict:
    """The config trained for ``steps`` steps, over as many epochs as it had (or fewer)."""
    epochs = min(resolve_config("gan", config)["epochs"], steps)
    return {**config, "epochs": epochs, "steps_per_epoch": -(-steps // epochs)}


def trained(kind, data, folder, given, seed):
    """A finished run's folder: ``given``, or ``folder`` (trained there once, "tiny")."""
    if given:
        return given
    if not os.path.exists(os.path.join(folder, "metrics.json")):
        print(f"\ntraining the quickstart's {kind} into {folder}", flush=True)
        train(kind, data, folder, "tiny", seed=seed, overwrite=True)
    return folder


def seconds_per_step(data, configs, recommender, steps, repeats, seed) -> dict[str, float]:
    """Median seconds per training step of each config, timed interleaved in this process.

    Configs that differ only in their length share one training step: it is timed once.
    """
    user_encoder = None
    if recommender is not None:
        user_encoder = load_run_model(recommender, Recommender).build_user_encoder()
    step_of, runs = {}, {}
    for name, config in configs.items():
        settings = resolve_config("gan", config)
        step = json.dumps({k: v for k, v in settings.items() if k not in LENGTH}, sort_keys=True)
        step_of[name] = step
        if step in runs:
            continue
        plan = RunPlan.create(GAN, settings, data, seed, run_dir=None, verbose=0)
        keras.utils.set_random_seed(seed)
        model = GAN.build(plan, user_encoder, None)
        GAN.compile(model, plan, False)
        # One real batch, repeated: the step's cost, without refilling the input
        # pipeline's shuffle buffer at every timed `fit`.
        batch = next(iter(GAN.datasets(plan)[0]))
        batches = tf.data.Dataset.from_tensors(batch).repeat()
        model.fit(batches, epochs=1, steps_per_epoch=3, verbose=0)  # traces the step
        runs[step] = (model, batches)
    samples = {step: [] for step in runs}
    for _ in range(repeats):
        for step, (model, batches) in runs.items():
            start = time.perf_counter()
            model.fit(batches, epochs=1, steps_per_epoch=steps, verbose=0)
            samples[step].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(samples[step]) for name, step in step_of.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--steps", type=int, default=None, help="train every recipe this long")
    parser.add_argument("--recommender", default=None, help="a recommender run folder")
    parser.add_argument("--judge", default=None, help="a judge run folder")
    parser.add_argument("--timing-steps", type=int, default=30, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out-dir", default="benchmarks/results")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.data, "dataset.json")):
        mmrec.data.write_shapes(args.data)
    data = mmrec.data.load(args.data)
    folder = os.path.join(args.out_dir, "gan_recipe")
    recommender = trained(
        "recommender", data, os.path.join(folder, "recommender"), args.recommender, args.seed
    )
    judge = trained("judge", data, os.path.join(folder, "judge"), args.judge, args.seed)
    configs = recipes("user", args.steps)

    print("\ntiming the training step of each recipe (interleaved)", flush=True)
    timing = seconds_per_step(
        data, configs, recommender, args.timing_steps, args.repeats, args.seed
    )
    reference = timing["old"]
    rows = []
    for index, (name, config) in enumerate(configs.items()):
        print(f"\n{name}: {config}", flush=True)
        start = time.perf_counter()
        run = train(
            "gan",
            data,
            os.path.join(folder, f"recipe_{index}"),
            config,
            recommender=recommender,
            judge=judge,
            seed=args.seed,
            overwrite=True,
            verbose=2,
        )
        seconds = time.perf_counter() - start
        generation = run.metrics["generation"]
        accuracy = generation["conditional_accuracy"]
        row = {
            "recipe": name,
            "steps": total_steps(resolve_config("gan", config)),
            **{a: f"{accuracy[a]:.3f}" for a in ATTRIBUTES if a in accuracy},
            **{
                column: f"{generation[key]:.3f}" if key in generation else "-"
                for column, key in HIT_RATES.items()
            },
            "s/step": f"{timing[name]:.3f}",
            "× old": f"{timing[name] / reference:.2f}",
            "run s": f"{seconds:.0f}",
            "config": config,
            "generation": generation,
        }
        rows.append(row)
    print()
    print_table(
        rows,
        ["recipe", "steps", *[a for a in ATTRIBUTES if a in rows[0]], *HIT_RATES]
        + ["s/step", "× old", "run s"],
    )
    write_json(
        os.path.join(args.out_dir, "gan_recipe.json"),
        {
            "benchmark": "gan_recipe",
            "data": args.data,
            "condition": "user",
            "recommender": recommender,
            "judge": judge,
            "timing": {"steps_per_repeat": args.timing_steps, "repeats": args.repeats},
            "statistic": "s/step: median over interleaved repeats",
            "rows": rows,
        },
    )


if __name__ == "__main__":
    main()
