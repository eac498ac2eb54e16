"""The run folder: created, checked for resuming, written atomically, and read back.

Where it sits in the data flow: `mmrec.training.train` writes one folder per run
(``config.json``, ``model.keras``, ``metrics.json``, ``training.csv``, ``logs/``,
``checkpoints/``, ``backup/``…; see `mmrec.training.runner`), and everything that
uses a trained model — the generators conditioned on a recommender, the judge of
a generator, ``mmrec evaluate``/``export``/``generate`` — reads it back with
`load_run_model`.
"""

from __future__ import annotations

import csv
import importlib
import json
import os
import shutil

import keras
import numpy as np

BACKUP = "backup"
MODEL_FILE = "model.keras"

# Modules that define the classes a saved mmrec model names: Keras imports only its own
# packages when loading, so a custom class must be registered (imported) first.
SAVEABLE_MODULES = (
    "mmrec.models.recommender",
    "mmrec.models.gan",
    "mmrec.models.vae",
    "mmrec.models.text_generation",
    "mmrec.models.audio_generation",
    "mmrec.models.item_generation",
    "mmrec.evaluation.generation",
    "mmrec.evaluation.text",
    "mmrec.evaluation.audio",
)

# What a run writes while it trains (before metrics.json): replaced when a run that never
# completed an epoch is started again (a partial backup of other settings would not load).
TRAINING_OUTPUTS = (BACKUP, "checkpoints", "logs", "samples", "training.csv")

# What must match for a run to be resumed (the strategy may change: a job restarted
# on fewer devices resumes the same training).
RESUME_KEYS = ("kind", "config", "data", "seed", "mixed_precision", "recommender", "judge")


def run_model_path(path) -> str:
    """The ``.keras`` file of ``path``: the file itself, or a run folder's ``model.keras``."""
    path = os.fspath(path)
    return os.path.join(path, MODEL_FILE) if os.path.isdir(path) else path


def load_run_model(path, expected_class=keras.Model) -> keras.Model:
    """Loads a trained model from a run folder or a ``.keras`` file, and checks its class.

    Loads without compiling, in Keras' safe mode (no arbitrary code runs). An
    in-memory model of ``expected_class`` is returned as it is.

    Args:
        path: a run folder (its ``model.keras``), a ``.keras`` file, or a model.
        expected_class: the class (or tuple of classes) the model must be an instance of.

    Returns:
        The model.

    Raises:
        FileNotFoundError: nothing to load at ``path``.
        ValueError: the model is not an ``expected_class``; the message says what
            was expected and what was found.

    Example:

    ```python
    rec = load_run_model("runs/rec", Recommender)
    gan = load_run_model("runs/gan/model.keras", (ConditionalGAN, ConditionalVAE))
    ```
    """
    wanted = _class_names(expected_class)
    if isinstance(path, keras.Model):
        model, where = path, "the model given"
    else:
        model_path = run_model_path(path)
        if not os.path.exists(model_path):
            raise FileNotFoundError(
                f"No trained {wanted} at '{model_path}' (expected a run folder of "
                f"`mmrec train` or a .keras file)."
            )
        _import_saveable_classes()
        model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
        where = f"'{model_path}'"
    if not isinstance(model, expected_class):
        raise ValueError(f"Expected {where} to hold a {wanted}. Received: {type(model).__name__}")
    return model


def _import_saveable_classes():
    from mmrec.models.conditioning import conditioning_names, get_conditioning

    for module in SAVEABLE_MODULES:
        importlib.import_module(module)
    for name in conditioning_names():  # a generator's config names its conditioning
        get_conditioning(name)


def _class_names(classes) -> str:
    classes = classes if isinstance(classes, tuple) else (classes,)
    return " or ".join(c.__name__ for c in classes)


def describe(value):
    """How ``config.json`` records a model argument: its absolute path, or what it is."""
    if value is None or isinstance(value, str | os.PathLike):
        return None if value is None else os.path.abspath(os.fspath(value))
    return f"<in-memory {type(value).__name__}>"


def training_started(run_dir) -> bool:
    """Whether the run in ``run_dir`` completed (and backed up) an epoch: something to resume.

    The marker is the backup's ``training_metadata.json``, which `BackupAndRestore`
    writes after the weights at the end of each epoch whose metrics are finite.
    """
    return os.path.exists(os.path.join(run_dir, BACKUP, "training_metadata.json"))


def prepare_run_dir(run_dir, record, overwrite) -> int:
    """Creates or checks the run folder; returns the epoch to resume from (0: fresh).

    A finished run (``metrics.json``) is kept unless ``overwrite``; an unfinished
    one that completed an epoch (`training_started`) resumes only if ``record``
    matches its ``config.json`` on `RESUME_KEYS`. A run that failed before it
    completed an epoch has nothing to resume: its config and what it wrote while
    training (`TRAINING_OUTPUTS`) are replaced, whatever the settings.
    """
    if overwrite and os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    if os.path.exists(os.path.join(run_dir, "metrics.json")):
        raise FileExistsError(
            f"'{run_dir}' already holds a finished {record['kind']} run (metrics.json). "
            "Choose another --out, or pass --overwrite to replace it."
        )
    config_path = os.path.join(run_dir, "config.json")
    if os.path.exists(config_path) and not training_started(run_dir):
        for name in TRAINING_OUTPUTS:
            path = os.path.join(run_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    elif os.path.exists(config_path):
        with open(config_path) as f:
            previous = json.load(f)
        changed = [k for k in RESUME_KEYS if previous.get(k) != record[k]]
        if changed:
            details = "; ".join(f"{k}: {previous.get(k)!r} → {record[k]!r}" for k in changed)
            raise ValueError(
                f"'{run_dir}' holds an unfinished run started with other settings ({details}). "
                "Run the same command to resume it, choose another --out, or pass --overwrite."
            )
    os.makedirs(run_dir, exist_ok=True)
    write_json(config_path, {**record, "mmrec_version": _version()})
    metadata = os.path.join(run_dir, BACKUP, "training_metadata.json")
    if not os.path.exists(metadata):
        return 0
    with open(metadata) as f:
        return int(json.load(f).get("epoch", 0))


def write_json(path, payload) -> None:
    """Writes JSON atomically (a reader never sees half a file)."""
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump(payload, f, indent=2, default=_json_default)
    os.replace(temporary, path)


def read_json(path):
    """The JSON at ``path``, or ``None`` if there is no file."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")


def _version():
    from mmrec import __version__

    return __version__


def last_epoch(run_dir) -> dict:
    """The last row of training.csv (the last epoch's metrics, across resumptions)."""
    path = os.path.join(run_dir, "training.csv")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: (int(v) if k == "epoch" else float(v)) for k, v in rows[-1].items() if v != ""}
