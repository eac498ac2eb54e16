"""External item keys end to end, and a real-data-like catalogue (text only, with id maps).

The keys come from the dataset's id maps (``item_keys.txt``: line i is the key of
item id i, listed in ``dataset.json`` under ``"id_maps"``); the recommender keeps
them (`Recommender.item_keys`), returns them (``recommend(..., return_keys=True)``),
maps keys to ids (`Recommender.item_ids_for`), and `mmrec predict` prints them.
The exported signatures are tested in test_export.py and served in test_serving.py.
"""

import doctest
import hashlib
import json
import os
import shutil

import keras
import numpy as np
import pytest

import mmrec
from mmrec.cli import main
from mmrec.cli.serving import recommendation_table
from mmrec.data.schema import DatasetInfo
from mmrec.data.simulation import leave_last_out, write_benchmark
from mmrec.data.tfrecord import item_example
from mmrec.models import catalogue
from mmrec.models.catalogue import ItemKeys
from mmrec.models.recommender import Recommender
from mmrec.training import resolve_config, train

WORDS = ["red", "blue", "green", "star", "ring", "square", "small", "large", "striped", "dotted"]
# Long enough for the tiny vocabulary's many word pieces: no truncation warning.
TEXT_ENCODER = {"text": {"hidden_dim": 8, "sequence_length": 48}}


def movie_key(item_id):
    return str(1 + 3 * item_id)  # MovieLens-like movieIds: sparse, not 0..N-1


def add_id_maps(path, num_items, num_users):
    """Adds the id maps of the dataset contract (files, ``id_maps``, checksums) to ``path``."""
    files = {"items": "item_keys.txt", "users": "user_keys.txt"}
    keys = {"items": [movie_key(i) for i in range(num_items)]}
    keys["users"] = [f"user-{u:03d}" for u in range(num_users)]
    for kind, name in files.items():
        with open(os.path.join(path, name), "w", encoding="utf-8") as f:
            f.write("".join(f"{key}\n" for key in keys[kind]))
    with open(os.path.join(path, "dataset.json"), encoding="utf-8") as f:
        metadata = json.load(f)
    metadata["id_maps"] = files
    metadata["checksums"] = {name: sha256(os.path.join(path, name)) for name in files.values()}
    with open(os.path.join(path, "dataset.json"), "w", encoding="utf-8") as f:
        json.dump(metadata, f, indent=2)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_text_catalogue(path, num_items=40, num_users=30):
    """A tiny catalogue with text only (titles), id maps and leave-last-out splits."""
    rng = np.random.default_rng(0)
    texts = [f"title {i} " + " ".join(rng.choice(WORDS, 4)) for i in range(num_items)]
    sequences = [
        rng.choice(num_items, size=int(rng.integers(5, 9)), replace=False).tolist()
        for _ in range(num_users)
    ]
    info = DatasetInfo(
        name="titles",
        modalities=("text",),
        attributes={},
        num_items=num_items,
        num_users=num_users,
        shards={},
        max_history=10,
    )
    items = [item_example(i, text=text) for i, text in enumerate(texts)]
    splits = leave_last_out(sequences, rng, info.max_history)
    write_benchmark(path, info, items, {}, splits, texts, overwrite=False, progress=False)
    add_id_maps(path, num_items, num_users)
    return texts


@pytest.fixture(scope="module")
def titles(tmp_path_factory):
    """``(path, texts)`` of the text-only catalogue."""
    path = str(tmp_path_factory.mktemp("titles") / "titles")
    return path, write_text_catalogue(path)


@pytest.fixture(scope="module")
def keyed(tiny_shapes, tmp_path_factory):
    """The shared tiny shapes dataset, copied and given id maps."""
    path = str(tmp_path_factory.mktemp("keyed") / "shapes")
    shutil.copytree(tiny_shapes, path)
    info = DatasetInfo.read(path)
    add_id_maps(path, info.num_items, info.num_users)
    return mmrec.data.load(path)


@pytest.fixture(scope="module")
def rec(keyed):
    return Recommender.from_dataset(
        keyed, modalities=("text",), embedding_dim=8, encoder_config=TEXT_ENCODER
    )


def test_from_dataset_keeps_the_catalogues_keys(rec, keyed):
    assert rec.item_keys == keyed.item_keys() == [movie_key(i) for i in range(60)]
    assert rec.item_key_to_id["4"] == 1
    assert rec.get_config()["item_keys"] == rec.item_keys


def test_recommend_returns_the_keys_of_the_returned_ids(rec):
    histories = [[3, 17, 42], [5], []]
    ids, scores, keys = rec.recommend(histories, k=7, return_keys=True)
    assert keys.shape == (3, 7) and keys.dtype.kind == "U"
    np.testing.assert_array_equal(keys, np.vectorize(movie_key)(ids))
    plain_ids, plain_scores = rec.recommend(histories, k=7)
    np.testing.assert_array_equal(ids, plain_ids)
    np.testing.assert_array_equal(scores, plain_scores)


def test_item_ids_for_maps_keys_in_any_nesting_and_names_unknown_ones(rec):
    assert rec.item_ids_for("10") == 3
    assert rec.item_ids_for(["10", "52", "127"]) == [3, 17, 42]
    assert rec.item_ids_for([["10", "52"], ["16"], []]) == [[3, 17], [5], []]
    ids = rec.recommend(rec.item_ids_for([["10", "52", "127"]]), k=5)[0]
    np.testing.assert_array_equal(ids, rec.recommend([[3, 17, 42]], k=5)[0])
    with pytest.raises(ValueError, match=r"Received 2 unknown: \['2', 'tt999'\]") as error:
        rec.item_ids_for([["10", "tt999"], ["2"]])
    assert "catalogue (60 items, e.g. ['1', '4', '7'])" in str(error.value)


def test_keys_survive_keras_save_and_load(rec, tmp_path):
    path = str(tmp_path / "rec.keras")
    rec.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.item_keys == rec.item_keys
    ids, _, keys = loaded.recommend([[3, 17, 42]], k=5, return_keys=True)
    np.testing.assert_array_equal(keys, rec.recommend([[3, 17, 42]], k=5, return_keys=True)[2])
    assert loaded.item_ids_for(["127"]) == [42]


def test_models_without_keys_say_why_keys_are_unavailable(tiny_shapes):
    data = mmrec.data.load(tiny_shapes)
    rec = Recommender.from_dataset(data, modalities=(), item_id_embedding=True, embedding_dim=8)
    assert rec.item_keys is None and rec.get_config()["item_keys"] is None
    with pytest.raises(ValueError, match="return_keys=True needs the items' external keys"):
        rec.recommend([[1]], return_keys=True)
    with pytest.raises(ValueError, match="item_ids_for needs .* no id maps"):
        rec.item_ids_for(["1"])


def test_item_keys_are_checked_when_the_model_is_built():
    with pytest.raises(ValueError, match=r"one item key per item \(3\)\. Received: 2 keys"):
        ItemKeys(["a", "b"], num_items=3)
    with pytest.raises(ValueError, match=r"distinct item keys\. Received duplicates: \['a'\]"):
        ItemKeys(["a", "b", "a"], num_items=3)
    with pytest.raises(ValueError, match="non-empty strings. Received: \\[''\\]"):
        Recommender(num_items=2, item_id_embedding=True, item_keys=["a", ""])


def test_docstring_examples_run():
    result = doctest.testmod(catalogue, extraglobs={"np": np})
    assert result.attempted > 0 and result.failed == 0


def test_recommendation_table_prints_keys_and_cut_texts():
    ids, scores = np.array([7, 12], "int32"), np.array([2.5, 1.25], "float32")
    table = recommendation_table(ids, scores).splitlines()
    assert [line.split() for line in table] == [
        ["rank", "item_id", "score"],
        ["1", "7", "2.5000"],
        ["2", "12", "1.2500"],
    ]
    texts = [b"Toy Story (1995) Adventure|Animation", "x" * 80]
    table = recommendation_table(ids, scores, [b"1", "2571"], texts, width=20).splitlines()
    assert table[0].split() == ["rank", "item_id", "item_key", "score", "text"]
    assert table[1].split()[:4] == ["1", "7", "1", "2.5000"]
    assert table[1].endswith("Toy Story (1995) Ad…")
    assert table[2].split() == ["2", "12", "2571", "1.2500", "x" * 19 + "…"]


# --- a text-only catalogue with the presets -----------------------------------------------


def test_tiny_preset_trains_on_a_text_only_catalogue(titles, tmp_path, capsys):
    path, _ = titles
    out = str(tmp_path / "run")
    argv = ["train", "recommender", "--data", path, "--out", out, "--config", "tiny"]
    assert main([*argv, "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "the preset's modalities ['image', 'text'] → ['text']" in printed
    # The ID-only baseline says what it is and shows its epochs like the main model
    # (one line per epoch: stdout is not a terminal).
    main_model, baseline = printed.split("training the ID-only baseline")
    assert "1/1 - " in main_model and "- loss: " in main_model
    assert "1/1 - " in baseline.split("\n")[1] and "- loss: " in baseline
    model = mmrec.training.load_run_model(out, Recommender)
    assert model.item_encoder.modalities == ("text",)
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert {"popularity", "id_only", "recommender"} <= set(metrics["test"])


def test_explicitly_configured_modalities_the_dataset_lacks_are_an_error(titles, tmp_path):
    config = resolve_config("recommender", {"preset": "tiny", "modalities": ["image", "text"]})
    with pytest.raises(ValueError, match=r"Expected modalities among the dataset's \['text'\]"):
        train("recommender", titles[0], str(tmp_path / "run"), config)
    # Failed before training: no folder is left to block the corrected command.
    assert not (tmp_path / "run").exists()


def test_resolved_settings_remember_what_was_set_explicitly():
    settings = resolve_config("recommender", "tiny", {"epochs": 2, "batch_size": None})
    assert settings.explicit == {"epochs"} and settings["modalities"] == ["image", "text"]
    again = resolve_config("recommender", settings)  # what `mmrec train` does
    assert again == settings and again.explicit == {"epochs"}
    from_file = resolve_config("recommender", {"preset": "tiny", "modalities": ["text"]})
    assert from_file.explicit == {"modalities"}
