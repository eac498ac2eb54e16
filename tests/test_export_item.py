"""The complete-item generator's ``generate_item`` signature: exported, validated, served.

Tiny untrained generators (a user-conditioned cGAN, attribute-conditioned text
and audio models) behind one `MultimodalItemGenerator`, exported once and
validated in a fresh TensorFlow + tensorflow-text process. The loaded signature
must return, as PNG, UTF-8 and WAV bytes, what ``generate_item`` returns for the
same seeds; `mmrec serve` must serve it over REST (binary outputs base64) and
`mmrec predict --out DIR` write the PNG, TXT and WAV of each item.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

import mmrec
from mmrec.cli import main
from mmrec.export import build_endpoints, export_saved_model
from mmrec.models import ConditionalGAN, ConditionalTextGenerator, Recommender
from mmrec.models.audio_generation import ConditionalAudioGenerator
from mmrec.models.item_generation import MultimodalItemGenerator
from mmrec.serving import Client
from mmrec.testing import serving

GAN = {"latent_dim": 8, "generator_filters": (16, 8, 8, 4), "discriminator_filters": (4, 8, 8)}
TEXT = {"decoder": {"hidden_dim": 16, "num_layers": 1, "num_heads": 2}, "embedding_dim": 4}
AUDIO = {"latent_dim": 8, "iterations": 2}
HISTORIES = [[3, 17, 42], [5, -1, -1], [8, 9, -1]]


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


def parts(data, condition):
    rec = Recommender.from_dataset(
        data, modalities=("text",), embedding_dim=8, encoder_config={"text": {"hidden_dim": 8}}
    )
    users = {"user_encoder": rec.build_user_encoder()} if condition == "user" else {}
    return (
        ConditionalGAN.from_dataset(data, condition=condition, **users, **GAN),
        ConditionalTextGenerator.from_dataset(data, condition="attributes", seed=0, **TEXT),
        ConditionalAudioGenerator.from_dataset(data, condition="attributes", **AUDIO),
    )


@pytest.fixture(scope="module")
def items(data):
    return MultimodalItemGenerator(*parts(data, "user"), name="item_generator")


@pytest.fixture(scope="module")
def exported(items, tmp_path_factory):
    base = tmp_path_factory.mktemp("savedmodels")
    return base, export_saved_model(items, base, name="item_generator")  # validated


@pytest.fixture(scope="module")
def signature(exported):
    return tf.saved_model.load(exported[1]).signatures["generate_item"]


def decoded(outputs):
    """A generate_item response → generate_item's Python form."""
    return {
        "image": np.stack([tf.io.decode_png(p).numpy() for p in outputs["image_png_bytes"]]),
        "text": [t.decode("utf-8") for t in outputs["text"]],
        "audio": [tf.audio.decode_wav(w) for w in outputs["audio_wav_bytes"]],
        "attributes": {
            k[len("label_") :]: np.asarray(v) for k, v in outputs.items() if k.startswith("label_")
        },
    }


def test_the_signature_returns_png_text_and_wav_equal_to_generate_item(items, signature):
    assert sorted(signature.structured_input_signature[1]) == ["history", "seed"]
    request = tf.constant([[3, 17, 42, -1], [5, -1, -1, -1], [8, 9, -1, -1]], tf.int32)
    outputs = signature(history=request, seed=tf.constant([7, 8, 9], tf.int32))
    assert sorted(outputs) == [
        "audio_wav_bytes",
        "image_png_bytes",
        "label_colour",
        "label_pattern",
        "label_shape",
        "label_size",
        "text",
    ]
    got = decoded({k: v.numpy() for k, v in outputs.items()})
    expected = items.generate_item(HISTORIES, num=1, seed=7)
    np.testing.assert_array_equal(got["image"], expected["image"])
    assert got["text"] == expected["text"]
    for name, values in expected["attributes"].items():
        np.testing.assert_array_equal(got["attributes"][name], values)
    for wav, sound in zip(got["audio"], expected["audio"]):
        assert int(wav.sample_rate) == items.sample_rate
        np.testing.assert_allclose(wav.audio.numpy()[:, 0], sound, atol=2 / 32767)


def test_bad_histories_fail_naming_the_contract(signature):
    with pytest.raises(tf.errors.InvalidArgumentError, match="Expected history item ids >= 0"):
        signature(history=tf.constant([[3, -7]], tf.int32), seed=tf.constant([0], tf.int32))


def test_an_attribute_item_generator_takes_labels(data):
    items = MultimodalItemGenerator(*parts(data, "attributes"))
    assert not items.takes_users
    (endpoint,), vocabulary = build_endpoints(items)
    assert endpoint.name == "generate_item" and vocabulary is not None
    names = sorted(f"label_{n}" for n in data.info.attributes)
    assert sorted(endpoint.input_signature) == [*names, "seed"]
    fn = tf.function(endpoint.fn)
    star = {"label_shape": 4, "label_colour": 0, "label_pattern": 2, "label_size": 2}
    request = {k: tf.constant([v, v], tf.int32) for k, v in star.items()}
    outputs = fn({**request, "seed": tf.constant([1, 2], tf.int32)})
    for key, value in star.items():
        assert outputs[key].numpy().tolist() == [value, value]
    expected = items.generate_item({k[len("label_") :]: v for k, v in star.items()}, 2, seed=1)
    assert [t.decode() for t in outputs["text"].numpy()] == expected["text"]
    request["label_colour"] = tf.constant([0, 8], tf.int32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label_colour in \[0, 8\)"):
        fn({**request, "seed": tf.constant([1, 2], tf.int32)})


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    base, _ = exported
    yield from serving(base, tmp_path_factory.mktemp("server") / "server.log")


def test_mmrec_serve_returns_the_items_and_predict_writes_their_files(
    served, signature, tmp_path, capsys
):
    seeds = tf.constant([4, 5], tf.int32)
    history = tf.constant([[3, 17, 42], [3, 17, 42]], tf.int32)
    expected = decoded({k: v.numpy() for k, v in signature(history=history, seed=seeds).items()})
    with Client(served["rest"]) as client:  # binary outputs travel base64 over REST
        out = client.predict("item_generator", {"history": history.numpy()}, "generate_item")
    # Without a seed, mmrec serve answers with seeds 0..B-1.
    assert (
        decoded(out)["text"]
        == decoded(
            {k: v.numpy() for k, v in signature(history=history, seed=tf.constant([0, 1])).items()}
        )["text"]
    )
    folder = tmp_path / "items"
    args = ["predict", "--server", served["rest"], "--model", "item_generator"]
    assert main([*args, "--history", "3,17,42", "--count", "2", "--seed", "4",
                 "--out", str(folder)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert sorted(os.listdir(folder)) == [
        f"seed{s}.{e}" for s in (4, 5) for e in ("png", "txt", "wav")
    ]
    for row, seed in enumerate((4, 5)):
        png = tf.io.decode_png(tf.io.read_file(str(folder / f"seed{seed}.png"))).numpy()
        np.testing.assert_array_equal(png, expected["image"][row])
        assert (folder / f"seed{seed}.txt").read_text() == expected["text"][row] + "\n"
        wav = tf.audio.decode_wav(tf.io.read_file(str(folder / f"seed{seed}.wav")))
        np.testing.assert_array_equal(wav.audio.numpy(), expected["audio"][row].audio.numpy())
        sampled = ", ".join(f"{n}={int(v[row])}" for n, v in expected["attributes"].items())
        assert f"seed {seed}: " in printed and sampled.split(", ")[0] in printed
    assert main([*args, "--history", "3,17", "--png", "x.png"]) == 2
    assert "generates items: give --out DIR" in capsys.readouterr().err
