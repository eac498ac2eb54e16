"""Reading and checking single records: shard tagging, parsing, validation, checksums.

Where it sits in the data flow: `mmrec.data.pipeline` interleaves the shards
through `shard_records`, which checks every record with `record_parser`, and keeps
the records that `keep` keeps. Every check runs inside the tf.data graph; a
problem becomes a message that names the shard, the record index and what was
expected. A record that TensorFlow cannot parse or decode at all is reported by
index at the end of its shard; `unreadable_records` says why, outside the graph.
Functions are module level so that tf.data traces them once.
"""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np
import tensorflow as tf

from mmrec.data import schema
from mmrec.data.schema import PAD_ID, ChecksumError, CorruptRecordError, DatasetInfo

MISSING_SHARD = (
    "shard listed in dataset.json is missing (deleted or moved while the dataset was in "
    "use?): re-create the dataset and start again"
)
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def verify_checksums(path: str, info: DatasetInfo) -> None:
    """Raises `ChecksumError` naming the first shard (or id map) whose SHA-256 differs
    (`CorruptRecordError` for one that is missing)."""
    for error in checksum_problems(path, info):
        raise error


def checksum_problems(path: str, info: DatasetInfo) -> list[CorruptRecordError]:
    """Every shard or id map whose SHA-256 differs from dataset.json's, or that is missing."""
    files = [(s.file, s.sha256, "shard") for shards in info.shards.values() for s in shards]
    files += [(name, sha256, "file") for name, sha256 in info.checksums.items()]
    problems = []
    for name, expected, what in files:
        file = os.path.join(path, name)
        if not os.path.exists(file):
            problems.append(
                CorruptRecordError(f"{file}: {what} listed in dataset.json is missing.")
            )
            continue
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            problems.append(
                ChecksumError(
                    f"{file}: checksum mismatch (expected sha256 {expected}, "
                    f"received {digest.hexdigest()}); the {what} is corrupt or was modified. "
                    "Re-create the dataset, or load with on_error='skip', verify='none' to "
                    "read the records that are still intact."
                )
            )
    return problems


def item_id_problems(ids, num_items: int) -> tuple[str | None, str | None]:
    """What is wrong with the item ids of a catalogue's records: (a message about
    duplicated ids or None, a message about ids in [0, num_items) that no record has or None).

    >>> duplicates, missing = item_id_problems([0, 2, 2], 4)
    >>> duplicates
    'item ids must be unique. Received duplicates: [2]'
    >>> missing
    'expected items 0..3; 2 missing, e.g. [1, 3]'
    """
    unique, counts = np.unique(np.asarray(ids, dtype=np.int64), return_counts=True)
    duplicates = unique[counts > 1].tolist()
    missing = sorted(set(range(num_items)) - set(unique.tolist()))
    return (
        f"item ids must be unique. Received duplicates: {duplicates[:10]}" if duplicates else None,
        f"expected items 0..{num_items - 1}; {len(missing)} missing, e.g. {missing[:10]}"
        if missing
        else None,
    )


def shard_records(shard, file, expected):
    """One shard's records, each tagged with where it is, then a marker that ends the shard.

    Elements are dicts: `shard` (its position in the list), `file`, `index` (the
    record's, or on the end marker the number of records read), `record`, `is_end`,
    `exists` (whether the file exists) and `expected` (records in dataset.json).
    """
    # An existence check first: under ignore_errors() the reader retries opening a
    # missing file forever (a shard deleted while training would hang the next epoch).
    glob_safe = tf.strings.regex_replace(file, r"([*?\[\]\\])", r"\\\1")
    exists = tf.size(tf.io.matching_files(glob_safe)) > 0
    raw = tf.data.TFRecordDataset(file, compression_type="GZIP").ignore_errors()
    raw = raw.take(tf.where(exists, tf.constant(-1, tf.int64), 0))
    records = raw.map(lambda r: (r, False))
    records = records.concatenate(tf.data.Dataset.from_tensors((tf.constant(b""), True)))

    def tag(index, element):
        record, is_end = element
        tags = {"shard": shard, "file": file, "index": index, "is_end": is_end}
        return {**tags, "record": record, "exists": exists, "expected": expected}

    return records.enumerate().map(tag)


def check_records(tagged: tf.data.Dataset, parse, num_shards: int) -> tf.data.Dataset:
    """`shard_records`' elements (of `num_shards` shards, interleaved) checked by `parse`.

    Each element is a dict: `features`; `problem` ("" for a good record, else a
    message naming the file and record); `is_end`, true only for the marker that
    closes a shard; `missing`, true on that marker when the shard file does not
    exist; `unreadable`, on that marker the number of records that could not be
    parsed or decoded at all (not a `tf.train.Example`, a feature of the wrong type,
    image or audio bytes that TensorFlow cannot decode). Those records are dropped
    where they fail and reported on the end marker, with the shard's other problems
    (fewer records than expected, a missing file); `unreadable_records` lists them.
    """

    def check(tags):
        features, problem = parse(tags["file"], tags["index"], tags.pop("record"))
        return tags, features, problem

    # A record whose parsing or decoding raises is dropped here (the end marker never
    # raises: empty bytes parse to an empty Example); `report` counts the gaps.
    checked = tagged.map(check, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    checked = checked.ignore_errors()

    def end_problem(tags, parsed, first_gap):
        index, expected = tags["index"], tags["expected"]
        problems = tf.stack(
            [
                tf.where(
                    parsed == index,
                    "",
                    tf.strings.format(
                        "record {}: cannot be parsed or decoded (not a tf.train.Example, "
                        "a feature of the wrong type, or image/audio bytes that cannot be "
                        "decoded), {} such record(s) in this shard",
                        (first_gap, index - parsed),
                    ),
                ),
                tf.where(
                    index == expected,
                    "",
                    tf.strings.format(
                        "shard ended after {} of {} records (truncated or corrupt)",
                        (index, expected),
                    ),
                ),
            ]
        )
        problem = tf.strings.reduce_join(tf.boolean_mask(problems, problems != ""), separator="; ")
        problem = tf.where(tags["exists"], problem, MISSING_SHARD)
        return tf.where(problem == "", "", tf.strings.join([tags["file"], ": ", problem]))

    def report(state, element):
        # Per shard: the records parsed so far, and the first dropped index (or -1).
        parsed, first_gap = state
        tags, features, problem = element
        shard, index, is_end = tags["shard"], tags["index"], tags["is_end"]
        gap = (first_gap[shard] < 0) & (index != parsed[shard])
        first_gap = tf.tensor_scatter_nd_update(
            first_gap, [[shard]], [tf.where(gap, parsed[shard], first_gap[shard])]
        )
        element = {
            "features": features,
            "problem": tf.cond(
                is_end,
                lambda: end_problem(tags, parsed[shard], first_gap[shard]),
                lambda: problem,
            ),
            "is_end": is_end,
            "missing": is_end & tf.logical_not(tags["exists"]),
            "unreadable": tf.where(is_end, index - parsed[shard], 0),
        }
        parsed = tf.tensor_scatter_nd_add(parsed, [[shard]], [tf.constant(1, tf.int64)])
        return (parsed, first_gap), element

    start = (tf.zeros([num_shards], tf.int64), tf.fill([num_shards], tf.constant(-1, tf.int64)))
    return checked.scan(start, report)


def keep(element, raise_on_problem: bool):
    """Whether an element is a good record; stops iteration with the element's problem
    when it has one and `raise_on_problem`, or when its shard is missing."""
    stop = element["missing"]
    if raise_on_problem:
        stop = stop | (element["problem"] != "")
    check = tf.debugging.Assert(tf.logical_not(stop), [element["problem"]], summarize=1)
    with tf.control_dependencies([check]):
        return tf.logical_and(tf.equal(element["problem"], ""), tf.logical_not(element["is_end"]))


def unreadable_records(file: str, kind: str, info: DatasetInfo) -> list[str]:
    """Each record of a shard that cannot be parsed or decoded at all, and why: one
    message per record, naming the file and its index (`mmrec data validate`)."""
    if not os.path.exists(file):  # gone since: ignore_errors() would retry the open forever
        return [f"{file}: {MISSING_SHARD}"]
    parse = record_parser(kind, info)
    raw = tf.data.TFRecordDataset(file, compression_type="GZIP").ignore_errors()
    parsed = raw.enumerate().map(lambda i, r: (i, parse(file, i, r)[1])).ignore_errors()
    good = {int(i) for i, _ in parsed.as_numpy_iterator()}
    messages = []
    for index, record in enumerate(raw.as_numpy_iterator()):
        if index not in good:
            messages.append(f"{file}: record {index}: {_reason(record, kind, info)}")
    return messages


_LIST_OF = {tf.int64: "int64_list", tf.float32: "float_list", tf.string: "bytes_list"}


def _reason(record: bytes, kind: str, info: DatasetInfo) -> str:
    from google.protobuf.message import DecodeError

    try:
        feature = tf.train.Example.FromString(record).features.feature
    except DecodeError:
        return f"not a tf.train.Example ({len(record)} bytes that do not parse as one)"
    for key, spec in _spec(kind, info).items():
        received = feature[key].WhichOneof("kind") if key in feature else None
        if received is not None and received != _LIST_OF[spec.dtype]:
            expected = _LIST_OF[spec.dtype]
            return f"feature '{key}' has the wrong type (expected {expected}, received {received})"
    decoders = {
        schema.IMAGE: lambda data: tf.io.decode_image(data, expand_animations=False),
        schema.AUDIO: lambda data: tf.audio.decode_wav(data),
    }
    for key, decode in decoders.items():
        if key in info.modalities and key in feature and feature[key].bytes_list.value:
            data = feature[key].bytes_list.value[0]
            try:
                decode(data)
            except tf.errors.OpError as e:
                # "{{function_node ...}} Invalid PNG data, size 1586 [Op:DecodeImage]"
                reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*", "", e.message.splitlines()[0])
                return (
                    f"the {key} cannot be decoded ({reason}; {len(data)} bytes starting "
                    f"{data[:8]!r})"
                )
    return "cannot be parsed with this dataset's features (cause unknown)"


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


def record_parser(kind: str, info: DatasetInfo):
    """`parse(file, index, record)` → (features, problem): the checks of one record kind."""
    build = {"items": _item_checks, "interactions": _interaction_checks, "users": _user_checks}
    checks = build[kind]

    def parse(file, index, record):
        problems = _Problems()
        features = checks(tf.io.parse_single_example(record, _spec(kind, info)), problems, info)
        problem = problems.first()
        location = tf.strings.join([file, ": record ", tf.strings.as_string(index), ": "])
        return features, tf.where(problem == "", "", location + problem)

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
