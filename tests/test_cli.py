"""The `mmrec` command: real subcommands on real folders; usage errors in one line, bugs with
their traceback; attribute class names and ids alike."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec
import mmrec.data
import mmrec.serving
from mmrec.cli import main
from mmrec.cli.generation import condition_options
from mmrec.cli.serving import generate_image_request
from mmrec.errors import UsageError, raised_by_mmrec, usage_errors
from mmrec.models import ConditionalGAN
from mmrec.models.attributes import check_positive_int


def test_synth_inspect_validate(tmp_path, capsys):
    out = str(tmp_path / "s")
    assert main(["data", "synth", "--out", out, "--items", "60", "--users", "20"]) == 0
    assert "60 items, 20 users" in capsys.readouterr().out

    assert main(["data", "inspect", out, "--samples", "12"]) == 0
    text = capsys.readouterr().out
    assert "items        60 (6 cold" in text
    assert "attribute    shape: circle=" in text
    sheet = os.path.join(out, "contact_sheet.png")
    assert open(sheet, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(sheet) > 20_000  # a real picture, not an empty canvas

    assert main(["data", "validate", out]) == 0
    report = capsys.readouterr().out
    assert "checksums: ok" in report and json.loads(report.splitlines()[-1]) == {"problems": 0}

    # Corrupt one shard: validate names it and exits 1; inspect fails with a clear line.
    shard = os.path.join(out, "interactions-test-00000-of-00001.tfrecord.gz")
    data = open(shard, "rb").read()
    open(shard, "wb").write(data[: len(data) - 40])
    assert main(["data", "validate", out]) == 1
    report = capsys.readouterr().out
    assert "checksums: " in report and "checksum mismatch" in report
    assert "interactions-test: 1 problem(s)" in report and "shard ended after" in report
    assert main(["data", "inspect", out]) == 2
    assert "mmrec: error:" in capsys.readouterr().err


def test_existing_folder_needs_overwrite(tmp_path, capsys):
    out = str(tmp_path / "s")
    os.makedirs(out)
    assert main(["data", "synth", "--out", out, "--items", "60", "--users", "5"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_help_explains_itself():
    result = subprocess.run(
        [sys.executable, "-m", "mmrec.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "mmrec data synth --out tf_records/shapes" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "mmrec.cli", "data", "synth", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "byte-identical" in result.stdout and "--image-size {32,64}" in result.stdout


def test_bad_arguments_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", "--image-size", "48"])
    assert exit_info.value.code == 2
    assert "invalid choice: 48" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "synth", "--items", "0"])
    assert "expected a positive integer" in capsys.readouterr().err


def test_evaluate_scores_baselines_side_by_side(tmp_path, capsys):
    data = str(tmp_path / "s")
    assert main(["data", "synth", "--out", data, "--items", "120", "--users", "60"]) == 0
    capsys.readouterr()
    out = str(tmp_path / "results.json")
    baselines = "popularity,oracle,posterior,posterior+true_pop"
    assert main(["evaluate", "--data", data, "--baselines", baselines, "--out", out]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[1].split()[:4] == ["model", "R@10", "R@20", "R@50"]
    results = json.load(open(out))
    assert list(results) == baselines.split(",")
    assert all(r["examples"] == 60 for r in results.values())
    recall = {name: r["overall"]["recall@50"] for name, r in results.items()}
    assert recall["oracle"] > recall["popularity"]
    assert recall["posterior+true_pop"] > recall["popularity"]
    assert main(["evaluate", "--data", data, "--baselines", "median"]) == 2
    assert "Expected baselines among" in capsys.readouterr().err


# --- errors: usage errors in one line, bugs with their traceback ---------------------------------


def test_usage_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MMREC_DEBUG", raising=False)
    argv = ["data", "synth", "--out", str(tmp_path / "s"), "--items", "10"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "mmrec: error: Expected num_items >= 50. Received: num_items=10\n"

    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "ValueError: Expected num_items >= 50" in err  # the library's error, as the cause
    assert err.splitlines()[-1] == "mmrec: error: Expected num_items >= 50. Received: num_items=10"

    monkeypatch.setenv("MMREC_DEBUG", "1")
    assert main(argv) == 2
    assert "Traceback" in capsys.readouterr().err


def test_missing_files_are_usage_errors(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmrec: error: No dataset.json in") and len(err.splitlines()) == 1
    assert main(["export", "--model", str(tmp_path / "model.keras")]) == 2
    kinds = (
        "Recommender or ConditionalGAN or ConditionalVAE or ConditionalTextGenerator or "
        "ConditionalAudioGenerator or MultimodalItemGenerator"
    )
    assert f"No trained {kinds} at" in capsys.readouterr().err


@pytest.mark.parametrize("error", [RuntimeError("boom"), ValueError("boom")])
def test_unexpected_errors_show_their_traceback(error, tmp_path, capsys, monkeypatch):
    def write_shapes(*args, **kwargs):
        raise error

    monkeypatch.setattr(mmrec.data, "write_shapes", write_shapes)
    assert main(["data", "synth", "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert f"{type(error).__name__}: boom" in err and "mmrec: error" not in err


def test_a_keras_value_error_is_not_a_usage_error(tmp_path, capsys, monkeypatch):
    def write_shapes(*args, **kwargs):
        keras.layers.Dense(-1)  # a ValueError raised inside Keras: a bug, not a message

    monkeypatch.setattr(mmrec.data, "write_shapes", write_shapes)
    assert main(["data", "synth", "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError" in err and "units" in err


def test_raised_by_mmrec_tells_library_messages_from_framework_errors():
    def caught(function):
        try:
            function()
        except ValueError as e:
            return e
        raise AssertionError("no ValueError")

    assert raised_by_mmrec(caught(lambda: check_positive_int("num", 0)))
    assert not raised_by_mmrec(caught(lambda: keras.layers.Dense(-1)))
    # mmrec code called from inside Keras (e.g. during fit) is not input validation.
    called_by_keras = caught(
        lambda: keras.tree.map_structure(lambda v: check_positive_int("num", v), [0])
    )
    assert not raised_by_mmrec(called_by_keras)
    assert not raised_by_mmrec(caught(lambda: int("x")))

    with pytest.raises(UsageError, match="Expected num to be a positive int") as info:
        with usage_errors():
            check_positive_int("num", 0)
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(ValueError, match="units"):
        with usage_errors():
            keras.layers.Dense(-1)


# --- attributes: class names and ids alike -------------------------------------------------------

TINY_GAN = {"latent_dim": 8, "generator_filters": (16, 8, 8, 4), "discriminator_filters": (4, 8, 8)}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("shapes") / "tiny")
    mmrec.data.write_shapes(
        path, mmrec.data.ShapesConfig(num_items=60, num_users=20), progress=False
    )
    return mmrec.data.load(path)


@pytest.fixture(scope="module")
def attribute_gan(shapes, tmp_path_factory):
    """An (untrained) attribute-conditioned generator saved as .keras."""
    keras.utils.set_random_seed(0)
    gan = ConditionalGAN.from_dataset(shapes, condition="attributes", seed=0, **TINY_GAN)
    path = str(tmp_path_factory.mktemp("gan") / "gan.keras")
    gan.save(path)
    return gan, path


def test_generate_takes_attribute_names_and_ids(attribute_gan, tmp_path, capsys):
    gan, path = attribute_gan
    out = str(tmp_path / "star.png")
    argv = ["generate", "--run", path, "--num", "2", "--seed", "5", "--out", out]
    assert main([*argv, "--attributes", "shape=star,colour=3,pattern=plain,size=0"]) == 0
    assert "1 row(s) × 2 images" in capsys.readouterr().out
    by_name = tf.io.decode_png(open(out, "rb").read()).numpy()
    attributes = gan.attributes
    ids = {"shape": attributes["shape"].index("star"), "colour": 3, "pattern": 0, "size": 0}
    assert attributes["pattern"][0] == "plain"
    expected = gan.generate({k: [v] for k, v in ids.items()}, num=2, seed=5, dtype="uint8")
    assert by_name.shape == (36, 70, 3)  # one row of two 32-px images, 2-px padding
    np.testing.assert_array_equal(by_name[2:34, 2:34], expected[0, 0])
    assert main([*argv, "--attributes", ",".join(f"{k}={v}" for k, v in ids.items())]) == 0
    np.testing.assert_array_equal(tf.io.decode_png(open(out, "rb").read()).numpy(), by_name)

    assert main([*argv, "--attributes", "shape=blob,colour=3,pattern=plain,size=0"]) == 2
    err = capsys.readouterr().err
    assert "Expected shape to be one of" in err and "'blob'" in err and "Traceback" not in err


def test_generate_names_the_options_a_model_takes(attribute_gan, tmp_path, capsys):
    argv = ["generate", "--run", attribute_gan[1], "--out", str(tmp_path / "g.png")]
    assert main([*argv, "--text", "a red star"]) == 2
    assert "is conditioned on attributes, not text: use --attributes." in capsys.readouterr().err
    assert main([*argv, "--users", "1,2"]) == 2
    assert "not users: use --attributes." in capsys.readouterr().err


def test_condition_options_follow_the_conditioning(attribute_gan):
    conditioning = attribute_gan[0].conditioning
    assert condition_options(conditioning.serving_inputs(), conditioning.takes_labels) == [
        "--attributes"
    ]
    assert condition_options({"history"}, takes_labels=True) == ["--users", "--attributes"]
    assert condition_options({"text"}) == ["--text"]
    assert condition_options({"history"}, history_option="--history") == ["--history"]


def test_predict_requests_take_attribute_names_and_ids(shapes):
    classes = shapes.info.attributes
    served = {"label_shape", "label_colour", "label_pattern", "label_size"}
    star = classes["shape"].index("star")
    by_name = generate_image_request(
        served, attributes="shape=star,colour=3,pattern=plain,size=0", classes=classes, count=3
    )
    assert sorted(by_name) == sorted(served | {"seed"})
    np.testing.assert_array_equal(by_name["label_shape"], [star] * 3)
    np.testing.assert_array_equal(by_name["label_colour"], [3] * 3)
    np.testing.assert_array_equal(by_name["seed"], [0, 1, 2])
    by_id = generate_image_request(served, attributes=f"shape={star},colour=3,pattern=0,size=0")
    assert {k: v.tolist() for k, v in by_id.items()} == {
        "seed": [0],
        "label_shape": [star],
        "label_colour": [3],
        "label_pattern": [0],
        "label_size": [0],
    }

    with pytest.raises(UsageError, match="shape=star.*give --data DIR"):
        generate_image_request(served, attributes="shape=star,colour=3,pattern=0,size=0")
    with pytest.raises(UsageError, match="Expected shape to be one of"):
        generate_image_request(
            served, attributes="shape=blob,colour=3,pattern=0,size=0", classes=classes
        )
    with pytest.raises(UsageError, match="missing \\['size'\\]"):
        generate_image_request(served, attributes="shape=1,colour=3,pattern=0")
    with pytest.raises(UsageError, match="not text: use --attributes"):
        generate_image_request(served, text="a red star")
    with pytest.raises(UsageError, match="Expected --history for this generator"):
        generate_image_request({"history"})
    request = generate_image_request({"history"}, history=[3, 17], seed=4, count=2)
    assert request["history"] == [[3, 17], [3, 17]] and list(request["seed"]) == [4, 5]


class FakeClient:
    """Answers `mmrec predict` like a server with one attribute-conditioned generator."""

    requests = []

    def __init__(self, address, protocol="rest", **tls):
        self.address = address

    def metadata(self, model, version=None):
        inputs = {name: {"dtype": "DT_INT32"} for name in ("label_shape", "label_colour")}
        inputs["seed"] = {"dtype": "DT_INT64"}
        signature = {"inputs": inputs, "outputs": {"images_png_bytes": {"dtype": "DT_STRING"}}}
        return {"metadata": {"signature_def": {"signature_def": {"generate_image": signature}}}}

    def predict(self, model, inputs, signature_name, version=None):
        self.requests.append(inputs)
        png = tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy()
        return {"images_png_bytes": np.array([png] * len(inputs["seed"]), dtype=object)}

    def close(self):
        pass


def test_predict_resolves_class_names_with_data(shapes, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(mmrec.serving, "Client", FakeClient)
    out = str(tmp_path / "images.png")
    argv = ["predict", "--model", "gen", "--png", out, "--count", "2"]
    assert main([*argv, "--attributes", "shape=star,colour=red", "--data", shapes.path]) == 0
    assert "wrote" in capsys.readouterr().out
    classes = shapes.info.attributes
    request = FakeClient.requests[-1]
    np.testing.assert_array_equal(request["label_shape"], [classes["shape"].index("star")] * 2)
    np.testing.assert_array_equal(request["label_colour"], [classes["colour"].index("red")] * 2)
    assert tf.io.decode_png(open(out, "rb").read()).shape == (4, 8, 3)
    assert main([*argv, "--attributes", "shape=4,colour=1"]) == 0
    np.testing.assert_array_equal(FakeClient.requests[-1]["label_shape"], [4, 4])
    assert main([*argv, "--attributes", "shape=star,colour=1"]) == 2
    assert "give --data DIR" in capsys.readouterr().err


def test_the_cli_lists_the_library_baselines():
    from mmrec.cli.training import BASELINES
    from mmrec.evaluation.ranking import BASELINES as LIBRARY

    assert tuple(BASELINES) == tuple(LIBRARY)
