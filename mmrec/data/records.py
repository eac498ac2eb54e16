"""Reading and checking single records: shard tagging, parsing, validation, checksums.

Where it sits in the data flow: `mmrec.data.pipeline` interleaves the shards
through `tagged_records`, maps `record_parser` over them and keeps the records
for which `is_good` holds. Every check runs inside the tf.data graph; a problem
becomes a message that names the shard, the record index and what was expected.
Functions are module level so that tf.data traces them once.
"""

from __future__ import annotations

import hashlib
import os

import tensorflow as tf

from mmrec.data import schema
from mmrec.data.schema import PAD_ID, ChecksumError, CorruptRecordError, DatasetInfo

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def verify_checksums(path: str, info: DatasetInfo) -> None:
    """Raises `ChecksumError` naming the first shard (or id map) whose SHA-256 differs."""
    files = [(s.file, s.sha256, "shard") for shards in info.shards.values() for s in shards]
    files += [(name, sha256, "file") for name, sha256 in info.checksums.items()]
    for name, expected, what in files:
        file = os.path.join(path, name)
        if not os.path.exists(file):
            raise CorruptRecordError(f"{file}: {what} listed in dataset.json is missing.")
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise ChecksumError(
                f"{file}: checksum mismatch (expected sha256 {expected}, "
                f"received {digest.hexdigest()}); the {what} is corrupt or was modified. "
                "Re-create the dataset, or load with on_error='skip', verify='none' to "
                "read the records that are still intact."
            )


def tagged_records(file, expected):
    """One shard's records as (file, index, record, is_end, expected).

    A final end marker carries the number of records actually read, so that a shard
    that stops early is caught by comparing it with `expected`.
    """
    records = tf.data.TFRecordDataset(file, compression_type="GZIP").ignore_errors()
    records = records.map(lambda r: (r, False))
    end = tf.data.Dataset.from_tensors((tf.constant(b""), True))

    def count(n, element):
        record, is_end = element
        return n + 1 - tf.cast(is_end, tf.int64), (file, n, record, is_end, expected)

    return records.concatenate(end).scan(tf.constant(0, tf.int64), count)


def is_good(features, problem, is_end):
    return tf.logical_and(tf.equal(problem, ""), tf.logical_not(is_end))


class _Problems:
    """Collects (bad, message) checks; `first()` is the message of the first failure."""

    def __init__(self):
        self.checks: list[tuple[tf.Tensor, tf.Tensor]] = []

    def add(self, bad, message):
        self.checks.append((tf.convert_to_tensor(bad), tf.convert_to_tensor(message)))

    def required(self, parsed, key, default):
        """The single value of a required scalar feature (a safe default if absent)."""
        values = parsed[key]
        self.add(
            tf.not_equal(tf.size(values), 1),
            tf.strings.format(
                "expected exactly one value for required feature '" + key + "', received {}",
                tf.size(values),
            ),
        )
        return tf.concat([values, tf.constant([default], values.dtype)], 0)[0]

    def in_range(self, name, value, upper):
        self.add(
            tf.logical_or(value < 0, value >= upper),
            tf.strings.format(
                f"{name} {{}} is out of range (expected 0 <= {name} < {upper})", value
            ),
        )

    def first(self) -> tf.Tensor:
        message = tf.constant("")
        for bad, text in reversed(self.checks):
            message = tf.where(bad, text, message)
        return message


def record_parser(kind: str, info: DatasetInfo, raise_on_problem: bool):
    build = {"items": _item_checks, "interactions": _interaction_checks, "users": _user_checks}
    checks = build[kind]

    def parse(file, index, record, is_end, expected):
        problems = _Problems()
        features = checks(tf.io.parse_single_example(record, _spec(kind, info)), problems, info)
        problem = problems.first()
        end_problem = tf.strings.format(
            "shard ended after {} of {} records (truncated or corrupt)", (index, expected)
        )
        problem = tf.where(is_end, tf.where(index == expected, "", end_problem), problem)
        location = tf.strings.join([file, ": record ", tf.strings.as_string(index), ": "])
        problem = tf.where(problem == "", "", location + problem)
        if raise_on_problem:
            check = tf.debugging.Assert(tf.equal(problem, ""), [problem], summarize=1)
            with tf.control_dependencies([check]):
                return tf.nest.map_structure(tf.identity, (features, problem, is_end))
        return features, problem, is_end

    return parse


def _spec(kind: str, info: DatasetInfo) -> dict:
    def ragged(dtype):
        return tf.io.RaggedFeature(dtype)

    if kind == "items":
        spec = {schema.ITEM_ID: ragged(tf.int64), schema.POPULARITY: ragged(tf.float32)}
        spec.update({m: ragged(tf.string) for m in info.modalities})
        spec.update({schema.label_key(a): ragged(tf.int64) for a in info.attributes})
    elif kind == "interactions":
        spec = {
            k: ragged(tf.int64)
            for k in (
                schema.USER_ID,
                schema.HISTORY,
                schema.HISTORY_TIMESTAMPS,
                schema.TARGET,
                schema.TARGET_TIMESTAMP,
            )
        }
    else:
        spec = {schema.USER_ID: ragged(tf.int64)}
        spec.update({schema.preference_key(a): ragged(tf.int64) for a in info.user_preferences})
    return spec


def _item_checks(parsed, problems: _Problems, info: DatasetInfo) -> dict:
    item_id = problems.required(parsed, schema.ITEM_ID, 0)
    problems.in_range("item_id", item_id, info.num_items)
    out = {schema.ITEM_ID: tf.cast(item_id, tf.int32)}
    if "image" in info.modalities:
        out["image"] = _check_image(problems.required(parsed, schema.IMAGE, b""), problems, info)
    if "text" in info.modalities:
        out["text"] = _check_text(problems.required(parsed, schema.TEXT, b""), problems)
    if "audio" in info.modalities:
        out["audio"] = _check_audio(problems.required(parsed, schema.AUDIO, b""), problems, info)
    for attribute, classes in info.attributes.items():
        key = schema.label_key(attribute)
        label = problems.required(parsed, key, 0)
        problems.in_range(key, label, len(classes))
        out[key] = tf.cast(label, tf.int32)
    if info.affinity:
        out[schema.POPULARITY] = problems.required(parsed, schema.POPULARITY, 0.0)
    return out


def _check_image(data, problems: _Problems, info: DatasetInfo):
    size, channels = info.image_size, info.image_channels
    head = tf.strings.substr(data, 0, 8)
    known = tf.logical_or(
        tf.equal(head, _PNG_MAGIC), tf.equal(tf.strings.substr(data, 0, 3), _JPEG_MAGIC)
    )
    problems.add(
        tf.logical_not(known),
        tf.strings.format(
            "image bytes are not PNG or JPEG (expected a PNG/JPEG signature; "
            "received first bytes {})",
            tf.strings.bytes_split(head),
            summarize=8,
        ),
    )
    blank = tf.zeros([size, size, channels], tf.uint8)
    decoded = tf.cond(
        known,
        lambda: tf.io.decode_image(data, channels=channels, expand_animations=False),
        lambda: blank,
    )
    shape = tf.shape(decoded)
    wrong = tf.logical_or(shape[0] != size, shape[1] != size)
    problems.add(
        tf.logical_and(known, wrong),
        tf.strings.format(
            f"expected a {size}x{size} image (dataset.json image_size), received {{}}x{{}}",
            (shape[0], shape[1]),
        ),
    )
    return tf.cond(wrong, lambda: blank, lambda: tf.ensure_shape(decoded, blank.shape))


def _check_text(text, problems: _Problems):
    problems.add(
        tf.equal(tf.strings.length(tf.strings.strip(text)), 0),
        "text is empty (expected a non-empty UTF-8 description)",
    )
    codepoints = tf.strings.unicode_decode(text, "UTF-8", errors="replace", replacement_char=0xFFFD)
    problems.add(tf.reduce_any(codepoints == 0xFFFD), "text is not valid UTF-8")
    return text


def _check_audio(data, problems: _Problems, info: DatasetInfo):
    rate, samples = info.audio_sample_rate, info.audio_samples
    header = tf.strings.join([data, b"\0" * 44])  # pad so the header reads are in range

    def field(offset, length, dtype):
        return tf.io.decode_raw(tf.strings.substr(header, offset, length), dtype)[0]

    is_wav = tf.logical_and(
        tf.equal(tf.strings.substr(header, 0, 4), b"RIFF"),
        tf.equal(tf.strings.substr(header, 8, 4), b"WAVE"),
    )
    problems.add(tf.logical_not(is_wav), "audio bytes are not a WAV file (no RIFF/WAVE header)")
    channels, bits = field(22, 2, tf.int16), field(34, 2, tf.int16)
    problems.add(
        tf.logical_and(is_wav, tf.logical_or(channels != 1, bits != 16)),
        tf.strings.format(
            "expected mono 16-bit PCM audio, received {} channel(s) of {}-bit", (channels, bits)
        ),
    )
    received_rate = field(24, 4, tf.int32)
    problems.add(
        tf.logical_and(is_wav, received_rate != rate),
        tf.strings.format(
            f"expected audio at {rate} Hz (dataset.json audio_sample_rate), received {{}} Hz",
            received_rate,
        ),
    )
    header_ok = tf.logical_and(is_wav, tf.logical_and(channels == 1, received_rate == rate))
    blank = tf.zeros([samples], tf.float32)
    waveform = tf.cond(
        header_ok, lambda: tf.audio.decode_wav(data, desired_channels=1).audio[:, 0], lambda: blank
    )
    length = tf.shape(waveform)[0]
    wrong = tf.logical_and(header_ok, length != samples)
    problems.add(
        wrong,
        tf.strings.format(
            f"expected {samples} audio samples ({samples / rate:g} s at {rate} Hz), received {{}}",
            length,
        ),
    )
    return tf.cond(wrong, lambda: blank, lambda: tf.ensure_shape(waveform, [samples]))


def _interaction_checks(parsed, problems: _Problems, info: DatasetInfo) -> dict:
    user_id = problems.required(parsed, schema.USER_ID, 0)
    problems.in_range("user_id", user_id, info.num_users)
    target = problems.required(parsed, schema.TARGET, 0)
    problems.in_range("target", target, info.num_items)
    problems.required(parsed, schema.TARGET_TIMESTAMP, 0)
    history = parsed[schema.HISTORY]
    outside = tf.logical_or(history < 0, history >= info.num_items)
    problems.add(
        tf.reduce_any(outside),
        tf.strings.format(
            f"history item id {{}} is not in the catalogue (expected 0 <= id < {info.num_items})",
            tf.concat([tf.boolean_mask(history, outside), [0]], 0)[0],
        ),
    )
    timestamps = parsed[schema.HISTORY_TIMESTAMPS]
    problems.add(
        tf.not_equal(tf.size(timestamps), tf.size(history)),
        tf.strings.format(
            "expected one history timestamp per history item ({}), received {}",
            (tf.size(history), tf.size(timestamps)),
        ),
    )
    recent = tf.cast(history[-info.max_history :], tf.int32)
    padding = tf.fill([info.max_history - tf.size(recent)], PAD_ID)
    return {
        schema.USER_ID: tf.cast(user_id, tf.int32),
        schema.HISTORY: tf.ensure_shape(tf.concat([recent, padding], 0), [info.max_history]),
        schema.TARGET: tf.cast(target, tf.int32),
    }


def _user_checks(parsed, problems: _Problems, info: DatasetInfo) -> dict:
    user_id = problems.required(parsed, schema.USER_ID, 0)
    problems.in_range("user_id", user_id, info.num_users)
    out = {schema.USER_ID: tf.cast(user_id, tf.int32)}
    for attribute in info.user_preferences:
        key = schema.preference_key(attribute)
        values = tf.cast(parsed[key], tf.int32)
        classes = len(info.attributes[attribute])
        outside = tf.logical_or(values < 0, values >= classes)
        problems.add(
            tf.reduce_any(outside),
            tf.strings.format(
                f"{key} value {{}} is out of range (expected 0 <= value < {classes})",
                tf.concat([tf.boolean_mask(values, outside), [0]], 0)[0],
            ),
        )
        out[key] = values
    return out
