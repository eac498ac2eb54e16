"""The on-disk contract of an mmrec dataset: record features, `dataset.json`, errors.

A dataset folder holds sharded GZIP TFRecords of three kinds — items, interactions
(one set of shards per split) and users — plus `dataset.json`, which says which
modalities and attributes exist and lists every shard with its record count and
SHA-256. An imported dataset also holds its id maps (`item_keys.txt`,
`user_keys.txt`: line i is the external key of internal id i), listed under
`id_maps` and checksummed under `checksums`. Readers (`mmrec.data.pipeline`) and
writers (`mmrec.data.tfrecord`) both take their feature names from here, so the
two can never disagree.
"""

from __future__ import annotations

import dataclasses
import json
import os

from mmrec import formats

SCHEMA_VERSION = 1
METADATA_FILE = "dataset.json"
VOCABULARY_FILE = "vocab.txt"
SPLITS = ("train", "valid", "test")
MODALITIES = formats.MODALITIES
RECORD_KINDS = ("items", "users", "interactions")
# Id maps of imported datasets: UTF-8, one key per line, line i = the key of id i.
ID_MAP_FILES = {"items": "item_keys.txt", "users": "user_keys.txt"}

# Padding for variable-length item-id lists (histories). Item ids are 0..N-1.
PAD_ID = formats.PAD_ID

# --- item records --------------------------------------------------------------
ITEM_ID = "item_id"  # int64
IMAGE = "image"  # bytes: PNG (JPEG also accepted when reading)
TEXT = "text"  # bytes: UTF-8 description
AUDIO = "audio"  # bytes: mono 16-bit PCM WAV
POPULARITY = "popularity"  # float: ground-truth popularity weight (synthetic data)
LABEL_PREFIX = formats.LABEL_PREFIX  # int64 per attribute: label_shape, label_colour, ...

# --- interaction records ---------------------------------------------------------
USER_ID = "user_id"  # int64
HISTORY = "history"  # int64 list: item ids the user chose before, oldest first
HISTORY_TIMESTAMPS = "history_timestamps"  # int64 list, same length as history
TARGET = "target"  # int64: the item chosen next
TARGET_TIMESTAMP = "target_timestamp"  # int64

# --- user records ----------------------------------------------------------------
PREFERENCE_PREFIX = "pref_"  # int64 list per attribute: the user's favourite values


class DataError(ValueError):
    """Base class of every error about data on disk (a subclass of `ValueError`)."""


class SchemaError(DataError):
    """`dataset.json` or a record does not follow the schema this version reads."""


class ChecksumError(DataError):
    """A shard's bytes differ from the SHA-256 recorded when it was written."""


class CorruptRecordError(DataError):
    """A shard cannot be read, or one of its records is invalid."""


label_key = formats.label_key


def preference_key(attribute: str) -> str:
    return PREFERENCE_PREFIX + attribute


@dataclasses.dataclass(frozen=True)
class Shard:
    file: str  # relative to the dataset folder
    records: int
    sha256: str


@dataclasses.dataclass
class DatasetInfo:
    """The parsed `dataset.json`: what a dataset holds and where its shards are."""

    name: str
    modalities: tuple[str, ...]
    attributes: dict[str, list[str]]
    num_items: int
    num_users: int
    shards: dict[str, list[Shard]]  # "items", "users", "interactions-train", ...
    image_size: int | None = None
    image_channels: int = 3
    audio_sample_rate: int | None = None
    audio_samples: int | None = None
    user_preferences: tuple[str, ...] = ()
    affinity: dict[str, float] = dataclasses.field(default_factory=dict)
    cold_items: list[int] = dataclasses.field(default_factory=list)
    max_history: int = 50
    seed: int | None = None
    generator: dict = dataclasses.field(default_factory=dict)
    # "items"/"users" → the id-map file (ID_MAP_FILES); empty for the benchmarks.
    id_maps: dict[str, str] = dataclasses.field(default_factory=dict)
    # Files other than shards (the id maps) → their SHA-256, verified like shards.
    checksums: dict[str, str] = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown:
            raise SchemaError(
                f"Expected modalities to be a subset of {list(MODALITIES)}. "
                f"Received: modalities={list(self.modalities)}"
            )
        if "image" in self.modalities and not self.image_size:
            raise SchemaError("A dataset with images must record image_size in dataset.json.")
        if "audio" in self.modalities and not (self.audio_sample_rate and self.audio_samples):
            raise SchemaError(
                "A dataset with audio must record audio_sample_rate and audio_samples "
                "in dataset.json."
            )
        unknown = sorted(set(self.id_maps) - set(ID_MAP_FILES))
        if unknown:
            raise SchemaError(
                f"Expected id_maps keys among {sorted(ID_MAP_FILES)}. Received: {unknown}"
            )
        unchecked = sorted(f for f in self.id_maps.values() if f not in self.checksums)
        if unchecked:
            raise SchemaError(f"Expected a sha256 under 'checksums' for the id maps {unchecked}.")

    @property
    def strong_preferences(self) -> tuple[str, ...]:
        """The user preferences that define a personalisation *hit*.

        Those whose affinity weight is at least half the largest one (shapes:
        colour and shape, not the weak pattern term; Fashion-MNIST: category, not
        brightness); all of them when the dataset records no weights. An item is
        a hit for a user when each of these attributes is among the user's favourites.
        """
        weights = {a: self.affinity.get(a) for a in self.user_preferences}
        if not all(isinstance(w, (int, float)) for w in weights.values()):
            return tuple(self.user_preferences)
        top = max(weights.values(), default=0.0)
        return tuple(a for a, w in weights.items() if w >= 0.5 * top)

    @property
    def splits(self) -> dict[str, int]:
        """Number of interaction records per split."""
        return {
            split: sum(s.records for s in self.shards.get(f"interactions-{split}", []))
            for split in SPLITS
        }

    def shard_list(self, kind: str) -> list[Shard]:
        try:
            return self.shards[kind]
        except KeyError:
            raise SchemaError(
                f"Expected dataset.json to list shards for '{kind}'. "
                f"Received shard kinds: {sorted(self.shards)}"
            ) from None

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["modalities"] = list(self.modalities)
        out["user_preferences"] = list(self.user_preferences)
        out["counts"] = {"items": self.num_items, "users": self.num_users, **self.splits}
        # Keep the version first so that a reader sees it before anything else.
        return {"schema_version": out.pop("schema_version"), **out}

    @classmethod
    def from_json(cls, data: dict, source: str = METADATA_FILE) -> DatasetInfo:
        if not isinstance(data, dict):
            raise SchemaError(
                f"{source}: expected a JSON object. Received: {type(data).__name__} {data!r:.80}"
            )
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaError(
                f"{source}: expected schema_version {SCHEMA_VERSION} (what this mmrec reads). "
                f"Received: schema_version={version!r}. Re-create the dataset with this "
                "version of mmrec."
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in fields}
        missing = {"name", "modalities", "attributes", "num_items", "num_users", "shards"}
        missing -= set(kwargs)
        if missing:
            raise SchemaError(f"{source}: missing required keys {sorted(missing)}.")
        check_fields(kwargs, source)
        try:
            kwargs["shards"] = {
                kind: [Shard(**s) for s in shards] for kind, shards in kwargs["shards"].items()
            }
        except TypeError as e:
            raise SchemaError(f"{source}: malformed shard entry ({e}).") from None
        kwargs["modalities"] = tuple(kwargs["modalities"])
        kwargs["user_preferences"] = tuple(kwargs.get("user_preferences", ()))
        return cls(**kwargs)

    @classmethod
    def read(cls, folder: str) -> DatasetInfo:
        path = os.path.join(folder, METADATA_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"No {METADATA_FILE} in '{folder}': expected an mmrec dataset folder "
                "(create one with `mmrec data synth --out FOLDER`)."
            )
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise SchemaError(f"{path}: not valid JSON ({e}).") from None
        return cls.from_json(data, source=path)

    def write(self, folder: str) -> None:
        with open(os.path.join(folder, METADATA_FILE), "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f, indent=2, sort_keys=False)
            f.write("\n")


# JSON gives plain types; a bool is not a number here (json.loads("true") is an int subclass).
def _is_int(value, low=None) -> bool:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return ok and (low is None or value >= low)


def _is_str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_str_dict(value) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _is_shard_list(value) -> bool:
    return isinstance(value, list) and all(
        isinstance(s, dict)
        and isinstance(s.get("file"), str)
        and _is_int(s.get("records"), 0)
        and isinstance(s.get("sha256"), str)
        for s in value
    )


# dataset.json field → (whether a value is valid, what is expected).
_FIELDS = {
    "name": (lambda v: isinstance(v, str), "a string"),
    "modalities": (_is_str_list, "a list of modality names"),
    "attributes": (
        lambda v: isinstance(v, dict) and all(_is_str_list(c) and c for c in v.values()),
        "an object of attribute → non-empty list of class names",
    ),
    "num_items": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "num_users": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "shards": (
        lambda v: isinstance(v, dict) and all(_is_shard_list(s) for s in v.values()),
        'an object of kind → list of {"file": str, "records": int >= 0, "sha256": str}',
    ),
    "image_size": (lambda v: v is None or _is_int(v, 1), "an integer >= 1 or null"),
    "image_channels": (lambda v: v in (1, 3) and _is_int(v), "1 or 3"),
    "audio_sample_rate": (lambda v: v is None or _is_int(v, 1), "an integer >= 1 or null"),
    "audio_samples": (lambda v: v is None or _is_int(v, 1), "an integer >= 1 or null"),
    "user_preferences": (_is_str_list, "a list of attribute names"),
    "affinity": (
        lambda v: (
            isinstance(v, dict)
            and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in v.values())
        ),
        "an object of attribute → number",
    ),
    "cold_items": (lambda v: isinstance(v, list) and all(_is_int(i, 0) for i in v), "item ids"),
    "max_history": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "seed": (lambda v: v is None or _is_int(v), "an integer or null"),
    "generator": (lambda v: isinstance(v, dict), "an object"),
    "id_maps": (_is_str_dict, "an object of kind → file name"),
    "checksums": (_is_str_dict, "an object of file name → sha256"),
}


def check_fields(data: dict, source: str = METADATA_FILE) -> None:
    """Checks the types and ranges of `dataset.json`'s fields, and that every file it
    names lies inside the dataset folder; a `SchemaError` says which field, what was
    expected and what was received."""
    for name, (valid, expected) in _FIELDS.items():
        if name in data and not valid(data[name]):
            raise SchemaError(
                f"{source}: expected {name} to be {expected}. Received: {name}={data[name]!r}"
            )
    unknown = sorted(set(data.get("user_preferences", ())) - set(data["attributes"]))
    if unknown:
        raise SchemaError(
            f"{source}: expected user_preferences among the attributes "
            f"{sorted(data['attributes'])}. Received: {unknown}"
        )
    files = [("shards", s["file"]) for shards in data["shards"].values() for s in shards]
    files += [("id_maps", f) for f in data.get("id_maps", {}).values()]
    files += [("checksums", f) for f in data.get("checksums", {})]
    for field, file in files:
        if not is_inside(file):
            raise SchemaError(
                f"{source}: expected the files in {field} to be relative paths inside the "
                f"dataset folder. Received: {file!r}"
            )


def is_inside(file: str) -> bool:
    """Whether `file`, a path relative to a dataset folder, stays inside it.

    >>> is_inside("items-00000-of-00001.tfrecord.gz"), is_inside("../../x"), is_inside("/x")
    (True, False, False)
    """
    parts = file.replace("\\", "/").split("/")
    return bool(file) and not os.path.isabs(file) and ".." not in parts and "" not in parts[:-1]
