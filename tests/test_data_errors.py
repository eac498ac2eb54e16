"""Bad input gets a clear error that names the file and record — or is skipped and counted."""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mmrec.data import (
    ChecksumError,
    CorruptRecordError,
    SchemaError,
    ShapesConfig,
    load,
    write_shapes,
)
from mmrec.data.tfrecord import _sha256, encode_png, encode_wav, interaction_example

SHARD = "items-00000-of-00001.tfrecord.gz"


@pytest.fixture(scope="module")
def clean_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("clean") / "ds")
    write_shapes(path, ShapesConfig(num_items=50, num_users=20, seed=1), progress=False)
    return path


@pytest.fixture
def copy(clean_path, tmp_path):
    path = str(tmp_path / "ds")
    shutil.copytree(clean_path, path)
    return path


def _records(path, shard):
    return [r.numpy() for r in tf.data.TFRecordDataset(os.path.join(path, shard), "GZIP")]


def _rewrite(path, shard, records, fix_checksum=True):
    """Replaces a shard's records (keeping dataset.json's checksum right unless told)."""
    file = os.path.join(path, shard)
    with tf.io.TFRecordWriter(file, tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for r in records:
            w.write(r)
    if fix_checksum:
        meta = json.load(open(os.path.join(path, "dataset.json")))
        for shards in meta["shards"].values():
            for s in shards:
                if s["file"] == shard:
                    s["sha256"], s["records"] = _sha256(file), len(records)
        json.dump(meta, open(os.path.join(path, "dataset.json"), "w"))


def _edit_item(path, index, edit):
    records = _records(path, SHARD)
    example = tf.train.Example.FromString(records[index])
    edit(example.features.feature)
    records[index] = example.SerializeToString()
    _rewrite(path, SHARD, records)


def _expect_item_error(path, index, words):
    with pytest.raises(CorruptRecordError) as error:
        load(path).catalogue()
    message = str(error.value)
    assert SHARD in message and f"record {index}:" in message
    assert words in message
    return message


def test_truncated_shard_is_named_with_the_record_where_it_stops(copy):
    file = os.path.join(copy, SHARD)
    data = open(file, "rb").read()
    open(file, "wb").write(data[: len(data) // 2])
    with pytest.raises(ChecksumError, match=f"{SHARD}: checksum mismatch"):
        load(copy)
    with pytest.raises(CorruptRecordError, match=r"shard ended after \d+ of 50 records"):
        load(copy, verify="none").catalogue()


def test_checksum_mismatch_names_the_shard(copy):
    file = os.path.join(copy, "interactions-test-00000-of-00001.tfrecord.gz")
    data = bytearray(open(file, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(file, "wb").write(bytes(data))
    with pytest.raises(ChecksumError) as error:
        load(copy)
    assert "interactions-test-00000-of-00001.tfrecord.gz" in str(error.value)
    assert "expected sha256" in str(error.value)


def test_wrong_schema_version(copy):
    meta = json.load(open(os.path.join(copy, "dataset.json")))
    meta["schema_version"] = 99
    json.dump(meta, open(os.path.join(copy, "dataset.json"), "w"))
    with pytest.raises(SchemaError, match="expected schema_version 1 .* schema_version=99"):
        load(copy)


def test_missing_dataset_json_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="mmrec data synth"):
        load(str(tmp_path))


def test_missing_required_feature(copy):
    _edit_item(copy, 3, lambda f: f.pop("text"))
    _expect_item_error(copy, 3, "required feature 'text', received 0")


def test_image_bytes_that_are_not_png_or_jpeg(copy):
    def edit(f):
        f["image"].bytes_list.value[0] = b"GIF89a not an image"

    _edit_item(copy, 7, edit)
    _expect_item_error(copy, 7, "image bytes are not PNG or JPEG")


def test_jpeg_images_are_accepted_and_wrong_sizes_are_not(copy):
    image = np.full((32, 32, 3), 200, np.uint8)
    _edit_item(
        copy,
        2,
        lambda f: f["image"].bytes_list.value.__setitem__(0, tf.io.encode_jpeg(image).numpy()),
    )
    decoded = load(copy).catalogue().images[2].numpy()
    assert np.abs(decoded.astype(int) - 200).max() <= 2
    small = encode_png(np.zeros((28, 28, 3), np.uint8))
    _edit_item(copy, 4, lambda f: f["image"].bytes_list.value.__setitem__(0, small))
    _expect_item_error(copy, 4, "expected a 32x32 image (dataset.json image_size), received 28x28")


def test_empty_text(copy):
    _edit_item(copy, 5, lambda f: f["text"].bytes_list.value.__setitem__(0, b"   "))
    _expect_item_error(copy, 5, "text is empty")


def test_text_that_is_not_utf8(copy):
    _edit_item(copy, 6, lambda f: f["text"].bytes_list.value.__setitem__(0, b"red \xff\xfe star"))
    _expect_item_error(copy, 6, "text is not valid UTF-8")


def test_audio_at_the_wrong_sample_rate(copy):
    wav = encode_wav(np.zeros(4000), sample_rate=8000)
    _edit_item(copy, 9, lambda f: f["audio"].bytes_list.value.__setitem__(0, wav))
    _expect_item_error(
        copy, 9, "expected audio at 16000 Hz (dataset.json audio_sample_rate), received 8000 Hz"
    )


def test_audio_of_the_wrong_length_and_non_wav_audio(copy):
    wav = encode_wav(np.zeros(100), sample_rate=16000)
    _edit_item(copy, 1, lambda f: f["audio"].bytes_list.value.__setitem__(0, wav))
    _expect_item_error(copy, 1, "expected 8000 audio samples (0.5 s at 16000 Hz), received 100")
    _edit_item(copy, 1, lambda f: f["audio"].bytes_list.value.__setitem__(0, b"OggS...."))
    _expect_item_error(copy, 1, "audio bytes are not a WAV file")


def test_label_out_of_range(copy):
    _edit_item(copy, 8, lambda f: f["label_colour"].int64_list.value.__setitem__(0, 12))
    _expect_item_error(copy, 8, "label_colour 12 is out of range (expected 0 <= label_colour < 8)")


def test_history_id_not_in_the_catalogue(copy):
    shard = "interactions-valid-00000-of-00001.tfrecord.gz"
    records = _records(copy, shard)
    records[2] = interaction_example(0, [1, 2, 999], [1, 2, 3], 4, 5).SerializeToString()
    _rewrite(copy, shard, records)
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        for _ in load(copy).interactions("valid", batch_size=8):
            pass
    message = str(error.value)
    assert shard in message and "record 2:" in message
    assert "history item id 999 is not in the catalogue (expected 0 <= id < 50)" in message


def test_skip_mode_drops_bad_records_and_reports_how_many(copy, caplog):
    records = _records(copy, SHARD)
    bad = [tf.train.Example.FromString(records[i]) for i in (10, 20)]
    bad[0].features.feature["image"].bytes_list.value[0] = b"junk"
    bad[1].features.feature.pop("audio")
    records[10], records[20] = (b.SerializeToString() for b in bad)
    _rewrite(copy, SHARD, records)

    data = load(copy, on_error="skip")
    catalogue = data.catalogue()
    assert data.skipped == {"items": 2}
    assert catalogue.missing_items == [10, 20]
    assert "skipped 2 of 50 items records" in caplog.text
    assert catalogue.images.shape[0] == 50 and not catalogue.images[10].numpy().any()
    ids = np.concatenate([b["item_id"].numpy() for b in data.items(batch_size=16)])
    assert sorted(ids.tolist()) == sorted(set(range(50)) - {10, 20})
    assert len(data.problems("items")) == 2


def test_skip_mode_reads_what_survives_of_a_truncated_shard(copy):
    file = os.path.join(copy, SHARD)
    data = open(file, "rb").read()
    open(file, "wb").write(data[: len(data) // 2])
    dataset = load(copy, on_error="skip", verify="none")
    ids = np.concatenate([b["item_id"].numpy() for b in dataset.items(batch_size=64)])
    assert 0 < len(ids) < 50
    np.testing.assert_array_equal(ids, np.arange(len(ids)))  # the intact prefix, in order
    assert dataset.skipped["items"] == 50 - len(ids)


def test_bad_options_are_rejected(clean_path):
    with pytest.raises(ValueError, match="Expected on_error to be one of"):
        load(clean_path, on_error="ignore")
    with pytest.raises(ValueError, match="Expected split to be one of"):
        load(clean_path).interactions("training")


def _edit_json(path, **fields):
    meta = json.load(open(os.path.join(path, "dataset.json")))
    meta.update(fields)
    json.dump(meta, open(os.path.join(path, "dataset.json"), "w"))
    return meta


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("num_items", "50", "expected num_items to be an integer >= 1. Received: num_items='50'"),
        ("max_history", -5, "expected max_history to be an integer >= 1. Received: max_history=-5"),
        ("attributes", ["colour"], "expected attributes to be an object of attribute"),
        ("modalities", "image", "expected modalities to be a list of modality names"),
        ("image_size", True, "expected image_size to be an integer >= 1 or null"),
        ("shards", {"items": [{"file": 3}]}, "expected shards to be an object of kind"),
        (
            "cold_items",
            [1, "2"],
            "expected cold_items to be item ids. Received: cold_items=[1, '2']",
        ),
        ("user_preferences", ["mood"], "expected user_preferences among the attributes"),
    ],
)
def test_dataset_json_fields_of_the_wrong_type_or_range(copy, field, value, expected):
    _edit_json(copy, **{field: value})
    with pytest.raises(SchemaError) as error:
        load(copy, verify="none")
    assert str(error.value).startswith(os.path.join(copy, "dataset.json") + ": ")
    assert expected in str(error.value)


def test_a_dataset_json_that_is_not_an_object(copy):
    json.dump([1, 2], open(os.path.join(copy, "dataset.json"), "w"))
    with pytest.raises(SchemaError, match="expected a JSON object. Received: list \\[1, 2\\]"):
        load(copy, verify="none")


@pytest.mark.parametrize("file", ["../../x", "/etc/passwd", "a/../../x"])
def test_files_outside_the_dataset_folder_are_refused(copy, file):
    meta = json.load(open(os.path.join(copy, "dataset.json")))
    meta["shards"]["users"][0]["file"] = file
    json.dump(meta, open(os.path.join(copy, "dataset.json"), "w"))
    with pytest.raises(SchemaError, match="relative paths inside the dataset folder"):
        load(copy, verify="none")
    meta = json.load(open(os.path.join(copy, "dataset.json")))
    meta["shards"]["users"][0]["file"] = "users-00000-of-00001.tfrecord.gz"
    meta["checksums"] = {file: "0" * 64}
    json.dump(meta, open(os.path.join(copy, "dataset.json"), "w"))
    with pytest.raises(SchemaError, match=f"in checksums .* Received: {re.escape(repr(file))}"):
        load(copy, verify="none")


# Records that TensorFlow cannot parse or decode at all: index → (how to break it, reason).
PNG = encode_png(np.full((32, 32, 3), 90, np.uint8))
WAV = encode_wav(np.zeros(8000), 16000)
UNREADABLE = {
    3: (lambda records: b"\xff\xff\xff\x07 not a protobuf", "not a tf.train.Example"),
    11: (
        lambda f: (
            f["item_id"].float_list.value.append(11.0) or f["item_id"].ClearField("int64_list")
        ),
        "feature 'item_id' has the wrong type (expected int64_list, received float_list)",
    ),
    17: (
        lambda f: f["image"].bytes_list.value.__setitem__(0, PNG[:8] + b"\0" * 40 + b"junk"),
        "the image cannot be decoded (Invalid PNG",
    ),
    23: (
        lambda f: f["image"].bytes_list.value.__setitem__(0, PNG[: len(PNG) // 2]),
        "the image cannot be decoded (Invalid PNG data",
    ),
    29: (  # a data chunk that claims a million bytes
        lambda f: f["audio"].bytes_list.value.__setitem__(
            0, WAV[:40] + (10**6).to_bytes(4, "little") + WAV[44:]
        ),
        "the audio cannot be decoded (Data too short",
    ),
}


@pytest.fixture
def unreadable(copy):
    """The copy with the records of UNREADABLE broken."""
    records = _records(copy, SHARD)
    for index, (edit, _) in UNREADABLE.items():
        if index == 3:
            records[index] = edit(records)
            continue
        example = tf.train.Example.FromString(records[index])
        edit(example.features.feature)
        records[index] = example.SerializeToString()
    _rewrite(copy, SHARD, records)
    return copy


def test_unreadable_records_are_named_with_their_file_and_index(unreadable):
    with pytest.raises(CorruptRecordError) as error:
        load(unreadable).catalogue()
    message = str(error.value)
    assert f"{SHARD}: record 3: cannot be parsed or decoded" in message
    assert "5 such record(s) in this shard" in message


def test_unreadable_records_are_skipped_and_counted(unreadable, caplog):
    data = load(unreadable, on_error="skip")
    catalogue = data.catalogue()
    assert data.skipped == {"items": 5}
    assert catalogue.missing_items == sorted(UNREADABLE)
    assert "skipped 5 of 50 items records" in caplog.text
    ids = np.concatenate([b["item_id"].numpy() for b in data.items(batch_size=16)])
    assert sorted(ids.tolist()) == sorted(set(range(50)) - set(UNREADABLE))


def test_problems_lists_each_unreadable_record_and_why(unreadable):
    problems = load(unreadable, on_error="skip", verify="none").problems("items")
    assert len(problems) == len(UNREADABLE)
    for problem, (index, (_, reason)) in zip(problems, sorted(UNREADABLE.items())):
        assert problem.startswith(os.path.join(unreadable, SHARD) + f": record {index}: ")
        assert reason in problem


SHARD_GONE = """
import os, sys
from mmrec.data import load

path, shard = sys.argv[1:]
items = load(path, on_error="skip", verify="none").items(batch_size=16)
train = load(path, verify="none").interactions("train", batch_size=16)
assert sum(1 for _ in items) and sum(1 for _ in train)  # one epoch while the shards exist
os.remove(os.path.join(path, shard))
os.remove(os.path.join(path, "items-00000-of-00001.tfrecord.gz"))
steps = {
    "next epoch, skip": lambda: sum(1 for _ in items),
    "next epoch, raise": lambda: sum(1 for _ in train),
    "new pipeline, skip": lambda: load(path, on_error="skip", verify="none").items(),
}
for name, step in steps.items():
    try:
        step()
        print(name, "| no error")
    except Exception as e:
        print(name, "|", type(e).__name__, str(e).replace(chr(10), " "))
"""


@pytest.mark.slow  # a second process, so that a regression fails instead of hanging
def test_a_missing_shard_is_an_error_that_names_it_not_a_hang(copy):
    shard = json.load(open(os.path.join(copy, "dataset.json")))["shards"]["interactions-train"][0]
    try:
        result = subprocess.run(
            [sys.executable, "-c", SHARD_GONE, copy, shard["file"]],
            capture_output=True,
            text=True,
            timeout=240,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    except subprocess.TimeoutExpired:
        pytest.fail("reading a dataset with a missing shard hangs")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" | ", 1) for line in result.stdout.splitlines())
    assert len(lines) == 3, result.stdout
    for name, error in lines.items():
        file = shard["file"] if "raise" in name else SHARD
        assert error.startswith("CorruptRecordError" if "new" in name else "InvalidArgumentError")
        assert f"{os.path.join(copy, file)}: shard listed in dataset.json is missing" in error


def _validate(path, capsys):
    from mmrec.cli import main

    status = main(["data", "validate", path])
    out, err = capsys.readouterr()
    return status, out, err


def test_validate_lists_unreadable_records_and_never_crashes(unreadable, capsys):
    status, out, err = _validate(unreadable, capsys)
    assert status == 1 and "Traceback" not in out + err
    assert "items: 5 problem(s)" in out
    for index, (_, reason) in UNREADABLE.items():
        assert f"{SHARD}: record {index}: {reason}" in out
    assert "catalogue: 1 problem(s)" in out and "5 missing, e.g. [3, 11, 17, 23, 29]" in out
    assert json.loads(out.splitlines()[-1]) == {"problems": 6}


def test_validate_runs_the_catalogue_checks(copy, capsys):
    _edit_item(copy, 4, lambda f: f["item_id"].int64_list.value.__setitem__(0, 5))
    status, out, _ = _validate(copy, capsys)
    assert status == 1 and "items: ok" in out and "catalogue: 2 problem(s)" in out
    assert "item ids must be unique. Received duplicates: [5]" in out
    assert "expected items 0..49; 1 missing, e.g. [4]" in out
    with pytest.raises(CorruptRecordError, match="duplicates: \\[5\\]"):
        load(copy).catalogue()  # what validate now says up front

    records = _records(copy, SHARD)
    _rewrite(copy, SHARD, records[:4] + records[5:])  # no record of item 4, no duplicate
    status, out, _ = _validate(copy, capsys)
    assert status == 1 and "catalogue: 1 problem(s)" in out
    assert "expected items 0..49; 1 missing, e.g. [4]" in out


def test_validate_reports_a_bad_dataset_json_and_a_missing_shard(copy, capsys):
    os.remove(os.path.join(copy, "users-00000-of-00001.tfrecord.gz"))
    status, out, _ = _validate(copy, capsys)
    assert status == 1 and "users: 1 problem(s)" in out
    assert "users-00000-of-00001.tfrecord.gz: shard listed in dataset.json is missing" in out
    assert "checksums: 1 problem(s)" in out

    _edit_json(copy, max_history=-5)
    status, out, err = _validate(copy, capsys)
    assert status == 1 and "Traceback" not in err
    assert "dataset.json: 1 problem(s)" in out and "expected max_history to be an integer" in out


def test_validate_has_its_own_exit_status_for_an_internal_error(copy, capsys, monkeypatch):
    from mmrec.data import validation

    def broken(data):
        raise RuntimeError("a bug in a check")

    monkeypatch.setattr(validation, "catalogue_problems", broken)
    status, out, err = _validate(copy, capsys)
    assert status == 3
    assert "catalogue: internal error" in out and "items: ok" in out and "users: ok" in out
    assert "RuntimeError: a bug in a check" in err and "Traceback" in err
    assert json.loads(out.splitlines()[-1]) == {"problems": 0, "internal_errors": 1}


def test_docstring_examples_run():
    import doctest

    from mmrec.data import records, schema

    for module in (records, schema):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
