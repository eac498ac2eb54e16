"""The ``"gan"`` and ``"vae"`` run kinds: conditional image generators, judged on what they draw.

Both train on ``data.generation_pairs`` batches, write a sample grid per epoch
(`SampleGrid`) and a final one, and are scored by an independent
`AttributeJudge` (given, or trained into ``RUN/judge`` with the ``judge_*``
settings) through `mmrec.evaluation.evaluate_generation`. What they are
conditioned on is the ``condition`` setting, a registered `Conditioning` name;
a conditioning that needs a user encoder gets the recommender's
(``train(..., recommender=...)``).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from mmrec.evaluation.generation import AttributeJudge, evaluate_generation, held_out_accuracy
from mmrec.models.gan import ConditionalGAN
from mmrec.models.vae import ConditionalVAE
from mmrec.training import samples
from mmrec.training.callbacks import SampleGrid, write_png
from mmrec.training.kinds import judge as judge_kind
from mmrec.training.kinds.base import (
    RunKind,
    RunPlan,
    last_checkpoint,
    register_run_kind,
    set_learning_rate,
)
from mmrec.training.reports import generation_table
from mmrec.training.runs import last_epoch, load_run_model, run_model_path

# The judge trained when none is given: None takes the judge kind's value.
JUDGE_SETTINGS = {
    "judge_epochs": int | None,
    "judge_learning_rate": float | None,
    "judge_filters": list | None,
    "judge_feature_dim": int | None,
}
JUDGE_BASE = dict.fromkeys(JUDGE_SETTINGS)
JUDGE_TINY = {f"judge_{k}": v for k, v in judge_kind.TINY.items()}

COMMON_SETTINGS = {
    "epochs": int,
    "batch_size": int,
    "steps_per_epoch": int | None,
    "learning_rate": float | None,
    "condition": str,
    "latent_dim": int | None,
    "sample_every": int,
}
COMMON_BASE = {
    "epochs": 20,
    "batch_size": 64,
    "steps_per_epoch": 300,
    "learning_rate": None,
    # Personalised generation: needs a trained recommender (--recommender RUN);
    # "attributes" and "text" do not.
    "condition": "user",
    "latent_dim": None,
    "sample_every": 1,
}
COMMON_TINY = {"epochs": 6, "steps_per_epoch": 100, "latent_dim": 32}

GAN_SETTINGS = {
    **COMMON_SETTINGS,
    "d_learning_rate": float | None,
    "generator_filters": list | None,
    "discriminator_filters": list | None,
    "ema_decay": float | None,
    "loss": str | None,
    "ac_weight": float | None,
    "r1_weight": float | None,
    "augment": bool | None,
    "adam_beta_2": float | None,
    **JUDGE_SETTINGS,
}
GAN_BASE = {
    **COMMON_BASE,
    "d_learning_rate": None,
    # None: the defaults for the image size.
    "generator_filters": None,
    "discriminator_filters": None,
    "ema_decay": None,
    "loss": None,
    "ac_weight": None,
    "r1_weight": None,
    "augment": None,
    # β2 of both Adam optimizers (None: the model's, 0.999).
    "adam_beta_2": None,
    **JUDGE_BASE,
}
# The quickstart's cGAN, tuned for what the judge reads per CPU-second
# (benchmarks/gan_recipe.py compares it with the previous preset). At the
# model's rates (G 2e-4, D 4e-4) D's classifier heads cannot yet tell shapes
# apart after a few hundred steps, so the generator paints the right colour on
# a blob. Higher rates and auxiliary-classifier weight 2 teach the heads (and
# so the generator) shapes sooner; alone, they blow up on some seeds (one D
# update jumps when a gradient outgrows Adam's slow running variance, and D
# forgets everything). Adam's β2 = 0.99 (as in StyleGAN2) keeps them stable at
# no cost per step (an R1 penalty did not, and costs a second backward pass).
# 1,000 steps (the old preset had 600): the quickstart gives the cGAN the time.
GAN_TINY = {
    **COMMON_TINY,
    "epochs": 5,
    "steps_per_epoch": 200,
    "learning_rate": 5e-4,
    "d_learning_rate": 2e-3,
    "adam_beta_2": 0.99,
    "ac_weight": 2.0,
    "generator_filters": [128, 64, 32, 16],
    "discriminator_filters": [32, 64, 64],
    # A faster EMA for a run of a thousand steps.
    "ema_decay": 0.99,
    **JUDGE_TINY,
}

VAE_SETTINGS = {
    **COMMON_SETTINGS,
    "decoder_filters": list | None,
    "encoder_filters": list | None,
    "beta": float | None,
    **JUDGE_SETTINGS,
}
VAE_BASE = {
    **COMMON_BASE,
    "decoder_filters": None,
    "encoder_filters": None,
    "beta": None,
    **JUDGE_BASE,
}
VAE_TINY = {
    **COMMON_TINY,
    "decoder_filters": [128, 64, 32, 16],
    "encoder_filters": [32, 64, 64],
    **JUDGE_TINY,
}


# --- build and compile --------------------------------------------------------------------------


def build_gan(plan: RunPlan, user_encoder, dtype) -> ConditionalGAN:
    return ConditionalGAN.from_dataset(
        plan.data,
        condition=plan.settings["condition"],
        user_encoder=user_encoder,
        dtype=dtype,
        seed=plan.seed,
        name="cgan",
        **plan.given("latent_dim", "generator_filters", "discriminator_filters", "ema_decay"),
    )


def compile_gan(model, plan: RunPlan, jit_compile) -> None:
    """`ConditionalGAN.compile` with the settings given; its defaults for the others."""
    options = {
        "jit_compile": True if jit_compile else "auto",
        **plan.given("loss", "ac_weight", "r1_weight", "augment"),
    }
    model.compile(**options)
    beta_2 = plan.settings["adam_beta_2"]
    if beta_2 is not None:
        # The model's own optimizers, with another β2.
        model.compile(
            d_optimizer=with_beta_2(model.d_optimizer, beta_2),
            g_optimizer=with_beta_2(model.g_optimizer, beta_2),
            **options,
        )
    set_learning_rate(model.d_optimizer, plan.settings["d_learning_rate"])
    set_learning_rate(model.g_optimizer, plan.settings["learning_rate"])


def with_beta_2(optimizer, beta_2):
    """A fresh copy of an Adam ``optimizer`` (unwrapped from loss scaling) with ``beta_2``."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    config = inner.get_config()
    if "beta_2" not in config:
        raise ValueError(
            f"Expected an optimizer with a beta_2 (Adam) for adam_beta_2. Received: {inner!r}"
        )
    return type(inner).from_config({**config, "beta_2": beta_2})


def build_vae(plan: RunPlan, user_encoder, dtype) -> ConditionalVAE:
    return ConditionalVAE.from_dataset(
        plan.data,
        condition=plan.settings["condition"],
        user_encoder=user_encoder,
        dtype=dtype,
        seed=plan.seed,
        name="cvae",
        **plan.given("latent_dim", "decoder_filters", "encoder_filters", "beta"),
    )


# --- data and callbacks -------------------------------------------------------------------------


def generation_datasets(plan: RunPlan):
    """(training, validation) batches of ``data.generation_pairs``; training repeats, seeded."""
    train = plan.data.generation_pairs(
        "train", batch_size=plan.batch_size, repeat=True, drop_remainder=True, seed=plan.seed
    )
    valid = plan.data.generation_pairs(
        "valid", batch_size=plan.valid_batch_size, drop_remainder=True
    )
    return train, valid


def generator_callbacks(model, plan: RunPlan) -> list:
    """The last epoch's checkpoint and a sample grid every ``sample_every`` epochs."""
    grid = SampleGrid(
        samples.grid_conditions(plan.data, model),
        directory=plan.path("samples"),
        num=8,
        log_dir=plan.path("logs", "images"),
        every=plan.settings["sample_every"],
        seed=1234,
    )
    return [*last_checkpoint(model, plan), grid]


# --- evaluation ---------------------------------------------------------------------------------


def evaluate_generator(model, plan: RunPlan, **extra) -> dict:
    """The judge's verdict, ``extra`` entries, and the final sample grid; prints the table."""
    judge, judge_report = judge_for(plan)
    report = {
        "condition": model.condition,
        "judge": judge_report,
        "generation": evaluate_generation(model, plan.data, judge, seed=plan.seed),
        **extra,
    }
    final = samples.generate_grid(model, samples.grid_conditions(plan.data, model))
    report["sample_grid"] = plan.path("samples", "final.png")
    write_png(report["sample_grid"], final)
    print(generation_table(report), flush=True)
    return report


def evaluate_vae(model, plan: RunPlan) -> dict:
    """`evaluate_generator` plus the validation ELBO of the last epoch."""
    last = last_epoch(plan.run_dir)
    extra = {}
    if "val_neg_elbo" in last:
        pixels = plan.data.info.image_size**2 * 3
        valid = {k: last[f"val_{k}"] for k in ("reconstruction", "kl", "neg_elbo")}
        valid["bits_per_dim"] = last["val_neg_elbo"] / (pixels * np.log(2))
        extra["valid"] = valid
    return evaluate_generator(model, plan, **extra)


def judge_for(plan: RunPlan):
    """(judge, {"path", "held_out_accuracy"}): the run's judge, or one trained into RUN/judge."""
    from mmrec.training.runner import train  # the driver; it imports the kinds

    judge, data = plan.judge, plan.data
    if isinstance(judge, AttributeJudge):
        return judge, {"path": None, "held_out_accuracy": held_out_accuracy(judge, data)}
    if judge is None:
        folder = plan.path("judge")
        if not os.path.exists(os.path.join(folder, "metrics.json")):
            print(f"\ntraining the judge of generated images into {folder}", flush=True)
            config = {
                "preset": "base",
                **{k[len("judge_") :]: v for k, v in plan.settings.items() if k in JUDGE_SETTINGS},
            }
            config = {k: v for k, v in config.items() if v is not None}
            strategy = tf.distribute.get_strategy()
            train("judge", data, folder, config, seed=plan.seed, strategy=strategy)
        judge = folder
    model = load_run_model(judge, AttributeJudge)
    path = run_model_path(judge)
    return model, {"path": path, "held_out_accuracy": held_out_accuracy(model, data)}


GAN = register_run_kind(
    RunKind(
        name="gan",
        build=build_gan,
        evaluate=evaluate_generator,
        datasets=generation_datasets,
        settings=GAN_SETTINGS,
        presets={"base": GAN_BASE, "tiny": GAN_TINY},
        compile=compile_gan,
        callbacks=generator_callbacks,
        takes_judge=True,
    )
)

VAE = register_run_kind(
    RunKind(
        name="vae",
        build=build_vae,
        evaluate=evaluate_vae,
        datasets=generation_datasets,
        settings=VAE_SETTINGS,
        presets={"base": VAE_BASE, "tiny": VAE_TINY},
        callbacks=generator_callbacks,
        takes_judge=True,
    )
)
