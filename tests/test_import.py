"""Bringing your own data: `mmrec data import` / `import_tables` / `import_movielens` on tiny
generated tables (never MovieLens data itself), the id maps, splits, filters, media, and
byte-identical output across processes and input formats."""

import csv
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from mmrec.cli import main
from mmrec.data import (
    ChecksumError,
    Columns,
    DataError,
    DatasetInfo,
    ImportOptions,
    MediaError,
    import_movielens,
    import_summary,
    import_tables,
    load,
    splits,
    write_movielens_layout,
)
from mmrec.data.tfrecord import DatasetWriter, encode_png, encode_wav, interaction_example


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    """A generated MovieLens-layout folder (30 movies, 20 users, tags) and its import."""
    root = tmp_path_factory.mktemp("movielens")
    source = write_movielens_layout(str(root / "src"), num_movies=30, num_users=20, seed=0)
    out = str(root / "ml")
    import_movielens(out, source, progress=False)
    return source, out


def _csv_rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _file_hashes(path, skip=("dataset.json",)):
    return {
        name: hashlib.sha256(open(os.path.join(path, name), "rb").read()).hexdigest()
        for name in sorted(os.listdir(path))
        if name not in skip
    }


def _sequences(data, split):
    """user key → [(history keys), target key] of the split's records."""
    items, users = data.item_keys(), data.user_keys()
    out = {}
    for batch in data.interactions(split, batch_size=4096, shuffle=False).as_numpy_iterator():
        for user, history, target in zip(batch["user_id"], batch["history"], batch["target"]):
            out.setdefault(users[user], []).append(
                ([items[i] for i in history if i >= 0], items[target])
            )
    return out


def test_movielens_layout_imports_with_keys_text_labels_and_split(movielens):
    source, out = movielens
    data = load(out)  # verifies every shard's and id map's checksum
    movies = _csv_rows(os.path.join(source, "movies.csv"))
    assert data.item_keys() == [m["movieId"] for m in movies]  # catalogue order, as text
    assert data.info.id_maps == {"items": "item_keys.txt", "users": "user_keys.txt"}
    assert set(data.info.checksums) == {"item_keys.txt", "user_keys.txt"}
    catalogue = data.catalogue()
    assert catalogue.images is None and catalogue.audio is None
    genres = data.info.attributes["genre"]
    assert genres == sorted(genres) and "(no genres listed)" in genres
    for i, movie in enumerate(movies):
        text = catalogue.texts[i].numpy().decode()
        assert text.startswith(movie["title"] + ".")
        first = movie["genres"].split("|")[0]
        assert genres[catalogue.labels["genre"][i]] == first  # the first genre is the label
    assert "Tags: " in " ".join(t.decode() for t in catalogue.texts.numpy())

    ratings = _csv_rows(os.path.join(source, "ratings.csv"))
    assert sorted(data.user_keys(), key=int) == sorted({r["userId"] for r in ratings}, key=int)
    by_user = {}
    for r in ratings:
        by_user.setdefault(r["userId"], []).append((int(r["timestamp"]), r["movieId"]))
    test, valid = _sequences(data, "test"), _sequences(data, "valid")
    for user, events in by_user.items():
        ordered = [key for _, key in sorted(events)]  # by time, ties by item key
        [(history, target)] = test[user]
        assert target == ordered[-1] and history == ordered[:-1]
        assert valid[user][0][1] == ordered[-2]
    assert data.info.splits["train"] == sum(len(e) - 3 for e in by_user.values())
    # The fixture's two "new releases" are only ever rated last: cold targets.
    cold_keys = {data.item_keys()[i] for i in data.info.cold_items}
    assert cold_keys >= {movies[-3]["movieId"], movies[-2]["movieId"]}


def test_user_items_hold_the_whole_history_of_earlier_splits(movielens):
    source, out = movielens
    data = load(out)
    keys, users = data.item_keys(), data.user_keys()
    ratings = _csv_rows(os.path.join(source, "ratings.csv"))
    test = {users[u]: keys[t] for u, t in _pairs(data, "test")}
    valid = {users[u]: keys[t] for u, t in _pairs(data, "valid")}
    before_test, before_valid = data.user_items("valid"), data.user_items("train")
    assert len(before_test) == data.info.num_users
    for user in range(data.info.num_users):
        rated = {r["movieId"] for r in ratings if r["userId"] == users[user]}
        assert {keys[i] for i in before_test[user]} == rated - {test[users[user]]}
        expected = rated - {test[users[user]], valid[users[user]]}
        assert {keys[i] for i in before_valid[user]} == expected
    everything = data.user_items("test")
    assert sum(len(s) for s in everything.values()) == len(ratings)


def _pairs(data, split):
    batch = next(data.interactions(split, batch_size=4096, shuffle=False).as_numpy_iterator())
    return zip(batch["user_id"].tolist(), batch["target"].tolist())


def test_a_modified_id_map_fails_its_checksum(movielens, tmp_path):
    import shutil

    _, out = movielens
    copy = str(tmp_path / "ml")
    shutil.copytree(out, copy)
    with open(os.path.join(copy, "item_keys.txt"), "a", encoding="utf-8") as f:
        f.write("extra\n")
    with pytest.raises(ChecksumError, match="item_keys.txt: checksum mismatch"):
        load(copy)
    with pytest.raises(DataError, match=r"expected 30 keys .* Received: 31"):
        load(copy, verify="none").item_keys()


def test_benchmarks_have_no_keys(tiny_shapes):
    data = load(tiny_shapes)
    assert data.item_keys() is None and data.user_keys() is None


def _log_tables(rows, items=None):
    """Small item and interaction tables: rows are (user, item, timestamp[, rating])."""
    items = items or sorted({r[1] for r in rows})
    item_table = pa.table({"item_id": items, "title": [f"the item {k}" for k in items]})
    log = {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows]}
    log["timestamp"] = [r[2] for r in rows]
    if len(rows[0]) > 3:
        log["rating"] = [float(r[3]) for r in rows]
    return item_table, pa.table(log)


def test_leave_last_out_is_by_time_with_ties_broken_by_item_key(tmp_path):
    # u1: "b" at 1, "a" at 2, then "d" and "c" both at 3 → order b, a, c, d.
    rows = [("u1", "d", 3), ("u1", "b", 1), ("u1", "c", 3), ("u1", "a", 2), ("u1", "a", 2)]
    rows += [("u2", "a", 5), ("u2", "b", 6), ("u2", "c", 7)]
    items, log = _log_tables(rows)
    info = import_tables(str(tmp_path / "d"), items, log, Columns(text="title"), progress=False)
    data = load(str(tmp_path / "d"))
    assert _sequences(data, "test")["u1"] == [(["b", "a", "c"], "d")]
    assert _sequences(data, "valid")["u1"] == [(["b", "a"], "c")]
    assert _sequences(data, "train") == {"u1": [(["b"], "a")]}  # u2 has 3: no train step
    assert info.generator["dropped"]["interaction rows"] == {
        "duplicate (same user, item and timestamp)": 1
    }
    assert data.user_keys() == ["u1", "u2"]  # in order of first appearance


def test_time_split_uses_iso_dates(tmp_path):
    day = 86_400
    rows = [("u", k, 1_600_000_000 + d * day) for k, d in zip("abcdef", range(6))]
    items, log = _log_tables(rows)
    options = ImportOptions(split="time", valid_from="2020-09-16", test_from="2020-09-18")
    import_tables(str(tmp_path / "d"), items, log, Columns(text="title"), options, progress=False)
    data = load(str(tmp_path / "d"))  # 2020-09-13 12:26:40 UTC is day 0
    assert [t for _, t in _sequences(data, "train")["u"]] == ["b", "c"]
    assert [t for _, t in _sequences(data, "valid")["u"]] == ["d", "e"]
    assert _sequences(data, "test")["u"] == [(["a", "b", "c", "d", "e"], "f")]


def test_k_core_iterates_to_a_fixed_point():
    # At least 2 per user and per item: user 3 (1 interaction) goes, so item 3 falls to 1
    # and goes, so user 2 falls to 1 and goes, so item 2 falls to 1 and goes.
    users = np.array([0, 0, 0, 1, 1, 2, 2, 3])
    items = np.array([0, 1, 2, 0, 1, 2, 3, 3])
    core = splits.k_core(splits.Log(users, items, np.arange(8)), 5, min_user=2, min_item=2)
    assert core.log.users.tolist() == [0, 0, 1, 1] and core.log.items.tolist() == [0, 1, 0, 1]
    assert core.items_kept.tolist() == [True, True, False, False, False]  # 4: never seen
    assert (core.dropped_by_user, core.dropped_by_item) == (2, 2)
    assert (core.users_dropped, core.items_dropped) == (2, 3)


def test_min_rating_and_k_core_through_the_importer(movielens, tmp_path):
    source, _ = movielens
    options = ImportOptions(min_rating=4.0, min_user_interactions=3, min_item_interactions=2)
    info = import_movielens(str(tmp_path / "d"), source, options, progress=False)
    data = load(str(tmp_path / "d"))
    ratings = _csv_rows(os.path.join(source, "ratings.csv"))
    good = {(r["userId"], r["movieId"]) for r in ratings if float(r["rating"]) >= 4.0}
    users, keys = data.user_keys(), data.item_keys()
    for split in ("train", "valid", "test"):
        for user, target in _pairs(data, split):
            assert (users[user], keys[target]) in good
    dropped = info.generator["dropped"]
    low = sum(float(r["rating"]) < 4.0 for r in ratings)
    assert dropped["interaction rows"]["rating below 4 (--min-rating)"] == low
    everything = data.user_items("test")  # each user's items: distinct in the fixture
    assert min(len(s) for s in everything.values()) >= 3
    counts = np.bincount([i for s in everything.values() for i in s], minlength=info.num_items)
    assert counts.min() >= 2 and info.num_items < 30
    # Every interaction is a target except each user's first.
    assert sum(map(len, everything.values())) == sum(info.splits.values()) + info.num_users
    assert "fewer than 2 interactions (k-core)" in dropped["item rows"]
    assert "dropped interaction rows: rating below 4" in import_summary(info)


def _write_formats(folder, items, log):
    """The same two tables as CSV, Parquet and JSONL files."""
    paths = {}
    for fmt in ("csv", "parquet", "jsonl"):
        paths[fmt] = []
        for name, table in (("items", items), ("log", log)):
            path = os.path.join(folder, f"{name}.{fmt}")
            if fmt == "csv":
                pa_csv.write_csv(table, path)
            elif fmt == "parquet":
                pq.write_table(table, path)
            else:
                with open(path, "w", encoding="utf-8") as f:
                    for row in table.to_pylist():
                        f.write(json.dumps(row) + "\n")
            paths[fmt].append(path)
    return paths


def test_csv_parquet_and_jsonl_give_byte_identical_datasets(tmp_path):
    keys = ["007", "b", "10", "x y", "é"]
    items = pa.table(
        {
            "sku": keys,
            "title": ["Spy, the", 'A "quoted" b', "ten", "x and y", "accent"],
            "kind": ["gadget|toy", "toy", "book", None, "toy"],
        }
    )
    rng = np.random.default_rng(0)
    log = pa.table(
        {
            "customer": rng.integers(1, 5, 40).tolist(),
            "sku": rng.choice(keys, 40).tolist(),
            "when": rng.integers(1_000, 1_100, 40).tolist(),
        }
    )
    columns = Columns(
        item_key="sku",
        user_key="customer",
        timestamp="when",
        text_template="{title} ({kind})",
        attributes=("kind",),
        attribute_separator="|",
    )
    hashes = {}
    for fmt, (items_path, log_path) in _write_formats(str(tmp_path), items, log).items():
        out = str(tmp_path / f"out-{fmt}")
        import_tables(out, items_path, log_path, columns, progress=False)
        hashes[fmt] = _file_hashes(out)
    assert hashes["csv"] == hashes["parquet"] == hashes["jsonl"]
    data = load(str(tmp_path / "out-csv"))
    assert data.item_keys() == keys  # "007" keeps its zeros
    assert data.info.attributes["kind"] == ["(missing)", "book", "gadget", "toy"]
    texts = [t.decode() for t in data.catalogue().texts.numpy()]
    assert texts[0] == "Spy, the (gadget|toy)" and texts[3] == "x and y ()"


def _image_catalogue(folder, sizes):
    """PNG files of the given (height, width), each a solid colour, and an item table."""
    os.makedirs(os.path.join(folder, "media"), exist_ok=True)
    paths, raw = [], []
    for i, (h, w) in enumerate(sizes):
        png = encode_png(np.full((h, w, 3), 40 * i + 20, np.uint8))
        paths.append(f"img_{i}.png")
        raw.append(png)
        with open(os.path.join(folder, "media", paths[-1]), "wb") as f:
            f.write(png)
    keys = [f"i{i}" for i in range(len(sizes))]
    log = pa.table(
        {
            "user_id": [u for u in ("a", "b") for _ in keys],
            "item_id": keys + keys[::-1],
            "timestamp": list(range(2 * len(keys))),
        }
    )
    return keys, paths, raw, log


def test_image_only_catalogue_from_paths_or_parquet_bytes(tmp_path):
    keys, paths, raw, log = _image_catalogue(str(tmp_path), [(16, 16), (8, 16), (40, 20), (5, 5)])
    media = str(tmp_path / "media")
    columns = Columns(image="image", media_root=media)
    options = ImportOptions(image_size=16)
    from_paths = str(tmp_path / "paths")
    items = pa.table({"item_id": keys, "image": paths})
    info = import_tables(from_paths, items, log, columns, options, progress=False)
    assert info.modalities == ("image",) and info.image_size == 16
    assert not os.path.exists(os.path.join(from_paths, "vocab.txt"))  # no text, no vocabulary
    images = load(from_paths).catalogue().images.numpy()
    assert images.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(images[0], np.full((16, 16, 3), 20))  # right size: exact
    assert (images[1, :4] == 0).all() and (images[1, 4:12] == 60).all()  # 8x16: padded
    assert (images[2, :, :4] == 0).all() and (images[2, :, 4:12] == 100).all()
    assert (images[3] == 140).all()  # 5x5: scaled up to fill the square

    parquet = str(tmp_path / "items.parquet")
    pq.write_table(pa.table({"item_id": keys, "image": pa.array(raw, pa.binary())}), parquet)
    from_bytes = str(tmp_path / "bytes")
    import_tables(from_bytes, parquet, log, columns, options, progress=False)
    assert _file_hashes(from_bytes) == _file_hashes(from_paths)


def test_audio_is_mixed_to_mono_resampled_and_cut(tmp_path):
    import wave

    path = tmp_path / "clip.wav"
    stereo = (np.stack([np.full(4000, 8000), np.full(4000, 4000)], 1)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(stereo.tobytes())
    short = tmp_path / "short.wav"
    short.write_bytes(encode_wav(np.full(100, 0.25), 16000))
    items = pa.table({"item_id": ["x", "y"], "clip": ["clip.wav", str(short)], "t": ["x", "y"]})
    log = pa.table({"user_id": ["u"] * 4, "item_id": ["x", "y"] * 2, "timestamp": [1, 2, 3, 4]})
    columns = Columns(audio="clip", text="t", media_root=str(tmp_path))
    options = ImportOptions(audio_sample_rate=16000, audio_seconds=0.25)
    info = import_tables(str(tmp_path / "d"), items, log, columns, options, progress=False)
    assert info.modalities == ("text", "audio") and info.audio_samples == 4000
    audio = load(str(tmp_path / "d")).catalogue().audio.numpy()
    np.testing.assert_allclose(audio[0], 6000 / 32768, atol=1e-4)  # mean of the two channels
    np.testing.assert_allclose(audio[1, :100], 0.25, atol=1e-4)
    assert not audio[1, 100:].any()  # padded with silence


def test_missing_media_names_the_row_or_is_skipped_and_counted(tmp_path):
    keys, paths, _, log = _image_catalogue(str(tmp_path), [(16, 16)] * 6)
    paths[2] = "missing.png"
    items_csv = str(tmp_path / "items.csv")
    pa_csv.write_csv(pa.table({"item_id": keys, "image": paths}), items_csv)
    columns = Columns(image="image", media_root=str(tmp_path / "media"))
    with pytest.raises(MediaError) as error:
        import_tables(str(tmp_path / "d"), items_csv, log, columns, progress=False)
    message = str(error.value)
    assert "items.csv, line 4 (item 'i2'): column 'image'" in message
    assert os.path.join("media", "missing.png") in message and "does not exist" in message
    assert "--on-missing skip" in message
    assert not os.path.exists(tmp_path / "d")

    (tmp_path / "media" / "img_1.png").write_bytes(b"not a png")
    options = ImportOptions(on_missing="skip")
    info = import_tables(str(tmp_path / "d"), items_csv, log, columns, options, progress=False)
    assert load(str(tmp_path / "d")).item_keys() == ["i0", "i3", "i4", "i5"]
    dropped = info.generator["dropped"]
    assert dropped["item rows"] == {
        "missing image (--on-missing skip)": 1,
        "unreadable image (--on-missing skip)": 1,
    }
    assert dropped["interaction rows"] == {"item not in the catalogue (or left out of it)": 4}


def test_bad_options_and_columns_say_what_was_expected(tmp_path):
    items, log = _log_tables([("u", "a", 1), ("u", "b", 2), ("u", "c", 3)])
    with pytest.raises(ValueError, match="has no column 'name' .* Received columns"):
        import_tables(str(tmp_path / "d"), items, log, Columns(text="name"), progress=False)
    with pytest.raises(ValueError, match="at least one content column"):
        import_tables(str(tmp_path / "d"), items, log, Columns(), progress=False)
    with pytest.raises(ValueError, match="valid_from and test_from"):
        ImportOptions(split="time")
    with pytest.raises(ValueError, match="min_user_interactions >= 3"):
        ImportOptions(min_user_interactions=2)
    with pytest.raises(ValueError, match="ISO 8601 date-time. Received: 'soon'"):
        ImportOptions(split="time", valid_from=2, test_from="soon")
    late = ImportOptions(split="time", valid_from=3, test_from="2030-01-01")
    with pytest.raises(DataError, match="The test split"):
        import_tables(str(tmp_path / "d"), items, log, Columns(text="title"), late, progress=False)
    with pytest.raises(DataError, match="No interactions are left"):
        import_tables(
            str(tmp_path / "d"),
            items,
            log,
            Columns(text="title"),
            ImportOptions(min_user_interactions=4),
            progress=False,
        )


def test_writer_rejects_out_of_range_ids_naming_the_record(tmp_path):
    good = interaction_example(0, [1, 2], [1, 2], 3, 4)
    padded = interaction_example(1, [1, -1], [1, 0], 3, 4)
    for bad, words in (
        (interaction_example(0, [1, 60], [1, 2], 3, 4), "history item id 60 is out of range"),
        (interaction_example(0, [1, -2], [1, 2], 3, 4), "history item id -2 is out of range"),
        (interaction_example(0, [1], [1], 50, 4), "target item id 50 is out of range"),
        (interaction_example(7, [1], [1], 5, 4), "user_id id 7 is out of range"),
    ):
        with pytest.raises(DataError) as error:
            with DatasetWriter(str(tmp_path / "d"), num_items=50, num_users=5) as writer:
                writer.write_shards("interactions-train", [good, padded, bad], num_shards=1)
        assert "interactions-train-00000-of-00001.tfrecord.gz: record 2" in str(error.value)
        assert words in str(error.value)
    # Without counts up front, finish() checks the largest ids against dataset.json's.
    info = DatasetInfo(name="d", modalities=(), attributes={}, num_items=50, num_users=5, shards={})
    late = interaction_example(0, [1, 70], [1, 2], 3, 4)
    with pytest.raises(DataError, match=r"record 1 \(history item\): item id 70 is out of range"):
        with DatasetWriter(str(tmp_path / "d")) as writer:
            writer.write_shards("interactions-train", [good, late], num_shards=1)
            writer.finish(info)
    assert os.listdir(tmp_path) == []
    with pytest.raises(DataError, match="must not contain line breaks"):
        with DatasetWriter(str(tmp_path / "d")) as writer:
            writer.write_keys("items", ["a", "b\nc"])


def test_inspect_prints_texts_and_validate_needs_a_vocabulary(movielens, tmp_path, capsys):
    import shutil

    _, out = movielens
    assert main(["data", "inspect", out, "--samples", "3"]) == 0
    text = capsys.readouterr().out
    assert "sample items (no images" in text and "id maps      item_keys.txt" in text
    assert len([line for line in text.splitlines() if line.startswith("#")]) == 3
    copy = str(tmp_path / "ml")
    shutil.copytree(out, copy)
    os.remove(os.path.join(copy, "vocab.txt"))
    assert main(["data", "validate", copy]) == 1
    report = capsys.readouterr().out
    assert "vocab.txt is missing: a dataset with text needs a WordPiece vocabulary" in report


SECOND_PROCESS = """
import sys
from mmrec.cli import main
source, out, shapes = sys.argv[1:]
assert main(["data", "import", "--format", "movielens", "--path", source, "--out", out]) == 0
synth = ["data", "synth", "--out", shapes, "--items", "50", "--users", "10", "--seed", "3"]
assert main(synth) == 0
"""


@pytest.mark.slow
def test_import_and_synth_are_byte_identical_in_another_process(movielens, tmp_path):
    from mmrec.data import ShapesConfig, write_shapes

    source, out = movielens
    shapes = str(tmp_path / "shapes")
    write_shapes(shapes, ShapesConfig(num_items=50, num_users=10, seed=3), progress=False)
    again, shapes_again = str(tmp_path / "ml"), str(tmp_path / "shapes-again")
    result = subprocess.run(
        [sys.executable, "-c", SECOND_PROCESS, source, again, shapes_again],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": "123", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert _file_hashes(again, skip=()) == _file_hashes(out, skip=())  # dataset.json too
    assert _file_hashes(shapes_again, skip=()) == _file_hashes(shapes, skip=())
    # The command prints the summary table.
    for words in ("interactions train", "cold items (in no training record)", "modalities"):
        assert words in result.stdout
    tf.io.gfile.rmtree(again)


def test_docstring_examples_run():
    import doctest

    from mmrec.data import importer, media, tables

    for module in (importer, media, tables, splits):
        result = doctest.testmod(module, extraglobs={"np": np, "tf": tf})
        assert result.attempted > 0 and result.failed == 0, module.__name__
