"""`train`: one training run — config → model → `model.fit` → evaluation → run folder.

Where it sits in the data flow: between a dataset (`mmrec.data.load`) and the
exported models. `mmrec train KIND` and `mmrec quickstart` are thin shells over
it. What a run builds, trains on and reports comes from its kind, a `RunKind`
registered in `mmrec.training.kinds` (``"recommender"``, ``"judge"``, ``"gan"``,
``"vae"``, or one of your own); `train` is the same for all of them: it trains
with ``model.fit`` and Keras callbacks, scores the model, and leaves everything
in one folder (`mmrec.training.runs`)::

    runs/NAME/
      config.json     the resolved settings and how the run was started
      model.keras     the trained model
      metrics.json    the final metrics (written last: it marks a finished run)
      training.csv    one row of metrics per epoch (CSVLogger)
      logs/           TensorBoard: train/ and validation/ scalars, images/ sample grids
      checkpoints/    ModelCheckpoint: best.keras (by val_loss) or last.keras (generators)
      backup/         BackupAndRestore state (removed once the run has finished)
      samples/        generators: a grid per epoch and final.png
      judge/          generators: the judge trained for this run (unless one was given)

Started again with the same arguments, an interrupted run (crash, SIGKILL,
preemption) resumes from its last completed epoch: `BackupAndRestore` restores
the weights and optimizer state, and the input pipeline skips the batches those
epochs consumed, so the resumed run sees the batches an uninterrupted run would.
A run that stopped before it completed an epoch (a crash while building, a NaN in
the first epoch) has nothing to resume: started again, with the same settings or
corrected ones, it starts from scratch (`mmrec.training.runs.prepare_run_dir`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from mmrec.models.conditioning import conditioning_names, get_conditioning
from mmrec.models.recommender import Recommender
from mmrec.training import distribute, monitoring
from mmrec.training.configs import resolve_config
from mmrec.training.kinds import RUN_KINDS, RunPlan, get_run_kind
from mmrec.training.runs import (
    BACKUP,
    MODEL_FILE,
    describe,
    last_epoch,
    load_run_model,
    prepare_run_dir,
    read_json,
    write_json,
)

# ``mixed_precision`` → the Keras dtype policy the models are built with.
PRECISIONS = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}


@dataclasses.dataclass
class RunResult:
    """What `train` returns: the run folder, the trained model, its metrics and history."""

    path: str
    model: keras.Model
    metrics: dict
    history: dict


def train(
    kind,
    data,
    out,
    config="base",
    *,
    recommender=None,
    judge=None,
    strategy="default",
    mixed_precision="off",
    jit_compile=False,
    seed=0,
    overwrite=False,
    verbose="auto",
) -> RunResult:
    """Trains one model with `model.fit` and writes its run folder (see the module docstring).

    Args:
        kind: a registered run kind: ``"recommender"``, ``"judge"``, ``"gan"``,
            ``"vae"`` (`mmrec.training.kinds.run_kind_names`).
        data: a dataset folder or a `mmrec.data.load` result.
        out: the run folder, e.g. ``"runs/rec"``.
        config: ``"tiny"``, ``"base"``, a JSON file or a dict (`resolve_config`);
            ``None`` settings take the model's defaults.
        recommender: for generators whose condition needs a user encoder
            (``"user"``): a trained `Recommender`, its ``.keras`` file or its run
            folder; the generator conditions on its frozen user encoder
            (`Recommender.build_user_encoder`).
        judge: for generators: a trained `AttributeJudge`, its ``.keras`` file or
            its run folder; ``None`` trains one into ``out/judge``.
        strategy: ``"default"``, ``"mirrored"``, ``"multiworker"`` or a
            `tf.distribute.Strategy`. ``batch_size`` is the global batch.
        mixed_precision: ``"off"``, ``"float16"`` or ``"bfloat16"`` (or the policy
            names ``"float32"``, ``"mixed_float16"``, ``"mixed_bfloat16"``). The
            models are built with that policy and keep it in ``model.keras``.
        jit_compile: compile the training step with XLA.
        seed: seeds the weights, the data order and the models' noise.
        overwrite: replace a finished run in ``out`` instead of refusing.
        verbose: Keras' ``fit`` verbosity; ``"auto"`` is a progress bar on a
            terminal and one line per epoch otherwise.

    Returns:
        A `RunResult`.

    Example:

    ```python
    data = mmrec.data.load("tf_records/shapes")
    rec = train("recommender", data, "runs/rec", config="tiny")
    gan = train("gan", data, "runs/gan", config="tiny", recommender=rec.model)
    print(gan.metrics["generation"]["hit_rate"])
    ```
    """
    spec = get_run_kind(kind)
    mixed_precision = _precision_name(mixed_precision)
    policy = PRECISIONS[mixed_precision]
    settings = resolve_config(spec.name, config)
    _check_options(spec, settings, recommender, judge, jit_compile)
    # A multi-worker strategy must exist before anything else touches TensorFlow.
    strategy_name = strategy if isinstance(strategy, str) else type(strategy).__name__
    if isinstance(strategy, str):
        strategy = distribute.make_strategy(strategy)
    data = _load(data)
    verbose = (1 if sys.stdout.isatty() else 2) if verbose == "auto" else verbose
    is_chief, role = (
        distribute.task_role() if distribute.is_multi_worker(strategy) else (True, "chief")
    )
    # Non-chief workers train the same model; their files go to a folder of their own.
    run_dir = os.fspath(out) if is_chief else os.path.join(os.fspath(out), "workers", role)
    record = {
        "kind": spec.name,
        "config": settings,
        "data": data.path,
        "seed": seed,
        "mixed_precision": mixed_precision,
        "jit_compile": bool(jit_compile),
        "strategy": strategy_name,
        "replicas": strategy.num_replicas_in_sync,
        "recommender": describe(recommender),
        "judge": describe(judge),
    }
    # A run that fails before its first epoch leaves nothing to resume: its folder goes,
    # so that the corrected command (other settings) is not refused as a resumption.
    fresh = overwrite or not os.path.exists(run_dir)
    initial_epoch = prepare_run_dir(run_dir, record, overwrite)
    try:
        start = time.perf_counter()

        replicas = strategy.num_replicas_in_sync
        plan = RunPlan.create(spec, settings, data, seed, run_dir, judge, replicas, verbose)
        if initial_epoch:
            print(f"{run_dir}: resuming after epoch {initial_epoch} of {plan.epochs}", flush=True)
        from mmrec.training import precision_policy  # defined in the package's __init__

        if recommender is not None:
            recommender = load_run_model(recommender, Recommender)
        keras.utils.set_random_seed(seed)
        with precision_policy(policy), distribute.model_scope(strategy):
            user_encoder = None if recommender is None else recommender.build_user_encoder()
            model = spec.build(plan, user_encoder, policy)
            spec.compile(model, plan, jit_compile)

        train_data, valid_data = _datasets(plan, initial_epoch)
        callbacks = _callbacks(model, plan, resuming=initial_epoch > 0)
    except BaseException:
        if fresh:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    with distribute.prepare_for_fit(model, strategy, train_data), warnings.catch_warnings():
        # Keras warns that shuffle=True is ignored for a tf.data.Dataset (ours are shuffled).
        warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
        fit = model.fit(
            train_data,
            epochs=plan.epochs,
            steps_per_epoch=plan.steps,
            validation_data=valid_data,
            callbacks=callbacks,
            verbose=verbose,
        )
    history = {k: [float(np.ravel(v)[0]) for v in values] for k, values in fit.history.items()}
    stopped = next((c.stopped_at for c in callbacks if hasattr(c, "stopped_at")), None)
    if stopped is not None:
        raise FloatingPointError(
            f"Training stopped: {stopped[2]} became NaN or infinite at epoch {stopped[0] + 1}, "
            f"batch {stopped[1]}. Lower the learning rate (or try --mixed-precision off) and "
            f"start again; {os.path.join(run_dir, BACKUP)} keeps the last good epoch."
        )
    if not is_chief:
        return RunResult(run_dir, model, {}, history)

    model.save(os.path.join(run_dir, MODEL_FILE))
    metrics = {
        "kind": spec.name,
        "epochs": plan.epochs,
        "steps_per_epoch": plan.steps,
        "batch_size": plan.batch_size,
        "replicas": replicas,
        "last_epoch": last_epoch(run_dir),
    }
    metrics.update(spec.evaluate(model, plan))
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    write_json(os.path.join(run_dir, "metrics.json"), metrics)
    shutil.rmtree(os.path.join(run_dir, BACKUP), ignore_errors=True)
    return RunResult(run_dir, model, metrics, history)


# --- options ---------------------------------------------------------------------------------


def train_or_reuse(kind, data, folder, config, seed=0, **kwargs) -> RunResult:
    """A finished run in ``folder`` with these settings is loaded; otherwise trained
    (resumed if it was interrupted, replaced if its settings differ)."""
    settings = resolve_config(kind, config)
    previous = read_json(os.path.join(folder, "config.json"))
    same = previous is not None and all(
        previous.get(k) == v for k, v in (("config", settings), ("seed", seed), ("data", data.path))
    )
    if same and os.path.exists(os.path.join(folder, "metrics.json")):
        metrics = read_json(os.path.join(folder, "metrics.json"))
        model = load_run_model(folder)
        print(f"reusing the finished run in {folder}")
        return RunResult(folder, model, metrics, {})
    if previous is not None and not same:
        print(f"{folder} holds a run with other settings: training it again")
    return train(kind, data, folder, settings, seed=seed, overwrite=not same, **kwargs)


def _precision_name(mixed_precision):
    """``"off"``/``"float16"``/``"bfloat16"``, also from a policy name (``"mixed_bfloat16"``)."""
    aliases = {policy: name for name, policy in PRECISIONS.items()}
    name = aliases.get(mixed_precision, mixed_precision)
    if name not in PRECISIONS:
        raise ValueError(
            f"Expected mixed_precision to be one of {tuple(PRECISIONS) + tuple(aliases)}. "
            f"Received: mixed_precision={mixed_precision!r}"
        )
    return name


def _check_options(spec, settings, recommender, judge, jit_compile):
    """Refuses a recommender, a judge or ``jit_compile`` that the run cannot use.

    What a condition needs is its `Conditioning` class's to say
    (``requires_user_encoder``, ``jit_compatible``), never its name.
    """
    condition = settings["condition"] if spec.conditioned else None
    conditioning = get_conditioning(condition) if spec.conditioned else None
    needs_users = conditioning is not None and conditioning.requires_user_encoder
    if needs_users and recommender is None:
        others = [n for n in conditioning_names() if not _needs_users(n)]
        raise ValueError(
            f"A {condition}-conditioned {spec.name} conditions on a trained recommender's user "
            "encoder: give --recommender RUN (a folder from `mmrec train recommender`), or set "
            f'"condition" to one of {others} in a --config file.'
        )
    if recommender is not None and not needs_users:
        user_conditions = "/".join(n for n in conditioning_names() if _needs_users(n))
        conditioned = "/".join(k.name for k in RUN_KINDS.values() if k.conditioned)
        raise ValueError(
            f"--recommender is used only by {user_conditions}-conditioned {conditioned} runs. "
            f"Received it for a {spec.name} run"
            + (f" with condition={condition!r}." if spec.conditioned else ".")
        )
    if judge is not None and not spec.takes_judge:
        judged = "/".join(k.name for k in RUN_KINDS.values() if k.takes_judge)
        raise ValueError(
            f"--judge is used only by {judged} runs. Received it for a {spec.name} run."
        )
    if jit_compile and conditioning is not None and not conditioning.jit_compatible:
        raise ValueError(
            f"--jit cannot compile a {condition}-conditioned generator: its conditioning has "
            "ops without XLA kernels (tensorflow-text's, for text). Drop --jit or use another "
            "condition."
        )


def _needs_users(condition) -> bool:
    return get_conditioning(condition).requires_user_encoder


def _load(data):
    from mmrec.data import MultimodalDataset, load

    if isinstance(data, MultimodalDataset):
        return data
    path = os.fspath(data)
    if not os.path.exists(os.path.join(path, "dataset.json")):
        raise FileNotFoundError(
            f"No dataset at '{path}' (expected a folder with dataset.json; create one with "
            f"`mmrec data synth --out {path}`)."
        )
    return load(path)


# --- data and callbacks ----------------------------------------------------------------------


def _datasets(plan, initial_epoch):
    """The kind's (training, validation) datasets; training skips the epochs already done."""
    train_data, valid_data = plan.kind.datasets(plan)
    if initial_epoch:
        train_data = train_data.skip(initial_epoch * plan.steps)
    # A known length: Keras then needs no end-of-data probe (and prints no warning).
    valid_data = valid_data.apply(tf.data.experimental.assert_cardinality(plan.valid_steps))
    return distribute.shard_by_data(train_data), distribute.shard_by_data(valid_data)


def _callbacks(model, plan, resuming):
    # Order matters at an epoch's end: the backup is written before the CSV row, so a
    # row in training.csv always has its backup (the resume tests rely on it).
    callbacks = [
        monitoring.BackupAndRestore(
            plan.path(BACKUP), double_checkpoint=True, delete_checkpoint=False
        ),
        monitoring.TerminateOnNaN(),
        keras.callbacks.CSVLogger(plan.path("training.csv"), append=resuming),
        monitoring.TensorBoardScalars(plan.path("logs")),
    ]
    os.makedirs(plan.path("checkpoints"), exist_ok=True)
    callbacks += plan.kind.callbacks(model, plan)
    pause = os.environ.get(monitoring.PAUSE_ENV)
    if pause:
        callbacks.insert(0, monitoring.PausePerStep(float(pause)))
    return callbacks
