"""`MultimodalItemGenerator`: one attribute set drives the image, text and audio generators.

Untrained tiny generators: what is tested is the wiring (the sampled attributes
reach all three, seeds reproduce rows, the file round trip), not the quality
(benchmarks/item_generation.py measures that).
"""

import os

import numpy as np
import pytest
import tensorflow as tf

import mmrec
from mmrec.models import ConditionalGAN, ConditionalTextGenerator, Recommender
from mmrec.models.audio_generation import ConditionalAudioGenerator
from mmrec.models.item_generation import AUDIO_STREAM, IMAGE_STREAM, MultimodalItemGenerator
from mmrec.models.seeding import seeded_noise

GAN = {"latent_dim": 8, "generator_filters": (16, 8, 8, 4), "discriminator_filters": (4, 8, 8)}
TEXT = {"decoder": {"hidden_dim": 16, "num_layers": 1, "num_heads": 2}, "embedding_dim": 4}
AUDIO = {"latent_dim": 8, "iterations": 2}
STAR = {"shape": "star", "colour": "red", "pattern": "dots", "size": "large"}


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


@pytest.fixture(scope="module")
def user_encoder(data):
    rec = Recommender.from_dataset(
        data, modalities=("text",), embedding_dim=8, encoder_config={"text": {"hidden_dim": 8}}
    )
    return rec.build_user_encoder()


@pytest.fixture(scope="module")
def items(data, user_encoder):
    gan = ConditionalGAN.from_dataset(data, condition="user", user_encoder=user_encoder, **GAN)
    text = ConditionalTextGenerator.from_dataset(data, condition="attributes", seed=0, **TEXT)
    audio = ConditionalAudioGenerator.from_dataset(data, condition="attributes", **AUDIO)
    return MultimodalItemGenerator(gan, text, audio, name="items")


def test_one_sampled_attribute_set_drives_all_three_generators(items):
    out = items.generate_item([[3, 17, 42], [5]], num=2, seed=7)
    assert out["image"].shape == (4, 32, 32, 3) and out["image"].dtype == np.uint8
    assert out["audio"].shape == (4, items.audio_generator.num_samples)
    assert out["audio"].dtype == np.float32 and np.abs(out["audio"]).max() <= 1.0
    assert len(out["text"]) == 4 and all(isinstance(t, str) for t in out["text"])
    assert set(out["attributes"]) == {"shape", "colour", "pattern", "size"}
    labels = {f"label_{k}": tf.constant(v) for k, v in out["attributes"].items()}
    seeds = tf.constant(np.arange(4) + 7, tf.int64)
    # Each modality is what its generator makes of exactly those attributes and seeds.
    image = items.image_generator.decode(seeded_noise(seeds, 8, IMAGE_STREAM), labels)
    expected = mmrec.models.image_networks.to_uint8(image)
    np.testing.assert_array_equal(out["image"], expected)
    text = items.text_generator
    ids = text.sample_ids(text.conditioning(labels), seeds)
    assert [t.decode() for t in text.detokenize(ids).numpy()] == out["text"]
    audio = items.audio_generator.decode_waveforms(seeded_noise(seeds, 8, AUDIO_STREAM), labels)
    np.testing.assert_allclose(out["audio"], audio.numpy(), atol=1e-6)


def test_rows_depend_on_their_seed_alone(items):
    both = items.generate_item([[3, 17, 42], [5]], num=1, seed=10)
    second = items.generate_item([5], num=1, seed=11)
    np.testing.assert_array_equal(both["image"][1], second["image"][0])
    assert both["text"][1] == second["text"][0]
    np.testing.assert_allclose(both["audio"][1], second["audio"][0], atol=1e-4)
    for name, values in both["attributes"].items():
        assert values[1] == second["attributes"][name][0]


def test_attributes_skip_the_preferences(items, data):
    out = items.generate_item(STAR, num=3, seed=0)
    names = data.info.attributes
    for name, value in STAR.items():
        assert out["attributes"][name].tolist() == [names[name].index(value)] * 3
    # Different seeds: different images for one attribute set.
    assert not np.array_equal(out["image"][0], out["image"][1])


def test_a_keras_file_round_trip_generates_the_same_items(items, tmp_path):
    path = tmp_path / "items.keras"
    items.save(path)
    loaded = mmrec.training.load_run_model(str(path), MultimodalItemGenerator)
    a = items.generate_item([3, 17, 42], num=2, seed=3)
    b = loaded.generate_item([3, 17, 42], num=2, seed=3)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["text"] == b["text"]
    np.testing.assert_allclose(a["audio"], b["audio"], atol=1e-5)
    assert loaded.preference_model is loaded.image_generator.preference_model


def test_clear_errors(items, data, user_encoder):
    with pytest.raises(ValueError, match="text_generator to be a generator conditioned on"):
        caption = ConditionalTextGenerator.from_dataset(data, condition="item", **TEXT)
        MultimodalItemGenerator(items.image_generator, caption, items.audio_generator)
    attribute_gan = ConditionalGAN.from_dataset(data, condition="attributes", **GAN)
    no_users = MultimodalItemGenerator(attribute_gan, items.text_generator, items.audio_generator)
    with pytest.raises(ValueError, match="Expected a dict of attributes"):
        no_users.generate_item([3, 17])
    with pytest.raises(ValueError, match="Expected temperature > 0"):
        MultimodalItemGenerator(*_parts(items), temperature=0)
    with pytest.raises(ValueError, match="Expected num to be a positive int"):
        items.generate_item([3], num=0)
    with pytest.raises(ValueError, match="Expected a value for each attribute"):
        items.generate_item({"shape": "star"})


def _parts(items):
    return items.image_generator, items.text_generator, items.audio_generator


def test_mmrec_generate_writes_item_files_and_a_gallery(items, tiny_shapes, tmp_path, capsys):
    from mmrec.cli import main
    from mmrec.training.samples import user_histories

    folder = tmp_path / "item"
    folder.mkdir()
    items.save(folder / "model.keras")
    run = ["generate", "--run", str(folder), "--data", tiny_shapes, "--num", "1", "--seed", "4"]
    out = tmp_path / "files"
    assert main([*run, "--users", "1,2", "--out", str(out)]) == 0
    names = sorted(os.listdir(out))
    assert names == [f"user{u}_0.{e}" for u in (1, 2) for e in ("png", "txt", "wav")]
    histories = list(user_histories(mmrec.data.load(tiny_shapes), [1, 2]).values())
    expected = items.generate_item(histories, num=1, seed=4)
    png = tf.io.decode_png(tf.io.read_file(str(out / "user2_0.png"))).numpy()
    np.testing.assert_array_equal(png, expected["image"][1])
    assert (out / "user1_0.txt").read_text() == expected["text"][0] + "\n"
    wav, rate = tf.audio.decode_wav(tf.io.read_file(str(out / "user1_0.wav")))
    assert int(rate) == items.sample_rate
    np.testing.assert_allclose(wav.numpy()[:, 0], expected["audio"][0], atol=1 / 32767)
    capsys.readouterr()
    html = tmp_path / "gallery"
    assert main([*run, "--users", "1,2", "--html", str(html)]) == 0
    page = (html / "index.html").read_text()
    assert page.count("<audio") == 2 and "user 1" in page.lower() and "user 2" in page.lower()
    assert "wrote" in capsys.readouterr().out
    # One-line usage errors: a gallery needs users; files need a folder.
    assert main([*run, "--attributes", "shape=star,colour=red,pattern=dots,size=large",
                 "--html", str(html)]) == 2  # fmt: skip
    assert "--html shows users: give --users IDS." in capsys.readouterr().err
    assert main([*run, "--users", "1"]) == 2
    assert "Give --out DIR" in capsys.readouterr().err


def test_assemble_items_writes_the_item_folder_with_judges_report_and_gallery(
    items, data, tmp_path
):
    from mmrec.training.items import assemble_items, load_item_judges
    from mmrec.training.reports import item_table

    out = tmp_path / "item"
    epochs = {"image": 1, "text": 1, "audio": 1}
    report = assemble_items(
        data, str(out), *_parts(items), num_users=6, gallery_users=2, judge_epochs=epochs
    )
    assert sorted(os.listdir(out)) == ["gallery", "judges", "metrics.json", "model.keras"]
    assert sorted(load_item_judges(str(out))) == ["audio", "image", "text"]
    readable = report["readable_attributes"]  # 1-epoch judges read little on held-out items
    assert report["num_items"] == 6 and sorted(readable) == ["audio", "image", "text"]
    for name in ("shape", "colour", "pattern", "size"):
        readers = [m for m in readable if name in readable[m]]
        assert (f"consistency_{name}" in report) == (len(readers) >= 2), name
        for modality in ("image", "text", "audio"):
            assert (f"accuracy_{modality}_{name}" in report) == (modality in readers)
    for key in ("hit_rate_held_out_items", "hit_rate_random_items", "hit_rate_sampled_attributes"):
        assert 0.0 <= report[key] <= 1.0, key
    table = item_table(report)
    assert table.startswith("items judged") and "user " in table
    assert os.path.exists(report["gallery"])
