"""The ``"audio"`` run kind: a `ConditionalAudioGenerator`, judged on what it sounds like.

Trains on ``data.generation_pairs`` batches (the chosen items' sounds, as
spectrograms), writes sounds and their spectrograms every ``sample_every``
epochs (`AudioSamples`) and a final set, and — with ``judge_epochs`` set — is
scored by an independent `mmrec.evaluation.audio.AudioJudge` trained for the run
on real sounds (saved as ``RUN/audio_judge.keras`` and reused when the run
resumes) through `mmrec.evaluation.audio.evaluate_audio_generation`. What it is
conditioned on is the ``condition`` setting, a registered `Conditioning` name;
``"user"`` gets the recommender's user encoder (``train(..., recommender=...)``).
"""

from __future__ import annotations

import os

from mmrec.evaluation.audio import (
    AudioJudge,
    audio_held_out_accuracy,
    evaluate_audio_generation,
    train_audio_judge,
)
from mmrec.models.audio_generation import ConditionalAudioGenerator
from mmrec.training import samples
from mmrec.training.callbacks import AudioSamples, spectrogram_grid, write_sounds
from mmrec.training.kinds.base import (
    RunKind,
    RunPlan,
    last_checkpoint,
    register_run_kind,
)
from mmrec.training.kinds.generators import generation_datasets
from mmrec.training.runs import load_run_model

SETTINGS = {
    "epochs": int,
    "batch_size": int,
    "steps_per_epoch": int | None,
    "learning_rate": float | None,
    "condition": str,
    # The model's (`ConditionalAudioGenerator.from_dataset`); None: its default.
    "latent_dim": int | None,
    "decoder_filters": list | None,
    "encoder_filters": list | None,
    "beta": float | None,
    "griffin_lim_iterations": int | None,
    "sample_every": int,
    # The audio judge of the evaluation: its epochs; None trains no judge.
    "judge_epochs": int | None,
}
BASE = {
    "epochs": 20,
    "batch_size": 32,
    "steps_per_epoch": 300,
    "learning_rate": None,
    # Sounds of requested attributes; "user" needs --recommender RUN.
    "condition": "attributes",
    "latent_dim": None,
    "decoder_filters": None,
    "encoder_filters": None,
    "beta": None,
    "griffin_lim_iterations": None,
    "sample_every": 1,
    "judge_epochs": 20,
}
# Small networks for a run of a minute or so (the quick start's). At the model's
# Adam(1e-3) the decoder has not yet learnt pitch and pulses after 800 steps
# (the audio judge reads colour 0.86, shape 0.68 in its sounds); at 3e-3 it has
# (0.94 / 0.98), at 6e-3 it is unstable (0.42 / 0.53). The judge reads the real
# sounds' shape, colour and pattern perfectly after 8 epochs (0.65 after 3).
TINY = {
    "epochs": 8,
    "steps_per_epoch": 100,
    "learning_rate": 3e-3,
    "latent_dim": 8,
    "decoder_filters": [32, 32, 16],
    "encoder_filters": [16, 32],
    "griffin_lim_iterations": 8,
    "judge_epochs": 8,
    "sample_every": 4,
}
NUM_SAMPLES = 4  # sounds per condition in the sample files


def build_audio_generator(plan: RunPlan, user_encoder, dtype) -> ConditionalAudioGenerator:
    return ConditionalAudioGenerator.from_dataset(
        plan.data,
        condition=plan.settings["condition"],
        user_encoder=user_encoder,
        dtype=dtype,
        seed=plan.seed,
        name="audio_cvae",
        **plan.given("latent_dim", "decoder_filters", "encoder_filters", "beta"),
        **plan.given(iterations="griffin_lim_iterations"),
    )


def audio_callbacks(model, plan: RunPlan) -> list:
    """The last epoch's checkpoint and sample sounds every ``sample_every`` epochs."""
    sounds = AudioSamples(
        samples.grid_conditions(plan.data, model),
        directory=plan.path("samples"),
        num=NUM_SAMPLES,
        log_dir=plan.path("logs", "audio"),
        every=plan.settings["sample_every"],
        seed=1234,
    )
    return [*last_checkpoint(model, plan), sounds]


def audio_judge_for(plan: RunPlan):
    """(judge, {"path", "held_out_accuracy"}): the run's audio judge, trained on first use."""
    path = plan.path("audio_judge.keras")
    if os.path.exists(path):
        judge = load_run_model(path, AudioJudge)
        return judge, {"path": path, "held_out_accuracy": audio_held_out_accuracy(judge, plan.data)}
    epochs = plan.settings["judge_epochs"]
    print(f"\ntraining the audio judge ({epochs} epochs) into {path}", flush=True)
    judge, accuracy = train_audio_judge(plan.data, epochs=epochs, seed=plan.seed)
    judge.save(path)
    return judge, {"path": path, "held_out_accuracy": accuracy}


def evaluate_audio_generator(model, plan: RunPlan) -> dict:
    """The judge's verdict (with ``judge_epochs``) and the final sounds; prints a table."""
    conditions = samples.grid_conditions(plan.data, model)
    sounds = model.generate(conditions, num=NUM_SAMPLES, seed=1234)
    sounds = sounds[None] if sounds.ndim == 2 else sounds
    stem = plan.path("samples", "final")
    report = {
        "condition": model.condition,
        "samples": write_sounds(stem, sounds, model.sample_rate, spectrogram_grid(model, sounds)),
    }
    if plan.settings["judge_epochs"] is not None:
        judge, report["judge"] = audio_judge_for(plan)
        report["generation"] = evaluate_audio_generation(model, plan.data, judge, seed=plan.seed)
    print(audio_generation_table(report), flush=True)
    return report


def audio_generation_table(report) -> str:
    """An audio run's metrics as aligned text, one row per measure."""
    rows = [("sample sounds", ", ".join(report["samples"]))]
    if "generation" in report:
        generation = report["generation"]

        def join(values):
            return ", ".join(f"{k} {v:.3f}" for k, v in values.items())

        reference = generation["griffin_lim_reference"]
        rows += [
            ("judge held-out accuracy", join(report["judge"]["held_out_accuracy"])),
            ("conditional accuracy", join(generation["conditional_accuracy"])),
            ("  real sounds via Griffin-Lim", join(reference["conditional_accuracy"])),
            (
                "FD on the judge's features",
                f"{generation['fd_judge']:.2f} (real vs real: "
                f"{generation['fd_judge_real_reference']:.2f}, ratio "
                f"{generation['fd_judge_ratio']:.2f}; real via Griffin-Lim: "
                f"{reference['fd_judge']:.2f})",
            ),
            (
                "diversity",
                f"{generation['diversity']:.3f} (real items alike: "
                f"{generation['diversity_real_reference']:.3f})",
            ),
        ]
        if "hit_rate" in generation:
            rows.append(
                (
                    "personalisation hit-rate",
                    f"{generation['hit_rate']:.3f} (users' own held-out items "
                    f"{generation['hit_rate_held_out_items']:.3f}, random items "
                    f"{generation['hit_rate_random_items']:.3f})",
                )
            )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


AUDIO = register_run_kind(
    RunKind(
        name="audio",
        build=build_audio_generator,
        evaluate=evaluate_audio_generator,
        datasets=generation_datasets,
        settings=SETTINGS,
        presets={"base": BASE, "tiny": TINY},
        callbacks=audio_callbacks,
    )
)
