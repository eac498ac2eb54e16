"""The data layer: round trips, determinism, atomic writes, pipelines and ground truth."""

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import mmrec
from mmrec.data import PAD_ID, DatasetInfo, ShapesConfig, load, simulation, synthetic, write_shapes
from mmrec.data.tfrecord import WRITER_LOCK, DatasetWriter, item_example

TINY = ShapesConfig(num_items=60, num_users=24, seed=3)


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("data") / "tiny")
    write_shapes(path, TINY, progress=False)
    return path


@pytest.fixture(scope="session")
def stats_path(tmp_path_factory):
    """Large enough for the ground-truth statistics to be stable."""
    path = str(tmp_path_factory.mktemp("data") / "stats")
    write_shapes(path, ShapesConfig(num_items=400, num_users=300, seed=11), progress=False)
    return path


def _shard_bytes(path):
    info = DatasetInfo.read(path)
    return {
        s.file: hashlib.sha256(open(os.path.join(path, s.file), "rb").read()).hexdigest()
        for shards in info.shards.values()
        for s in shards
    }


def test_round_trip_equals_what_was_generated(tiny_path):
    generated = synthetic.generate_shapes(TINY)
    data = load(tiny_path)
    catalogue = data.catalogue()
    np.testing.assert_array_equal(catalogue.images.numpy(), generated["images"])
    assert [t.decode() for t in catalogue.texts.numpy()] == generated["texts"]
    # WAV stores 16-bit PCM: equal up to one quantisation step.
    np.testing.assert_allclose(
        catalogue.audio.numpy(), np.stack(generated["audio"]), atol=0.5 / 32768 + 1e-7
    )
    for attribute in synthetic.ATTRIBUTES:
        np.testing.assert_array_equal(catalogue.labels[attribute], generated["items"][attribute])
    np.testing.assert_allclose(catalogue.popularity, generated["items"]["popularity"], rtol=1e-6)

    rows = generated["splits"]["test"]
    batch = next(iter(data.interactions("test", batch_size=len(rows))))
    for user, history, _, target, _ in rows:
        row = np.flatnonzero(batch["user_id"].numpy() == user)[0]
        expected = np.full(data.info.max_history, PAD_ID)
        expected[: len(history)] = history
        np.testing.assert_array_equal(batch["history"][row], expected)
        assert batch["target"][row] == target

    users = data.users()
    np.testing.assert_array_equal(users["pref_colour"], generated["users"]["colour"])
    np.testing.assert_array_equal(users["pref_shape"], generated["users"]["shape"])


def test_same_seed_is_byte_identical_and_another_seed_differs(tmp_path, tiny_path):
    again = str(tmp_path / "again")
    write_shapes(again, TINY, progress=False)
    assert _shard_bytes(again) == _shard_bytes(tiny_path)
    other = str(tmp_path / "other")
    write_shapes(other, ShapesConfig(num_items=60, num_users=24, seed=4), progress=False)
    differing = [f for f, h in _shard_bytes(other).items() if _shard_bytes(tiny_path)[f] != h]
    assert len(differing) == len(_shard_bytes(other))


def test_dataset_json_records_counts_checksums_and_vocabularies(tiny_path):
    meta = json.load(open(os.path.join(tiny_path, "dataset.json")))
    assert meta["schema_version"] == mmrec.data.SCHEMA_VERSION
    assert meta["counts"]["items"] == 60 and meta["counts"]["users"] == 24
    assert meta["attributes"]["colour"][:2] == ["red", "orange"]
    assert meta["image_size"] == 32 and meta["audio_sample_rate"] == 16000
    assert meta["seed"] == 3 and len(meta["cold_items"]) == 6
    for shards in meta["shards"].values():
        for shard in shards:
            data = open(os.path.join(tiny_path, shard["file"]), "rb").read()
            assert hashlib.sha256(data).hexdigest() == shard["sha256"]
    vocab = open(os.path.join(tiny_path, "vocab.txt")).read().split("\n")
    assert "[UNK]" in vocab and "background" in vocab


def test_interrupted_write_leaves_no_dataset_and_keeps_the_old_one(tmp_path, tiny_path):
    target = str(tmp_path / "ds")

    def broken_records():
        yield item_example(0, text="a red circle")
        raise KeyboardInterrupt  # stands in for Ctrl-C half-way through

    with pytest.raises(KeyboardInterrupt):
        with DatasetWriter(target) as writer:
            writer.write_shards("items", broken_records(), num_shards=1, total=2)
    assert os.listdir(tmp_path) == []

    write_shapes(target, TINY, progress=False)
    before = _shard_bytes(target)
    with pytest.raises(KeyboardInterrupt):
        with DatasetWriter(target, overwrite=True) as writer:
            writer.write_shards("items", broken_records(), num_shards=1, total=2)
    assert _shard_bytes(target) == before
    assert sorted(os.listdir(tmp_path)) == ["ds"]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        DatasetWriter(target)


def test_pipelines_have_the_documented_structure(tiny_path):
    data = load(tiny_path)
    items = next(iter(data.items(batch_size=8)))
    assert items["image"].dtype == tf.uint8 and items["image"].shape == (8, 32, 32, 3)
    assert items["audio"].dtype == tf.float32 and items["audio"].shape == (8, 8000)
    assert items["text"].dtype == tf.string
    assert set(items) >= {"item_id", "label_shape", "label_colour", "label_pattern", "label_size"}

    sizes = [b["target"].shape[0] for b in data.interactions("valid", batch_size=10)]
    assert sizes == [10, 10, 4]  # 24 users, one valid example each
    pairs = next(iter(data.generation_pairs("train", batch_size=16)))
    catalogue = data.catalogue()
    np.testing.assert_array_equal(
        pairs["image"].numpy(), tf.gather(catalogue.images, pairs["target"]).numpy()
    )
    np.testing.assert_array_equal(
        pairs["label_colour"], catalogue.labels["colour"][pairs["target"].numpy()]
    )


def test_generation_pairs_can_leave_out_the_items_a_generator_is_judged_on(tiny_path):
    data = load(tiny_path)

    def targets(**kwargs):
        batches = data.generation_pairs("train", batch_size=16, shuffle=False, **kwargs)
        return np.concatenate([b["target"].numpy() for b in batches])

    everything = targets()
    held_out = np.arange(0, data.info.num_items, 5)  # the judges' held-out items
    kept = targets(exclude_targets=held_out)
    assert np.isin(everything, held_out).any()  # the tiny dataset does train on some of them
    np.testing.assert_array_equal(kept, everything[~np.isin(everything, held_out)])
    with pytest.raises(ValueError, match=r"item ids in \[0, 60\)\. Received: ids from 3 to 60"):
        data.generation_pairs("train", exclude_targets=[3, 60])


def test_interactions_carry_the_targets_content_and_seeded_negatives(tiny_path):
    data = load(tiny_path)
    features = data.catalogue().features()
    batches = list(data.interactions("train", batch_size=16, content=["image", "text"]))
    for batch in batches:
        assert set(batch) == {"user_id", "history", "target", "image", "text"}
        targets = batch["target"].numpy()
        np.testing.assert_array_equal(batch["image"], features["image"].numpy()[targets])
        np.testing.assert_array_equal(batch["text"], features["text"].numpy()[targets])
    plain = [b["target"].numpy() for b in data.interactions("train", batch_size=16)]
    assert [b["target"].numpy().tolist() for b in batches] == [p.tolist() for p in plain]

    def negatives(seed):
        ds = data.interactions("train", batch_size=16, content=True, negatives=5, seed=seed)
        return [b["negatives"] for b in ds.take(3)]

    first, again, other = negatives(0), negatives(0), negatives(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["item_id"], b["item_id"])
    assert any(not np.array_equal(a["item_id"], b["item_id"]) for a, b in zip(first, other))
    ids = np.concatenate([n["item_id"].numpy() for n in first])
    assert ids.shape == (15,) and ids.min() >= 0 and ids.max() < TINY.num_items
    assert len({tuple(n["item_id"].numpy()) for n in first}) == 3  # a new draw per batch
    np.testing.assert_array_equal(first[0]["image"], features["image"].numpy()[first[0]["item_id"]])
    assert set(first[0]) == {"item_id", *data.info.modalities}
    with pytest.raises(ValueError, match=r"Expected content modalities among the dataset's"):
        data.interactions("train", content=["video"])
    with pytest.raises(ValueError, match="Expected negatives >= 0. Received: negatives=-1"):
        data.interactions("train", negatives=-1)


def test_interactions_carry_the_history_items_once_each_or_a_seeded_few(tiny_path):
    data = load(tiny_path)
    images = data.catalogue().features()["image"].numpy()
    for limit in (True, 3):
        ds = data.interactions("train", batch_size=8, content=["image"], history_content=limit)
        for batch in ds.take(4):
            history, index = batch["history"].numpy(), batch["history_index"].numpy()
            ids = batch["history_items"]["item_id"].numpy()
            assert len(set(ids.tolist())) == len(ids)  # each item once
            np.testing.assert_array_equal(batch["history_items"]["image"], images[ids])
            kept = index >= 0
            np.testing.assert_array_equal(ids[index[kept]], history[kept])  # where it is
            assert not kept[history == PAD_ID].any()
            if limit is True:
                assert kept[history != PAD_ID].all()
                assert set(ids) == set(history[history != PAD_ID].tolist())
            else:
                assert len(ids) == min(3, len(set(history[history != PAD_ID].tolist())))
                assert set(history[(history != PAD_ID) & ~kept].tolist()).isdisjoint(ids)

    def draws():
        ds = data.interactions("train", batch_size=8, content=["image"], history_content=3)
        return [b["history_items"]["item_id"].numpy().tolist() for b in ds.take(4)]

    assert draws() == draws()  # seeded
    with pytest.raises(ValueError, match="Expected history_content to be True, False or an int"):
        data.interactions("train", history_content=-2)


def test_shuffle_is_seeded_and_complete(tiny_path):
    data = load(tiny_path)

    def targets(seed):
        ds = data.interactions("train", batch_size=10_000, shuffle=True, seed=seed)
        return np.concatenate([b["target"].numpy() for b in ds])

    unshuffled = np.concatenate(
        [b["target"].numpy() for b in data.interactions("train", shuffle=False)]
    )
    a, b, c = targets(1), targets(1), targets(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, unshuffled)
    np.testing.assert_array_equal(np.sort(a), np.sort(unshuffled))


def test_histories_keep_the_most_recent_items(tmp_path):
    config = ShapesConfig(num_items=60, num_users=10, seed=5, max_history=4)
    write_shapes(str(tmp_path / "short"), config, progress=False)
    generated = synthetic.generate_shapes(config)
    data = load(str(tmp_path / "short"))
    batch = next(iter(data.interactions("test", batch_size=10, shuffle=False)))
    for user_id, history in zip(batch["user_id"].numpy(), batch["history"].numpy()):
        sequence = generated["sequences"][user_id]
        np.testing.assert_array_equal(history, sequence[-5:-1])


def test_users_prefer_what_they_chose(stats_path):
    from mmrec.data.inspect import preference_hit_rates

    rates = preference_hit_rates(load(stats_path), "test")
    # DESIGN: about half of a user's items hit a favourite colour and shape; random ~7%.
    assert rates["test_targets"] > 0.35
    assert rates["random_items"] < 0.12
    assert rates["test_targets"] > 4 * rates["random_items"]


def test_cold_items_never_occur_in_training_sequences(stats_path):
    data = load(stats_path)
    cold = set(data.info.cold_items)
    assert len(cold) == 40
    train_ids = set()
    for batch in data.interactions("train", batch_size=4096):
        train_ids |= set(batch["history"].numpy().ravel()) | set(batch["target"].numpy())
    assert not cold & train_ids
    held_out = set()
    for split in ("valid", "test"):
        for batch in data.interactions(split, batch_size=4096):
            held_out |= set(batch["target"].numpy())
    assert cold & held_out  # cold items are valid/test targets: the cold-start segment


def test_oracle_affinity_ranks_held_out_targets_high(stats_path):
    data = load(stats_path)
    catalogue, users, info = data.catalogue(), data.users(), data.info
    prefs = {a: users[f"pref_{a}"] for a in info.user_preferences}
    scores = simulation.affinity(info.affinity, catalogue.labels, catalogue.popularity, prefs)
    batch = next(iter(data.interactions("test", batch_size=4096)))
    uid, target = batch["user_id"].numpy(), batch["target"].numpy()
    ranks = (scores[uid] > scores[uid, target][:, None]).sum(axis=1)
    # A target's ground-truth affinity beats that of most of the catalogue.
    assert np.median(ranks) < 0.15 * info.num_items


def test_config_errors_say_what_was_expected():
    with pytest.raises(
        ValueError, match="Expected image_size to be 32 or 64. Received: image_size=48"
    ):
        ShapesConfig(image_size=48)
    with pytest.raises(ValueError, match="max_sequence"):
        ShapesConfig(num_items=50, max_sequence=60)


def test_user_items_are_whole_sequences_up_to_a_split(tmp_path):
    # max_history=4: records carry 4 items, user_items still the whole history.
    config = ShapesConfig(num_items=60, num_users=10, seed=5, max_history=4)
    write_shapes(str(tmp_path / "short"), config, progress=False)
    sequences = synthetic.generate_shapes(config)["sequences"]
    data = load(str(tmp_path / "short"))
    for split, end in (("train", -2), ("valid", -1), ("test", None)):
        seen = data.user_items(split)
        assert seen == {u: set(s[:end].tolist()) for u, s in enumerate(sequences)}


KILLED_WRITER = """
import os, signal, sys
from mmrec.data.tfrecord import WRITER_LOCK, DatasetWriter, item_example

writer = DatasetWriter(sys.argv[1]).__enter__()
writer.write_shards("items", [item_example(0, text="a red circle")], num_shards=1)
os.kill(os.getpid(), signal.SIGKILL)  # no clean-up runs
"""


def test_the_next_write_removes_what_killed_writers_left(tmp_path):
    target = str(tmp_path / "ds")
    result = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, target],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    (killed,) = os.listdir(tmp_path)
    assert killed.startswith("ds.partial-")
    hour_ago = time.time() - 3600
    for name in ("ds.partial-0000000a", "ds.old-0000000b"):  # killed before locking / renaming
        os.makedirs(tmp_path / name)
        os.utime(tmp_path / name, (hour_ago, hour_ago))
    os.makedirs(tmp_path / "ds.partial-0000000c")  # a writer starting now: not yet locked
    os.makedirs(tmp_path / "ds.partial-0000000d")  # a writer at work (its lock is held)
    with open(tmp_path / "ds.partial-0000000d" / WRITER_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_shapes(target, TINY, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["ds", "ds.partial-0000000c", "ds.partial-0000000d"]
    assert WRITER_LOCK not in os.listdir(target)


def test_every_record_is_serialised_deterministically():
    """Plain SerializeToString() orders an Example's feature map differently from one process
    to the next: the same seed would write different bytes (and dataset.json checksums)."""
    import ast
    import pathlib

    found = []
    for path in sorted((pathlib.Path(mmrec.__file__).parent / "data").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "SerializeToString":
                keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                if keywords.get("deterministic") is not True:
                    found.append(f"{path.name}:{node.lineno}")
    assert not found, f"use mmrec.data.tfrecord.serialize: {found}"
