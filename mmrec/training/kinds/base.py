"""`RunKind`: what one kind of training run builds, trains on and reports, and their registry.

Where it sits in the data flow: `mmrec.training.train(kind, ...)` (the generic
driver in `mmrec.training.runner`) looks the kind up here and calls its hooks
in order — ``build`` → ``compile`` → ``datasets`` → ``callbacks`` → ``fit`` →
``evaluate``. Everything that differs between a recommender, a GAN, a VAE or the
judge lives in its `RunKind`; the driver never tests a kind's name.

Each hook takes a `RunPlan`: the resolved settings, the dataset, the seed, the
run folder and the batch sizes and step counts. A setting that is ``None``
means "the model's default": pass a model only what `RunPlan.given` returns.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Callable

import keras

RUN_KINDS: dict[str, RunKind] = {}


@dataclasses.dataclass(frozen=True)
class RunKind:
    """One kind of training run: its hooks, its settings and its presets.

    Args:
        name: what ``mmrec train NAME`` and ``train(NAME, ...)`` call it.
        build: ``(plan, user_encoder, dtype) -> keras.Model``; ``user_encoder`` is
            a frozen `Recommender.build_user_encoder()` when the run's
            ``condition`` needs one (else ``None``); ``dtype`` is the run's
            precision policy name (``"float32"``, ``"mixed_bfloat16"``…), to give
            the model so that it saves and reloads with it.
        evaluate: ``(model, plan) -> dict`` of final metrics (also printed); they
            go into ``metrics.json``.
        datasets: ``(plan) -> (train, valid)`` batched `tf.data.Dataset`s; the
            training one repeats forever (the driver skips what a resumed run
            already saw and shards both for the strategy).
        settings: every config key and its type, e.g. ``{"epochs": int,
            "learning_rate": float | None}`` (``None``: the model's default).
            ``epochs`` and ``batch_size`` are required; an optional
            ``steps_per_epoch`` (``None``: one pass over the examples) caps an
            epoch; a ``condition`` (a `Conditioning` name) makes the run take a
            recommender when that conditioning needs a user encoder.
        presets: ``{"base": {every key: value}, "tiny": {key: value, ...}}``; other
            presets than ``"base"`` list only what differs from it.
        compile: ``(model, plan, jit_compile) -> None``; default:
            `compile_with_learning_rate`.
        callbacks: ``(model, plan) -> list`` of the kind's own callbacks (the
            driver adds backups, the CSV log, TensorBoard scalars and NaN checks);
            default: `best_checkpoint`.
        examples: ``(data) -> (training examples, validation examples)``;
            default: the dataset's ``train`` and ``valid`` splits.
        drop_remainder: whether the steps per epoch drop a last partial batch.
        takes_judge: whether ``evaluate`` uses a judge of generated images
            (``train(..., judge=...)``).
        object_keys: for each setting that may hold an object (a ``dict``), the
            keys it may hold, as a tree: ``{key: None or a tree}``, ``None`` for
            a value that is not an object checked further, e.g. ``{"encoder_config":
            {"image": {"filters": None, ...}, ...}}`` (derive the leaves from the
            constructors, e.g. `mmrec.layers.item_encoder.encoder_arguments`). A
            config with another key, at any level, is refused. ``{setting: None}``
            leaves a setting's object unchecked; every ``dict`` setting must be listed.

    Example: an attribute-conditioned VAE reporting its size, as ``"attribute_vae"``.

    >>> from mmrec.models import ConditionalVAE
    >>> from mmrec.training import resolve_config
    >>> from mmrec.training.kinds import generation_datasets
    >>> def build(plan, user_encoder, dtype):
    ...     return ConditionalVAE.from_dataset(plan.data, dtype=dtype, **plan.given("latent_dim"))
    >>> kind = register_run_kind(RunKind(
    ...     name="attribute_vae",
    ...     build=build,
    ...     evaluate=lambda model, plan: {"parameters": model.count_params()},
    ...     datasets=generation_datasets,
    ...     settings={"epochs": int, "batch_size": int, "steps_per_epoch": int | None,
    ...               "learning_rate": float | None, "latent_dim": int | None},
    ...     presets={"base": {"epochs": 10, "batch_size": 64, "steps_per_epoch": None,
    ...                       "learning_rate": None, "latent_dim": None},
    ...              "tiny": {"epochs": 1, "steps_per_epoch": 20, "latent_dim": 8}},
    ... ), overwrite=True)
    >>> resolve_config("attribute_vae", "tiny")["latent_dim"]
    8

    Then ``train("attribute_vae", "tf_records/shapes", "runs/vae", "tiny")``
    trains it into a run folder, resumable like the built-in kinds.
    """

    name: str
    build: Callable
    evaluate: Callable
    datasets: Callable
    settings: dict
    presets: dict
    compile: Callable | None = None
    callbacks: Callable | None = None
    examples: Callable | None = None
    drop_remainder: bool = True
    takes_judge: bool = False
    object_keys: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        base = self.presets.get("base")
        if base is None or set(base) != set(self.settings):
            missing = sorted(set(self.settings) - set(base or {}))
            extra = sorted(set(base or {}) - set(self.settings))
            raise ValueError(
                f"Expected the {self.name!r} kind's 'base' preset to give every setting. "
                f"Received: missing {missing}, unknown {extra}"
            )
        for preset, values in self.presets.items():
            unknown = sorted(set(values) - set(self.settings))
            if unknown:
                raise ValueError(
                    f"Expected the {self.name!r} kind's {preset!r} preset to hold known "
                    f"settings. Received: unknown {unknown}"
                )
        objects = sorted(k for k, t in self.settings.items() if _holds_objects(t))
        if sorted(self.object_keys) != objects:
            raise ValueError(
                f"Expected the {self.name!r} kind's object_keys to describe its object "
                f"(dict) settings {objects}. Received: object_keys for {sorted(self.object_keys)}"
            )
        for key in ("epochs", "batch_size"):
            if key not in self.settings:
                raise ValueError(
                    f"Expected the {self.name!r} kind to have the setting {key!r} (the "
                    f"driver needs it). Received: settings {sorted(self.settings)}"
                )
        defaults = {
            "compile": compile_with_learning_rate,
            "callbacks": best_checkpoint,
            "examples": split_sizes,
        }
        for field, default in defaults.items():
            if getattr(self, field) is None:
                object.__setattr__(self, field, default)

    @property
    def conditioned(self) -> bool:
        """Whether its runs have a ``condition`` (a registered `Conditioning` name)."""
        return "condition" in self.settings


def _holds_objects(expected) -> bool:
    allowed = expected.__args__ if isinstance(expected, types.UnionType) else (expected,)
    return dict in allowed


def register_run_kind(kind: RunKind, overwrite=False) -> RunKind:
    """Makes ``kind`` available as ``train(kind.name, ...)`` and ``mmrec train NAME``."""
    if not isinstance(kind, RunKind):
        raise ValueError(f"Expected a RunKind. Received: {kind!r}")
    if kind.name in RUN_KINDS and not overwrite:
        raise ValueError(
            f"Expected a new run kind name. Received: {kind.name!r}, already registered "
            "(pass overwrite=True to replace it)"
        )
    RUN_KINDS[kind.name] = kind
    return kind


def get_run_kind(name) -> RunKind:
    """The `RunKind` registered as ``name`` (a `ValueError` lists the known ones)."""
    if isinstance(name, RunKind):
        return name
    if name not in RUN_KINDS:
        raise ValueError(f"Expected kind to be one of {run_kind_names()}. Received: kind={name!r}")
    return RUN_KINDS[name]


def run_kind_names() -> tuple[str, ...]:
    """The registered kinds, e.g. ``("recommender", "judge", "gan", "vae")``."""
    return tuple(RUN_KINDS)


# --- the plan of a run ------------------------------------------------------------------------


@dataclasses.dataclass
class RunPlan:
    """What a kind's hooks need: settings, data, seed, run folder, batches and steps."""

    kind: RunKind
    settings: dict
    data: object
    seed: int = 0
    run_dir: str | None = None
    judge: object = None
    replicas: int = 1
    epochs: int = 1
    batch_size: int = 1
    valid_batch_size: int = 1
    steps: int = 1
    valid_steps: int = 1
    verbose: int | str = "auto"  # Keras fit verbosity of the run (its baselines print alike)

    @classmethod
    def create(
        cls, kind, settings, data, seed=0, run_dir=None, judge=None, replicas=1, verbose="auto"
    ):
        """Fits the batch sizes to the examples and the replicas, and counts the steps."""
        kind = get_run_kind(kind)
        examples, valid = kind.examples(data)
        batch_size = fit_batch(settings["batch_size"], examples, replicas, "training")
        valid_batch_size = fit_batch(settings["batch_size"], valid, replicas, "validation")
        if kind.drop_remainder:
            steps, valid_steps = max(1, examples // batch_size), valid // valid_batch_size
        else:
            steps, valid_steps = -(-examples // batch_size), -(-valid // valid_batch_size)
        return cls(
            kind=kind,
            settings=settings,
            data=data,
            seed=seed,
            run_dir=run_dir,
            judge=judge,
            replicas=replicas,
            epochs=settings["epochs"],
            batch_size=batch_size,
            valid_batch_size=valid_batch_size,
            steps=settings.get("steps_per_epoch") or steps,
            valid_steps=valid_steps,
            verbose=verbose,
        )

    def given(self, *keys, **renamed) -> dict:
        """The settings ``keys`` that are not ``None``, as keyword arguments for a model.

        ``renamed`` maps an argument name to a setting, e.g.
        ``plan.given("latent_dim", filters="judge_filters")``.
        """
        pairs = [(k, k) for k in keys] + list(renamed.items())
        return {arg: self.settings[k] for arg, k in pairs if self.settings[k] is not None}

    def path(self, *parts) -> str:
        """A path inside the run folder."""
        return os.path.join(self.run_dir, *parts)


def fit_batch(batch_size, examples, replicas, what):
    """The batch size, at most the examples available and a multiple of the replicas."""
    fitted = min(batch_size, examples)
    fitted -= fitted % replicas
    if fitted < replicas:
        raise ValueError(
            f"Expected at least {replicas} {what} examples (one per replica). Received: {examples}"
        )
    if fitted != batch_size and what == "training":
        print(
            f"mmrec: batch_size {batch_size} → {fitted} ({examples} {what} examples, "
            f"{replicas} replica(s))",
            flush=True,
        )
    return fitted


# --- default hooks ------------------------------------------------------------------------------


def split_sizes(data) -> tuple[int, int]:
    """(training, validation) examples: the dataset's ``train`` and ``valid`` splits."""
    return data.info.splits["train"], data.info.splits["valid"]


def set_learning_rate(optimizer, learning_rate) -> None:
    """Sets an optimizer's rate (a number or a schedule); ``None`` keeps the model's default."""
    if learning_rate is not None:
        optimizer.learning_rate = learning_rate


def compile_with_learning_rate(model, plan, jit_compile) -> None:
    """``model.compile()`` with the model's default optimizer, at ``learning_rate`` if set.

    The optimizer, its other arguments, the loss and the metrics stay the
    model's defaults (its ``compile`` owns them).
    """
    model.compile(jit_compile=True if jit_compile else "auto")
    set_learning_rate(model.optimizer, plan.settings.get("learning_rate"))


def best_checkpoint(model, plan) -> list:
    """`ModelCheckpoint` of the best epoch by ``val_loss``: ``checkpoints/best.keras``."""
    path = plan.path("checkpoints", "best.keras")
    return [keras.callbacks.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)]


def last_checkpoint(model, plan) -> list:
    """`ModelCheckpoint` of the last epoch: ``checkpoints/last.keras``."""
    return [keras.callbacks.ModelCheckpoint(plan.path("checkpoints", "last.keras"))]
