"""The import as an Apache Beam pipeline (`beam_pipeline_args`, `mmrec data import --runner`):
on DirectRunner it writes the single-process import's dataset byte for byte — records,
shards, id maps, vocabulary and dataset.json — on a MovieLens layout and on a CSV table with
images and audio; errors are the same; without apache-beam the message says what to install."""

import hashlib
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
import tensorflow as tf

from mmrec.cli import main
from mmrec.data import (
    Columns,
    DatasetInfo,
    ImportOptions,
    MediaError,
    import_movielens,
    import_tables,
    load,
    write_movielens_layout,
)
from mmrec.data.tfrecord import encode_png, encode_wav

requires_beam = pytest.mark.skipif(
    importlib.util.find_spec("apache_beam") is None, reason='needs pip install "mmrec[beam]"'
)
DIRECT = ["--runner=DirectRunner"]


@pytest.fixture
def small_tasks(monkeypatch):
    """Work items of a few rows, so that the tiny inputs still spread over many of them."""
    from mmrec.data import beam

    monkeypatch.setattr(beam, "ITEMS_PER_TASK", 4)
    monkeypatch.setattr(beam, "INTERACTIONS_PER_TASK", 250)


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    """A MovieLens layout big enough for two training shards, and its single-process import."""
    root = tmp_path_factory.mktemp("movielens")
    source = write_movielens_layout(str(root / "src"), num_movies=40, num_users=220, seed=1)
    out = str(root / "local" / "ml")
    import_movielens(out, source, OPTIONS, progress=False)
    return source, out


OPTIONS = ImportOptions(min_rating=2.0, min_user_interactions=7, min_item_interactions=30)


def _records(folder):
    """Shard kind → the serialised records of its shards, read in order."""
    info = DatasetInfo.read(folder)
    return {
        kind: [
            record.numpy()
            for record in tf.data.TFRecordDataset(
                [os.path.join(folder, s.file) for s in shards], compression_type="GZIP"
            )
        ]
        for kind, shards in info.shards.items()
    }


def _hashes(folder):
    return {
        name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
        for name in sorted(os.listdir(folder))
    }


def assert_same_dataset(beam_out, local_out):
    records = _records(local_out)
    assert _records(beam_out) == records  # record for record, in the same order
    assert _hashes(beam_out) == _hashes(local_out)  # shards, id maps, vocab.txt, dataset.json
    load(beam_out)  # reads it, verifying every checksum
    return records


@requires_beam
def test_movielens_on_direct_runner_is_byte_identical(movielens, tmp_path, small_tasks):
    source, local = movielens
    out = str(tmp_path / "beam" / "ml")  # the same folder name: dataset.json holds it
    staging = tmp_path / "staging"
    args = [*DIRECT, f"--temp_location={staging}"]
    info = import_movielens(out, source, OPTIONS, progress=False, beam_pipeline_args=args)
    records = assert_same_dataset(out, local)
    assert len(info.shards["interactions-train"]) == 2  # records sharded across workers
    assert len(records["items"]) == info.num_items < 40  # the k-core dropped items
    assert info.generator["dropped"]["users"]  # and users
    assert os.listdir(staging) == []  # the staging folder is gone


def _media_tables(folder, rng):
    """An item table (CSV) with image and WAV paths — sizes that need resizing, a duplicate
    key, a missing and an undecodable image — and a shuffled interaction log."""
    media = os.path.join(folder, "media")
    os.makedirs(media)
    rows = []
    for i in range(18):
        h, w = [(16, 16), (8, 16), (20, 10), (5, 5)][i % 4]
        with open(os.path.join(media, f"{i}.png"), "wb") as f:
            f.write(encode_png(rng.integers(0, 255, (h, w, 3))))
        with open(os.path.join(media, f"{i}.wav"), "wb") as f:
            f.write(encode_wav(rng.uniform(-0.5, 0.5, 800 + 100 * i), 8000 + 4000 * (i % 2)))
        rows.append({"sku": f"s{i:02d}", "photo": f"{i}.png", "clip": f"{i}.wav"})
    rows[3]["photo"] = "missing.png"
    rows[5]["photo"] = "bad.png"
    with open(os.path.join(media, "bad.png"), "wb") as f:
        f.write(b"not an image")
    rows.insert(7, {"sku": "s03", "photo": "3.png", "clip": "3.wav"})  # s03 again, good media
    rows.append({"sku": "s00", "photo": "missing.png", "clip": "0.wav"})  # a duplicate key
    for row in rows:
        row["title"] = f"item {row['sku']} " + " ".join(rng.choice(["red", "blue", "big"], 3))
        row["kind"] = str(rng.choice(["toy", "book", "tool|toy"]))
    items = os.path.join(folder, "items.csv")
    pa_csv.write_csv(pa.Table.from_pylist(rows), items)
    log = pa.table(
        {
            "user_id": rng.integers(0, 30, 400).astype(str).tolist(),
            "sku": [f"s{k:02d}" for k in rng.integers(0, 18, 400)],
            "timestamp": rng.integers(0, 1000, 400).tolist(),
        }
    )
    interactions = os.path.join(folder, "log.csv")
    pa_csv.write_csv(log, interactions)
    return items, interactions


MEDIA_COLUMNS = dict(
    item_key="sku",
    text="title",
    image="photo",
    audio="clip",
    attributes="kind",
    attribute_separator="|",
)


@requires_beam
def test_csv_with_images_and_audio_is_byte_identical(tmp_path, small_tasks):
    items, interactions = _media_tables(str(tmp_path), np.random.default_rng(0))
    columns = Columns(**MEDIA_COLUMNS, media_root=str(tmp_path / "media"))
    options = ImportOptions(
        on_missing="skip",
        split="time",
        valid_from=700,
        test_from=850,
        image_size=16,
        audio_sample_rate=8000,
        audio_seconds=0.2,
    )
    local, out = str(tmp_path / "local" / "shop"), str(tmp_path / "beam" / "shop")
    import_tables(local, items, interactions, columns, options, progress=False)
    info = import_tables(
        out, items, interactions, columns, options, progress=False, beam_pipeline_args=DIRECT
    )
    assert_same_dataset(out, local)
    assert info.modalities == ("image", "text", "audio")
    assert info.generator["dropped"]["item rows"] == {
        "missing image (--on-missing skip)": 1,
        "unreadable image (--on-missing skip)": 1,
        "duplicate item key (the first row is kept)": 1,
    }
    assert "s03" in load(out).item_keys()  # the later row with good media
    # Media errors stop the import with the single-process message, naming the row.
    strict = ImportOptions(image_size=16, audio_sample_rate=8000, audio_seconds=0.2)
    errors = []
    for folder, args in ((tmp_path / "l2", None), (tmp_path / "b2", DIRECT)):
        with pytest.raises(MediaError) as error:
            import_tables(
                str(folder), items, interactions, columns, strict, beam_pipeline_args=args
            )
        errors.append(str(error.value))
        assert not os.path.exists(folder)
    assert errors[0] == errors[1]
    assert "items.csv, line 5 (item 's03'): column 'photo'" in errors[1]


def test_workers_read_media_from_urls(tmp_path):
    """Media paths with a scheme (gs://, s3://, here file://) go through TensorFlow's file
    systems, so that workers on a cluster read them from a bucket."""
    from mmrec.data.media import read_media

    png = encode_png(np.zeros((4, 4, 3)))
    (tmp_path / "a.png").write_bytes(png)
    assert read_media("a.png", f"file://{tmp_path}", "image") == png
    assert read_media(f"file://{tmp_path}/a.png", "/elsewhere", "image") == png
    with pytest.raises(MediaError, match="image file 'file://.*/b.png' does not exist") as error:
        read_media("b.png", f"file://{tmp_path}", "image")
    assert error.value.missing


@requires_beam
def test_cli_runner_and_beam_options(movielens, tmp_path, capsys):
    source, local = movielens
    out = str(tmp_path / "ml")
    command = ["data", "import", "--format", "movielens", "--path", source, "--out", out]
    command += ["--min-rating", "2", "--min-user-interactions", "7"]
    command += ["--min-item-interactions", "30"]
    beam = ["--runner", "DirectRunner", "--beam-option=--direct_num_workers=1"]
    assert main([*command, *beam]) == 0
    assert "interactions train" in capsys.readouterr().out
    assert _hashes(out) == _hashes(local)
    assert main([*command, "--overwrite", "--beam-option=--project=p"]) == 2
    assert "Expected --runner (e.g. DirectRunner) with --beam-option" in capsys.readouterr().err


def test_without_apache_beam_the_error_says_what_to_install(monkeypatch, tmp_path):
    items = pa.table({"item_id": list("abcd"), "title": list("wxyz")})
    log = pa.table({"user_id": ["u"] * 4, "item_id": list("abcd"), "timestamp": [1, 2, 3, 4]})
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "mmrec.data.beam", raising=False)
    out = str(tmp_path / "d")
    with pytest.raises(ImportError, match=r'needs Apache Beam: pip install "mmrec\[beam\]"'):
        import_tables(out, items, log, Columns(text="title"), beam_pipeline_args=DIRECT)
    assert not os.path.exists(out)
    import_tables(out, items, log, Columns(text="title"), progress=False)  # no Beam needed
    load(out)


def test_mmrec_data_imports_without_apache_beam_and_the_command_explains(tmp_path):
    source = write_movielens_layout(str(tmp_path / "src"), num_movies=16, num_users=3)
    script = (
        "import sys; sys.modules['apache_beam'] = None\n"
        "import mmrec.data\n"
        "from mmrec.cli import main\n"
        f"sys.exit(main(['data', 'import', '--format', 'movielens', '--path', {source!r}, "
        f"'--out', {str(tmp_path / 'ml')!r}, '--runner', 'DirectRunner']))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "mmrec: error: The Beam import (beam_pipeline_args=..., CLI --runner) needs" in (
        result.stderr
    )
    assert 'pip install "mmrec[beam]"' in result.stderr
    assert not os.path.exists(tmp_path / "ml")


@requires_beam
def test_docstring_examples_run():
    import doctest

    from mmrec.data import beam, tfrecord

    for module in (beam, tfrecord):  # Staging; shard_bounds
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
