"""`train`: one training run — config → model → `model.fit` → evaluation → run folder.

Where it sits in the data flow: between a dataset (`mmrec.data.load`) and the
exported models. `mmrec train KIND` and `mmrec quickstart` are thin shells over
it. One call trains a ``"recommender"``, a ``"gan"``, a ``"vae"`` or the
``"judge"`` of generated images with ``model.fit`` and Keras callbacks, scores
it, and leaves everything in one folder::

    runs/NAME/
      config.json     the resolved settings and how the run was started
      model.keras     the trained model
      metrics.json    the final metrics (written last: it marks a finished run)
      training.csv    one row of metrics per epoch (CSVLogger)
      logs/           TensorBoard: train/ and validation/ scalars, images/ sample grids
      checkpoints/    ModelCheckpoint: best.keras (recommender, by val_loss) or last.keras
      backup/         BackupAndRestore state (removed once the run has finished)
      samples/        generators: a grid per epoch and final.png
      judge/          generators: the judge trained for this run (unless one was given)

Started again with the same arguments, an interrupted run (crash, SIGKILL,
preemption) resumes from its last completed epoch: `BackupAndRestore` restores
the weights and optimizer state, and the input pipeline skips the batches those
epochs consumed, so the resumed run sees the batches an uninterrupted run would.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import sys
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from mmrec.training import distribute, monitoring, samples
from mmrec.training.callbacks import SampleGrid, write_png
from mmrec.training.configs import KINDS, resolve_config

PRECISIONS = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
_BACKUP = "backup"


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
        kind: ``"recommender"``, ``"gan"``, ``"vae"`` or ``"judge"``.
        data: a dataset folder or a `mmrec.data.load` result.
        out: the run folder, e.g. ``"runs/rec"``.
        config: ``"tiny"``, ``"base"``, a JSON file or a dict (`resolve_config`).
        recommender: for generators conditioned on users: a trained `Recommender`,
            its ``.keras`` file or its run folder; the generator conditions on its
            frozen user tower.
        judge: for generators: a trained `AttributeJudge`, its ``.keras`` file or
            its run folder; ``None`` trains one into ``out/judge``.
        strategy: ``"default"``, ``"mirrored"``, ``"multiworker"`` or a
            `tf.distribute.Strategy`. ``batch_size`` is the global batch.
        mixed_precision: ``"off"``, ``"float16"`` or ``"bfloat16"``.
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
    if kind not in KINDS:
        raise ValueError(f"Expected kind to be one of {KINDS}. Received: kind={kind!r}")
    if mixed_precision not in PRECISIONS:
        raise ValueError(
            f"Expected mixed_precision to be one of {tuple(PRECISIONS)}. "
            f"Received: mixed_precision={mixed_precision!r}"
        )
    settings = resolve_config(kind, config)
    _check_options(kind, settings, recommender, judge, jit_compile)
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
        "kind": kind,
        "config": settings,
        "data": data.path,
        "seed": seed,
        "mixed_precision": mixed_precision,
        "jit_compile": bool(jit_compile),
        "strategy": strategy_name,
        "replicas": strategy.num_replicas_in_sync,
        "recommender": _describe(recommender),
        "judge": _describe(judge),
    }
    initial_epoch = _prepare_run_dir(run_dir, record, overwrite)
    start = time.perf_counter()

    replicas = strategy.num_replicas_in_sync
    plan = _Plan(kind, settings, data, replicas, seed)
    if initial_epoch:
        print(f"{run_dir}: resuming after epoch {initial_epoch} of {plan.epochs}", flush=True)
    from mmrec.training import precision_policy  # defined in the package's __init__

    user_encoder = None
    if recommender is not None:
        recommender = _load_recommender(recommender)
    keras.utils.set_random_seed(seed)
    with precision_policy(PRECISIONS[mixed_precision]), distribute.model_scope(strategy):
        if recommender is not None:
            user_encoder = frozen_user_encoder(recommender)
        model = _BUILDERS[kind](data, settings, seed, user_encoder)
        _compile(model, kind, settings, plan, jit_compile)
    distribute.direct_predict_on_batch(model, strategy)

    train_data, valid_data = plan.datasets(initial_epoch)
    callbacks = _callbacks(model, kind, settings, data, run_dir, resuming=initial_epoch > 0)
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
            f"start again; {os.path.join(run_dir, _BACKUP)} keeps the last good epoch."
        )
    if not is_chief:
        return RunResult(run_dir, model, {}, history)

    model.save(os.path.join(run_dir, "model.keras"))
    metrics = {
        "kind": kind,
        "epochs": plan.epochs,
        "steps_per_epoch": plan.steps,
        "batch_size": plan.batch_size,
        "replicas": replicas,
        "last_epoch": _last_epoch(run_dir),
    }
    metrics.update(_EVALUATORS[kind](model, data, settings, run_dir, judge, plan))
    metrics["seconds"] = round(time.perf_counter() - start, 1)
    _write_json(os.path.join(run_dir, "metrics.json"), metrics)
    shutil.rmtree(os.path.join(run_dir, _BACKUP), ignore_errors=True)
    return RunResult(run_dir, model, metrics, history)


# --- options ---------------------------------------------------------------------------------


def _check_options(kind, settings, recommender, judge, jit_compile):
    generator = kind in ("gan", "vae")
    condition = settings.get("condition")
    if generator and condition == "user" and recommender is None:
        raise ValueError(
            f"A user-conditioned {kind} conditions on a trained recommender's user tower: give "
            "--recommender RUN (a folder from `mmrec train recommender`), or set "
            '"condition": "attributes" (or "text") in a --config file.'
        )
    if recommender is not None and not (generator and condition == "user"):
        raise ValueError(
            "--recommender is used only by user-conditioned gan/vae runs. "
            f"Received it for a {kind} run"
            + (f" with condition={condition!r}." if generator else ".")
        )
    if judge is not None and not generator:
        raise ValueError(f"--judge is used only by gan/vae runs. Received it for a {kind} run.")
    if jit_compile and condition == "text":
        raise ValueError(
            "--jit cannot compile a text-conditioned generator: tensorflow-text ops have no "
            "XLA kernels. Drop --jit or use another condition."
        )


def _describe(value):
    if value is None or isinstance(value, str | os.PathLike):
        return None if value is None else os.path.abspath(os.fspath(value))
    return f"<in-memory {type(value).__name__}>"


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


# --- the run folder ----------------------------------------------------------------------------

# What must match for a run to be resumed (the strategy may change: a job restarted
# on fewer devices resumes the same training).
_RESUME_KEYS = ("kind", "config", "data", "seed", "mixed_precision", "recommender", "judge")


def _prepare_run_dir(run_dir, record, overwrite) -> int:
    """Creates or checks the run folder; returns the epoch to resume from (0: fresh)."""
    if overwrite and os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    if os.path.exists(os.path.join(run_dir, "metrics.json")):
        raise FileExistsError(
            f"'{run_dir}' already holds a finished {record['kind']} run (metrics.json). "
            "Choose another --out, or pass --overwrite to replace it."
        )
    config_path = os.path.join(run_dir, "config.json")
    if os.path.exists(config_path):
        with open(config_path) as f:
            previous = json.load(f)
        changed = [k for k in _RESUME_KEYS if previous.get(k) != record[k]]
        if changed:
            details = "; ".join(f"{k}: {previous.get(k)!r} → {record[k]!r}" for k in changed)
            raise ValueError(
                f"'{run_dir}' holds an unfinished run started with other settings ({details}). "
                "Run the same command to resume it, choose another --out, or pass --overwrite."
            )
    os.makedirs(run_dir, exist_ok=True)
    _write_json(config_path, {**record, "mmrec_version": _version()})
    metadata = os.path.join(run_dir, _BACKUP, "training_metadata.json")
    if not os.path.exists(metadata):
        return 0
    with open(metadata) as f:
        return int(json.load(f).get("epoch", 0))


def _write_json(path, payload):
    """Writes JSON atomically (a reader never sees half a file)."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump(payload, f, indent=2, default=_json_default)
    os.replace(temporary, path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")


def _version():
    from mmrec import __version__

    return __version__


def _last_epoch(run_dir):
    """The last row of training.csv (the last epoch's metrics, across resumptions)."""
    path = os.path.join(run_dir, "training.csv")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: (int(v) if k == "epoch" else float(v)) for k, v in rows[-1].items() if v != ""}


# --- what each kind trains on ------------------------------------------------------------------


class _Plan:
    """Batch size, steps and the input pipelines of a run."""

    def __init__(self, kind, settings, data, replicas, seed):
        self.kind, self.settings, self.data, self.seed = kind, settings, data, seed
        self.epochs = settings["epochs"]
        if kind == "judge":
            from mmrec.evaluation.generation import judge_split

            train_ids, held_out = judge_split(data.info.num_items)
            examples, valid = len(train_ids), len(held_out)
        else:
            examples, valid = data.info.splits["train"], data.info.splits["valid"]
        self.batch_size = _fit_batch(settings["batch_size"], examples, replicas, "training")
        self.valid_batch_size = _fit_batch(settings["batch_size"], valid, replicas, "validation")
        self.steps = settings.get("steps_per_epoch") or max(1, examples // self.batch_size)
        self.valid_steps = valid // self.valid_batch_size
        if kind == "judge":  # the judge's batches keep their remainder
            self.steps = settings.get("steps_per_epoch") or -(-examples // self.batch_size)
            self.valid_steps = -(-valid // self.valid_batch_size)

    def datasets(self, initial_epoch=0):
        """(training, validation) datasets; training skips the epochs already done."""
        data, batch, seed = self.data, self.batch_size, self.seed
        if self.kind == "recommender":
            train = data.interactions(
                "train", batch_size=batch, repeat=True, drop_remainder=True, cache=True, seed=seed
            )
            valid = data.interactions(
                "valid", batch_size=self.valid_batch_size, drop_remainder=True, cache=True
            )
        elif self.kind == "judge":
            from mmrec.evaluation.generation import judge_dataset

            train = judge_dataset(data, "train", batch, seed).repeat()
            valid = judge_dataset(data, "held_out", self.valid_batch_size)
        else:
            train = data.generation_pairs(
                "train", batch_size=batch, repeat=True, drop_remainder=True, seed=seed
            )
            valid = data.generation_pairs(
                "valid", batch_size=self.valid_batch_size, drop_remainder=True
            )
        if initial_epoch:
            train = train.skip(initial_epoch * self.steps)
        # A known length: Keras then needs no end-of-data probe (and prints no warning).
        valid = valid.apply(tf.data.experimental.assert_cardinality(self.valid_steps))
        return distribute.shard_by_data(train), distribute.shard_by_data(valid)


def _fit_batch(batch_size, examples, replicas, what):
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


# --- building and compiling --------------------------------------------------------------------


def _build_recommender(data, settings, seed, user_encoder):
    from mmrec.models.recommender import Recommender

    modalities = settings["modalities"]
    return Recommender.from_dataset(
        data,
        modalities=None if modalities is None else tuple(modalities),
        fusion=settings["fusion"],
        embedding_dim=settings["embedding_dim"],
        item_id_embedding=settings["item_id_embedding"],
        item_bias=settings["item_bias"],
        user_pooling=settings["user_pooling"],
        encoder_config=settings["encoder_config"],
        temperature=settings["temperature"],
        name="recommender",
    )


def _build_gan(data, settings, seed, user_encoder):
    from mmrec.models import ConditionalGAN

    return ConditionalGAN.from_dataset(
        data,
        condition=settings["condition"],
        user_encoder=user_encoder,
        latent_dim=settings["latent_dim"],
        generator_filters=settings["generator_filters"],
        discriminator_filters=settings["discriminator_filters"],
        ema_decay=settings["ema_decay"],
        seed=seed,
        name="cgan",
    )


def _build_vae(data, settings, seed, user_encoder):
    from mmrec.models import ConditionalVAE

    return ConditionalVAE.from_dataset(
        data,
        condition=settings["condition"],
        user_encoder=user_encoder,
        latent_dim=settings["latent_dim"],
        decoder_filters=settings["decoder_filters"],
        encoder_filters=settings["encoder_filters"],
        beta=settings["beta"],
        seed=seed,
        name="cvae",
    )


def _build_judge(data, settings, seed, user_encoder):
    from mmrec.evaluation.generation import AttributeJudge

    return AttributeJudge.from_dataset(
        data,
        filters=settings["filters"],
        feature_dim=settings["feature_dim"],
        name="attribute_judge",
    )


_BUILDERS = {
    "recommender": _build_recommender,
    "gan": _build_gan,
    "vae": _build_vae,
    "judge": _build_judge,
}


def _compile(model, kind, settings, plan, jit_compile):
    jit = True if jit_compile else "auto"
    if kind == "recommender":
        model.compile(keras.optimizers.Adam(settings["learning_rate"]), jit_compile=jit)
    elif kind == "gan":
        model.compile(
            d_optimizer=keras.optimizers.Adam(settings["d_learning_rate"], beta_1=0.5),
            g_optimizer=keras.optimizers.Adam(settings["learning_rate"], beta_1=0.5),
            loss=settings["loss"],
            ac_weight=settings["ac_weight"],
            augment=settings["augment"],
            jit_compile=jit,
        )
    elif kind == "vae":
        model.compile(keras.optimizers.Adam(settings["learning_rate"]), jit_compile=jit)
    else:  # as `mmrec.evaluation.train_judge`: Adam with a cosine decay
        schedule = keras.optimizers.schedules.CosineDecay(
            settings["learning_rate"], decay_steps=plan.epochs * plan.steps, alpha=0.01
        )
        model.compile(keras.optimizers.Adam(schedule), jit_compile=jit)


def _load_recommender(recommender):
    from mmrec.models.recommender import Recommender

    if isinstance(recommender, Recommender):
        return recommender
    path = os.fspath(recommender)
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No trained recommender at '{path}' (expected a run folder of "
            "`mmrec train recommender` or a .keras file)."
        )
    model = keras.saving.load_model(path, compile=False)
    if not isinstance(model, Recommender):
        raise ValueError(
            f"Expected '{path}' to hold a Recommender. Received: {type(model).__name__}"
        )
    return model


def frozen_user_encoder(recommender, batch_size=1024) -> keras.Model:
    """A recommender's user tower over *precomputed* item embeddings: ``{"history"}`` → [B, D].

    `Recommender.user_encoder` embeds the whole catalogue at every call, which a
    generator conditioned on it would pay at every training step. Here the
    catalogue is embedded once into a frozen `Embedding` table and the user
    tower's layers are copied, so the result equals ``recommender.user_encoder``
    and costs one gather per call. Frozen (``trainable=False``); saves and loads
    like any functional model.
    """
    from mmrec.layers import UserEncoder

    items = keras.ops.convert_to_numpy(recommender.item_embeddings(batch_size=batch_size))
    num_items, dim = items.shape
    # Any history length (generate() pads to the longest history it is given).
    history = keras.Input(shape=(None,), dtype="int32", name="history")
    table = keras.layers.Embedding(num_items, dim, trainable=False, name="item_embeddings")
    tower = recommender.user_tower
    pooling = UserEncoder.from_config(tower.get_config())
    hidden = keras.layers.Dense.from_config(recommender.user_hidden.get_config())
    projection = keras.layers.Dense.from_config(recommender.user_projection.get_config())
    gathered = table(keras.ops.maximum(history, 0))
    pooled = pooling(gathered, item_ids=history)
    user = keras.ops.cast(projection(hidden(pooled)), "float32")
    user = keras.layers.UnitNormalization(name="user_embedding", dtype="float32")(user)
    model = keras.Model({"history": history}, user, name="user_encoder")
    table.set_weights([items])
    for copy, original in ((pooling, tower), (hidden, recommender.user_hidden)):
        copy.set_weights(original.get_weights())
    projection.set_weights(recommender.user_projection.get_weights())
    model.trainable = False
    return model


# --- callbacks ---------------------------------------------------------------------------------


def _callbacks(model, kind, settings, data, run_dir, resuming):
    # Order matters at an epoch's end: the backup is written before the CSV row, so a
    # row in training.csv always has its backup (the resume tests rely on it).
    callbacks = [
        monitoring.BackupAndRestore(
            os.path.join(run_dir, _BACKUP), double_checkpoint=True, delete_checkpoint=False
        ),
        monitoring.TerminateOnNaN(),
        keras.callbacks.CSVLogger(os.path.join(run_dir, "training.csv"), append=resuming),
        monitoring.TensorBoardScalars(os.path.join(run_dir, "logs")),
    ]
    checkpoints = os.path.join(run_dir, "checkpoints")
    os.makedirs(checkpoints, exist_ok=True)
    if kind in ("recommender", "judge"):
        callbacks.append(
            keras.callbacks.ModelCheckpoint(
                os.path.join(checkpoints, "best.keras"), monitor="val_loss", save_best_only=True
            )
        )
    else:
        callbacks.append(keras.callbacks.ModelCheckpoint(os.path.join(checkpoints, "last.keras")))
        callbacks.append(
            SampleGrid(
                samples.grid_conditions(data, settings["condition"]),
                directory=os.path.join(run_dir, "samples"),
                num=8,
                log_dir=os.path.join(run_dir, "logs", "images"),
                every=settings["sample_every"],
                seed=1234,
            )
        )
    pause = os.environ.get(monitoring.PAUSE_ENV)
    if pause:
        callbacks.insert(0, monitoring.PausePerStep(float(pause)))
    return callbacks


# --- evaluation ----------------------------------------------------------------------------------


def _evaluate_recommender(model, data, settings, run_dir, judge, plan):
    from mmrec.evaluation.ranking import (
        OracleBaseline,
        PopularityBaseline,
        evaluate_ranking,
        ranking_table,
    )

    scorers = {"popularity": PopularityBaseline(data)}
    if settings["id_only_baseline"]:
        scorers["id_only"] = _train_id_only(data, settings, plan)
    scorers["recommender"] = model
    if data.info.affinity and data.info.user_preferences:
        scorers["oracle"] = OracleBaseline(data)
    results = {name: evaluate_ranking(s, data, "test") for name, s in scorers.items()}
    table = ranking_table(results)
    print(f"\n{data.info.name}: test split\n{table}", flush=True)
    return {"test": results, "table": table}


def _train_id_only(data, settings, plan):
    """The ID-only two-tower baseline: the same settings without content (default strategy)."""
    from mmrec.models.recommender import Recommender

    keras.utils.set_random_seed(plan.seed)
    model = Recommender.from_dataset(
        data,
        modalities=(),
        item_id_embedding=True,
        embedding_dim=settings["embedding_dim"],
        user_pooling=settings["user_pooling"],
        temperature=settings["temperature"],
        name="id_only",
    )
    model.compile(keras.optimizers.Adam(settings["learning_rate"]))
    train_data = data.interactions(
        "train", batch_size=plan.batch_size, repeat=True, drop_remainder=True, seed=plan.seed
    )
    model.fit(train_data, epochs=plan.epochs, steps_per_epoch=plan.steps, verbose=0)
    return model


def _evaluate_judge(model, data, settings, run_dir, judge, plan):
    from mmrec.evaluation.generation import held_out_accuracy

    accuracy = held_out_accuracy(model, data)
    print("judge held-out accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    return {"held_out_accuracy": accuracy}


def _evaluate_generator(model, data, settings, run_dir, judge, plan):
    from mmrec.evaluation.generation import evaluate_generation

    judge_model, judge_report = _judge_for(data, settings, run_dir, judge, plan.seed)
    report = {
        "condition": settings["condition"],
        "judge": judge_report,
        "generation": evaluate_generation(model, data, judge_model, seed=plan.seed),
    }
    last = _last_epoch(run_dir)
    if plan.kind == "vae" and "val_neg_elbo" in last:
        pixels = data.info.image_size**2 * 3
        report["valid"] = {k: last[f"val_{k}"] for k in ("reconstruction", "kl", "neg_elbo")}
        report["valid"]["bits_per_dim"] = last["val_neg_elbo"] / (pixels * np.log(2))
    final = samples.generate_grid(model, samples.grid_conditions(data, settings["condition"]))
    write_png(os.path.join(run_dir, "samples", "final.png"), final)
    report["sample_grid"] = os.path.join(run_dir, "samples", "final.png")
    print(generation_table(report), flush=True)
    return report


def _judge_for(data, settings, run_dir, judge, seed):
    """(judge model, {"path", "held_out_accuracy"}): given, or trained into ``run_dir/judge``."""
    from mmrec.evaluation.generation import AttributeJudge, held_out_accuracy

    if isinstance(judge, AttributeJudge):
        return judge, {"path": None, "held_out_accuracy": held_out_accuracy(judge, data)}
    if judge is None:
        folder = os.path.join(run_dir, "judge")
        if not os.path.exists(os.path.join(folder, "metrics.json")):
            print(f"\ntraining the judge of generated images into {folder}", flush=True)
            config = {
                "preset": "base",
                "epochs": settings["judge_epochs"],
                "learning_rate": settings["judge_learning_rate"],
                "filters": settings["judge_filters"],
                "feature_dim": settings["judge_feature_dim"],
            }
            train("judge", data, folder, config, seed=seed, strategy=tf.distribute.get_strategy())
        judge = folder
    path = os.fspath(judge)
    model_path = os.path.join(path, "model.keras") if os.path.isdir(path) else path
    if not os.path.exists(model_path):
        raise FileNotFoundError(
            f"No trained judge at '{path}' (expected a run folder of `mmrec train judge` "
            "or a .keras file)."
        )
    model = keras.saving.load_model(model_path, compile=False)
    if not isinstance(model, AttributeJudge):
        raise ValueError(
            f"Expected '{model_path}' to hold an AttributeJudge. Received: {type(model).__name__}"
        )
    return model, {"path": model_path, "held_out_accuracy": held_out_accuracy(model, data)}


def generation_table(report) -> str:
    """The judge's verdict on a generator, as aligned text lines."""
    generation = report["generation"]
    rows = [
        ("judge held-out accuracy", _join(report["judge"]["held_out_accuracy"])),
        ("conditional accuracy", _join(generation["conditional_accuracy"])),
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
    rows.append(
        (
            "FCD / KCD",
            f"{generation['fcd']:.2f} / {generation['kcd']:.3f} "
            f"(real vs real: {generation['fcd_real_reference']:.2f})",
        )
    )
    rows.append(
        (
            "diversity",
            f"{generation['diversity']:.3f} "
            f"(real items alike: {generation['diversity_real_reference']:.3f})",
        )
    )
    if "valid" in report:
        valid = report["valid"]
        rows.append(
            (
                "valid −ELBO",
                f"{valid['neg_elbo']:.1f} nats/image = {valid['bits_per_dim']:.3f} "
                f"bits/dim (KL {valid['kl']:.1f})",
            )
        )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def _join(values):
    return ", ".join(f"{k} {v:.3f}" for k, v in values.items())


_EVALUATORS = {
    "recommender": _evaluate_recommender,
    "gan": _evaluate_generator,
    "vae": _evaluate_generator,
    "judge": _evaluate_judge,
}
