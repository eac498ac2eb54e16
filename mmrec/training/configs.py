"""Training configurations: a run kind's named presets (``"tiny"``, ``"base"``) and JSON files.

Where it sits in the data flow: `mmrec train KIND --config tiny|base|FILE` (and
`mmrec.training.train`) resolve a flat dict of settings here before anything is
built. The settings, their types and the presets belong to the kind's `RunKind`
(`mmrec.training.kinds`). A JSON file holds any subset of one kind's keys, plus
an optional ``"preset"`` ("base" by default) that supplies the rest; an unknown
key is an error that lists the known ones, so a typo never silently trains the
default — inside an object setting too (``encoder_config.image``): its keys are
the kind's `RunKind.object_keys`, derived from the models' constructors.

A setting that is ``null``/``None`` means "the model's default": the kind passes
the model only the settings that are given, so each default lives in one place
(the model). The resolved settings remember which keys were set explicitly (by
the file, the dict or an override) rather than taken from the preset
(`explicit_keys`): a kind may adapt a preset's value to the dataset (the
recommender keeps the preset's modalities that the dataset has), never an
explicit one. ``"tiny"`` is what `mmrec quickstart` trains (the whole quick start
fits in 10 minutes on 2 CPU cores); ``"base"`` is a sensible full run.
"""

from __future__ import annotations

import copy
import json
import os
import types

from mmrec.models.conditioning import conditioning_names
from mmrec.training.kinds import get_run_kind, run_kind_names

PRESETS = ("tiny", "base")
_TYPE_WORDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def __getattr__(name):
    # KINDS follows the registry: a kind registered later is a kind too.
    if name == "KINDS":
        return run_kind_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Settings(dict):
    """A run's resolved settings (a plain dict of key → value), plus `explicit`.

    ``explicit``: the keys set by the config file or dict, or by an override,
    rather than taken from the preset.
    """

    def __init__(self, values=(), explicit=()):
        super().__init__(values)
        self.explicit = frozenset(explicit)


def explicit_keys(settings) -> frozenset:
    """The keys of ``settings`` set explicitly (all of them for a plain dict)."""
    return getattr(settings, "explicit", frozenset(settings))


def known_keys(kind: str) -> list[str]:
    """The settings a config of ``kind`` may hold."""
    return sorted(get_run_kind(kind).settings)


def preset(kind: str, name: str = "base") -> dict:
    """The full settings of one of ``kind``'s presets (a new dict)."""
    presets = get_run_kind(kind).presets
    if name not in presets:
        raise ValueError(f"Expected a preset among {tuple(presets)}. Received: {name!r}")
    return copy.deepcopy({**presets["base"], **presets[name]})


def resolve_config(kind: str, config="base", overrides: dict | None = None) -> dict:
    """The full settings of a ``kind`` run: a preset or a JSON file, then ``overrides``.

    Args:
        kind: a registered run kind (``"recommender"``, ``"gan"``, ``"vae"``, ``"judge"``…).
        config: ``"tiny"``, ``"base"``, the path of a JSON file (a subset of the
            kind's keys and an optional ``"preset"``), or a dict of the same form.
            A ``None`` value means "the model's default".
        overrides: settings that win over the config (``None`` values are ignored),
            e.g. ``{"epochs": 2}`` from ``--epochs 2``.

    Returns:
        A new `Settings` (a dict) with every key of `known_keys(kind)`; a
        `Settings` given as ``config`` keeps its `explicit_keys`.

    Example:

    >>> resolve_config("judge", "tiny", {"epochs": 2})["epochs"]
    2
    >>> resolve_config("judge", {"preset": "tiny", "feature_dim": 32})["feature_dim"]
    32
    >>> resolve_config("gan")["d_learning_rate"] is None  # ConditionalGAN.compile's default
    True
    """
    spec = get_run_kind(kind)
    presets = tuple(spec.presets)
    explicit = set()
    if isinstance(config, str) and config in spec.presets:
        given, source = {"preset": config}, f"preset {config!r}"
    elif isinstance(config, Settings):  # resolved already (the CLI resolves, then trains)
        given, source = dict(config), "the config"
        explicit = set(config.explicit)
    elif isinstance(config, dict):
        given, source = dict(config), "the config"
    elif isinstance(config, str | os.PathLike):
        given, source = _read_json(os.fspath(config), presets), os.fspath(config)
    else:
        raise ValueError(
            f"Expected config to be one of {presets}, a JSON file or a dict. Received: {config!r}"
        )
    name = given.pop("preset", "base")
    if name not in spec.presets:
        raise ValueError(f"{source}: expected 'preset' to be one of {presets}. Received: {name!r}")
    settings = preset(spec.name, name)
    unknown = sorted(set(given) - set(settings))
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {unknown} for a {spec.name} config. Known keys: "
            f"{known_keys(spec.name) + ['preset']}"
        )
    overrides = [(k, v) for k, v in (overrides or {}).items() if v is not None]
    if not isinstance(config, Settings):
        explicit = {key for key, _ in list(given.items()) + overrides}
    else:
        explicit |= {key for key, _ in overrides}
    for key, value in list(given.items()) + overrides:
        if key not in settings:
            raise ValueError(
                f"Unknown setting {key!r} for a {spec.name} run. Known: {known_keys(spec.name)}"
            )
        settings[key] = _check_type(spec.settings[key], key, value, source)
    for key, keys in spec.object_keys.items():
        if settings[key] is not None:
            check_object_keys(settings[key], keys, key, source)
    _check_values(settings, source)
    return Settings(settings, explicit)


def check_object_keys(value, keys, where, source="the config") -> None:
    """Refuses a key of the object ``value`` that the tree ``keys`` does not list, at any level.

    ``keys``: ``{key: None or a tree}`` (`RunKind.object_keys`); ``None`` (the whole
    tree, or a key's) accepts any value. ``where`` names ``value`` in the message.

    >>> check_object_keys({"image": {"filtres": [8]}}, {"image": {"filters": None}},
    ...                   "encoder_config")
    Traceback (most recent call last):
    ...
    ValueError: the config: unknown key "filtres" in encoder_config.image. Valid keys: filters
    """
    if keys is None:
        return
    if not isinstance(value, dict):
        raise ValueError(f"{source}: expected {where} to be an object. Received: {value!r}")
    unknown = [key for key in value if key not in keys]
    if unknown:
        words = "key" if len(unknown) == 1 else "keys"
        quoted = ", ".join(f'"{key}"' for key in unknown)
        raise ValueError(
            f"{source}: unknown {words} {quoted} in {where}. Valid keys: {', '.join(sorted(keys))}"
        )
    for key, item in value.items():
        check_object_keys(item, keys[key], f"{where}.{key}", source)


def _read_json(path, presets):
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"No config file at '{path}' (expected one of {presets} or a JSON file)."
        )
    try:
        with open(path) as f:
            given = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}).") from None
    if not isinstance(given, dict):
        raise ValueError(f"{path}: expected a JSON object of settings. Received: {given!r}")
    return given


def _check_type(expected, key, value, source):
    """The value, if it has the setting's type (integers are numbers too)."""
    allowed = expected.__args__ if isinstance(expected, types.UnionType) else (expected,)
    for kind in allowed:
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind in (int, float) and isinstance(value, bool):
            continue
        if isinstance(value, kind):
            return value
    words = [_TYPE_WORDS.get(kind, kind.__name__) for kind in allowed]
    wanted = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    raise ValueError(f"{source}: expected {key!r} to be {wanted}. Received: {value!r}")


def _check_values(settings, source):
    for key in ("epochs", "batch_size", "steps_per_epoch", "judge_epochs", "sample_every"):
        value = settings.get(key)
        if value is not None and value < 1:
            raise ValueError(f"{source}: expected {key!r} >= 1. Received: {value!r}")
    for key in [k for k in settings if k.endswith("learning_rate")]:
        value = settings[key]
        if value is not None and not value > 0:
            raise ValueError(f"{source}: expected {key!r} > 0. Received: {value!r}")
    if "condition" in settings and settings["condition"] not in conditioning_names():
        raise ValueError(
            f"{source}: expected 'condition' to be one of {list(conditioning_names())}. "
            f"Received: {settings['condition']!r}"
        )
