"""Training configurations: the named presets (``"tiny"``, ``"base"``) and JSON files.

Where it sits in the data flow: `mmrec train KIND --config tiny|base|FILE` (and
`mmrec.training.train`) resolve a flat dict of settings here before anything is
built. A JSON file holds any subset of one kind's keys, plus an optional
``"preset"`` ("base" by default) that supplies the rest; an unknown key is an
error that lists the known ones, so a typo never silently trains the default.

``"tiny"`` is what `mmrec quickstart` trains (the whole quick start fits in 10
minutes on 2 CPU cores); ``"base"`` is a sensible full run.
"""

from __future__ import annotations

import copy
import json
import os

KINDS = ("recommender", "gan", "vae", "judge")
PRESETS = ("tiny", "base")
CONDITIONS = ("user", "attributes", "text")

# --- base: a full run -------------------------------------------------------------------------

_JUDGE_BASE = {
    "judge_epochs": 60,
    "judge_learning_rate": 1e-3,
    "judge_filters": [32, 64, 128],
    "judge_feature_dim": 128,
}

BASE = {
    "recommender": {
        "epochs": 10,
        "batch_size": 512,
        # None: one pass over the training interactions per epoch.
        "steps_per_epoch": None,
        "learning_rate": 3e-3,
        # None: every modality the dataset has.
        "modalities": None,
        "fusion": "concat",
        "embedding_dim": 32,
        "item_id_embedding": False,
        "item_bias": True,
        "user_pooling": "mean",
        "temperature": 0.2,
        # Small encoders: the whole catalogue is embedded at every training step.
        "encoder_config": {
            "image": {"filters": [16, 32, 64]},
            "text": {"hidden_dim": 32, "sequence_length": 24},
            "audio": {"filters": [8, 16, 32], "num_mel_bins": 32},
        },
        # Also train the ID-only two-tower (same settings, no content) as a baseline.
        "id_only_baseline": True,
    },
    "gan": {
        "epochs": 20,
        "batch_size": 64,
        "steps_per_epoch": 300,
        "learning_rate": 2e-4,
        "d_learning_rate": 2e-4,
        # "user" needs a trained recommender (--recommender RUN); "attributes", "text" do not.
        "condition": "user",
        "latent_dim": 64,
        # None: the defaults for the image size.
        "generator_filters": None,
        "discriminator_filters": None,
        "ema_decay": 0.999,
        "loss": "bce",
        "ac_weight": 1.0,
        "augment": True,
        "sample_every": 1,
        **_JUDGE_BASE,
    },
    "vae": {
        "epochs": 20,
        "batch_size": 64,
        "steps_per_epoch": 300,
        "learning_rate": 1e-3,
        "condition": "user",
        "latent_dim": 64,
        "decoder_filters": None,
        "encoder_filters": None,
        "beta": 1.0,
        "sample_every": 1,
        **_JUDGE_BASE,
    },
    "judge": {
        # Adam with a cosine decay; 60 epochs read every attribute of held-out items.
        "epochs": 60,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "filters": [32, 64, 128],
        "feature_dim": 128,
    },
}

# --- tiny: what `mmrec quickstart` trains -------------------------------------------------------

# Shape is the hard attribute: ~30 epochs at a higher learning rate to read it.
_JUDGE_TINY = {
    "judge_epochs": 30,
    "judge_learning_rate": 3e-3,
    "judge_filters": [16, 32, 64],
    "judge_feature_dim": 64,
}

TINY = {
    "recommender": {
        **BASE["recommender"],
        "epochs": 6,
        # Image (at 16×16) + text: each step embeds the whole catalogue, and audio and
        # full-size images cost most of that.
        "modalities": ["image", "text"],
        "encoder_config": {
            "image": {"filters": [8, 16], "image_size": 16},
            "text": {"hidden_dim": 16, "sequence_length": 16},
        },
    },
    "gan": {
        **BASE["gan"],
        "epochs": 6,
        "steps_per_epoch": 100,
        "latent_dim": 32,
        "generator_filters": [128, 64, 32, 16],
        "discriminator_filters": [32, 64, 64],
        "ema_decay": 0.99,
        **_JUDGE_TINY,
    },
    "vae": {
        **BASE["vae"],
        "epochs": 6,
        "steps_per_epoch": 100,
        "latent_dim": 32,
        "decoder_filters": [128, 64, 32, 16],
        "encoder_filters": [32, 64, 64],
        **_JUDGE_TINY,
    },
    "judge": {
        "epochs": 30,
        "batch_size": 64,
        "learning_rate": 3e-3,
        "filters": [16, 32, 64],
        "feature_dim": 64,
    },
}

_PRESETS = {"tiny": TINY, "base": BASE}


def known_keys(kind: str) -> list[str]:
    """The settings a config of ``kind`` may hold."""
    _check_kind(kind)
    return sorted(BASE[kind])


def resolve_config(kind: str, config="base", overrides: dict | None = None) -> dict:
    """The full settings of a ``kind`` run: a preset or a JSON file, then ``overrides``.

    Args:
        kind: ``"recommender"``, ``"gan"``, ``"vae"`` or ``"judge"``.
        config: ``"tiny"``, ``"base"``, the path of a JSON file (a subset of the
            kind's keys and an optional ``"preset"``), or a dict of the same form.
        overrides: settings that win over the config (``None`` values are ignored),
            e.g. ``{"epochs": 2}`` from ``--epochs 2``.

    Returns:
        A new dict with every key of `known_keys(kind)`.

    Example:

    >>> resolve_config("judge", "tiny", {"epochs": 2})["epochs"]
    2
    >>> resolve_config("judge", {"preset": "tiny", "feature_dim": 32})["feature_dim"]
    32
    """
    _check_kind(kind)
    if isinstance(config, str) and config in _PRESETS:
        given, source = {"preset": config}, f"preset {config!r}"
    elif isinstance(config, dict):
        given, source = dict(config), "the config"
    elif isinstance(config, str | os.PathLike):
        given, source = _read_json(os.fspath(config)), os.fspath(config)
    else:
        raise ValueError(
            f"Expected config to be one of {PRESETS}, a JSON file or a dict. Received: {config!r}"
        )
    preset = given.pop("preset", "base")
    if preset not in _PRESETS:
        raise ValueError(
            f"{source}: expected 'preset' to be one of {PRESETS}. Received: {preset!r}"
        )
    settings = copy.deepcopy(_PRESETS[preset][kind])
    unknown = sorted(set(given) - set(settings))
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {unknown} for a {kind} config. Known keys: "
            f"{known_keys(kind) + ['preset']}"
        )
    for key, value in list(given.items()) + [
        (k, v) for k, v in (overrides or {}).items() if v is not None
    ]:
        if key not in settings:
            raise ValueError(f"Unknown setting {key!r} for a {kind} run. Known: {known_keys(kind)}")
        settings[key] = _check_type(kind, key, value, source)
    _check_values(kind, settings, source)
    return settings


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"Expected a kind among {KINDS}. Received: {kind!r}")


def _read_json(path):
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No config file at '{path}' (expected 'tiny', 'base' or a JSON file)."
        )
    try:
        with open(path) as f:
            given = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(given, dict):
        raise ValueError(f"{path}: expected a JSON object of settings. Received: {given!r}")
    return given


def _check_type(kind, key, value, source):
    """The value, if it has the type of the key's default (ints are floats too)."""
    default = BASE[kind][key]
    expected = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif default is None:  # an optional int or list
        ok = value is None or isinstance(value, int | list) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        wanted = "null, an integer or a list" if default is None else expected[type(default)]
        raise ValueError(f"{source}: expected {key!r} to be {wanted}. Received: {value!r}")
    return value


def _check_values(kind, settings, source):
    for key in ("epochs", "batch_size", "steps_per_epoch", "judge_epochs", "sample_every"):
        value = settings.get(key)
        if value is not None and value < 1:
            raise ValueError(f"{source}: expected {key!r} >= 1. Received: {value!r}")
    for key in ("learning_rate", "d_learning_rate", "judge_learning_rate"):
        value = settings.get(key)
        if value is not None and not value > 0:
            raise ValueError(f"{source}: expected {key!r} > 0. Received: {value!r}")
    if "condition" in settings and settings["condition"] not in CONDITIONS:
        raise ValueError(
            f"{source}: expected 'condition' to be one of {CONDITIONS}. "
            f"Received: {settings['condition']!r}"
        )
