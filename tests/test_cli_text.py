"""`mmrec train text` and `mmrec generate` for text: the run folder, its report, descriptions."""

import json
import os

import numpy as np
import pytest

import mmrec
from mmrec.cli import main
from mmrec.models.recommender import Recommender
from mmrec.models.text_generation import ConditionalTextGenerator
from mmrec.training import load_run_model, resolve_config, train

# One epoch of two steps with a tiny decoder; the text judge reads for one epoch.
TINY_TEXT = {
    "preset": "tiny",
    "steps_per_epoch": 2,
    "batch_size": 8,
    "hidden_dim": 16,
    "num_layers": 1,
    "num_heads": 2,
    "embedding_dim": 4,
    "judge_epochs": 1,
}
STAR = "shape=star,colour=red,pattern=dots,size=large"


@pytest.fixture(scope="module")
def text_run(tiny_shapes, tmp_path_factory):
    root = tmp_path_factory.mktemp("text_run")
    config = root / "tiny_text.json"
    config.write_text(json.dumps(TINY_TEXT))
    out = str(root / "text")
    args = ["train", "text", "--data", tiny_shapes, "--out", out, "--config", str(config)]
    assert main([*args, "--condition", "attributes", "--epochs", "1"]) == 0
    return out


def test_train_text_writes_a_run_folder_with_the_report(text_run):
    for name in ("config.json", "model.keras", "metrics.json", "training.csv"):
        assert os.path.exists(os.path.join(text_run, name)), name
    assert os.path.exists(os.path.join(text_run, "checkpoints", "best.keras"))
    assert not os.path.exists(os.path.join(text_run, "backup"))
    with open(os.path.join(text_run, "config.json")) as f:
        config = json.load(f)
    assert config["kind"] == "text" and config["config"]["condition"] == "attributes"
    assert config["config"]["epochs"] == 1 and config["config"]["hidden_dim"] == 16
    with open(os.path.join(text_run, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["kind"] == "text" and metrics["condition"] == "attributes"
    assert metrics["epochs"] == 1 and metrics["steps_per_epoch"] == 2
    assert set(metrics["valid"]) == {"loss", "perplexity", "token_accuracy"}
    assert metrics["valid"]["perplexity"] > 1.0
    assert len(metrics["samples"]) == 5
    first = metrics["samples"][0]
    assert set(first["condition"]) == {"shape", "colour", "pattern", "size"}
    assert isinstance(first["text"], str) and first["text"]
    assert set(metrics["judge"]["held_out_accuracy"]) == {"shape", "colour", "pattern", "size"}
    generation = metrics["generation"]
    for key in ("conditional_accuracy", "distinct_1", "self_bleu", "perplexity_bigram"):
        assert key in generation, key
    model = load_run_model(text_run, ConditionalTextGenerator)
    assert model.decoder.get_config()["hidden_dim"] == 16


def test_generate_prints_descriptions_of_a_text_run(text_run, tmp_path, capsys):
    assert main(["generate", "--run", text_run, "--attributes", STAR, "--num", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.strip() for line in lines)
    # The same seed writes the same descriptions; --out also writes them to a file.
    out = tmp_path / "descriptions.txt"
    args = ["generate", "--run", text_run, "--attributes", STAR, "--num", "3", "--out", str(out)]
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == lines
    assert out.read_text().splitlines() == lines
    model = load_run_model(text_run, ConditionalTextGenerator)
    assert (
        model.generate(
            {"shape": "star", "colour": "red", "pattern": "dots", "size": "large"}, num=3, seed=0
        )
        == lines
    )


def test_generate_text_errors_are_one_line(text_run, capsys):
    assert main(["generate", "--run", text_run, "--users", "1,2"]) == 2
    err = capsys.readouterr().err
    assert "is conditioned on attributes, not users: use --attributes." in err
    assert len(err.strip().splitlines()) == 1
    assert main(["generate", "--run", text_run, "--attributes", "shape=star"]) == 2
    assert "Expected a value for each attribute" in capsys.readouterr().err


def test_export_command_exports_a_text_run(text_run, tmp_path, capsys):
    base = tmp_path / "savedmodels"
    args = ["export", "--model", text_run, "--name", "text", "--base-dir", str(base)]
    assert main([*args, "--no-validate"]) == 0
    assert os.path.exists(os.path.join(base, "text", "1", "saved_model.pb"))


def test_bad_condition_is_a_one_line_usage_error(tiny_shapes, tmp_path, capsys):
    args = ["train", "text", "--data", tiny_shapes, "--out", str(tmp_path / "t")]
    assert main([*args, "--condition", "colour"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mmrec: error: ") and len(err.strip().splitlines()) == 1
    assert "expected 'condition' to be one of" in err and "'attributes'" in err
    # A user-conditioned run needs a recommender's user encoder.
    assert main([*args, "--condition", "user"]) == 2
    assert "give --recommender RUN" in capsys.readouterr().err
    # Only the generator kinds take a condition.
    recommender = ["train", "recommender", "--data", tiny_shapes, "--out", str(tmp_path / "r")]
    assert main([*recommender, "--condition", "user"]) == 2
    assert "--condition is for the conditioned kinds" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "t") and not os.path.exists(tmp_path / "r")


def test_user_conditioned_text_run_uses_the_recommenders_user_encoder(tiny_shapes, tmp_path):
    data = mmrec.data.load(tiny_shapes)
    rec = Recommender.from_dataset(
        data, modalities=("text",), embedding_dim=8, encoder_config={"text": {"hidden_dim": 8}}
    )
    config = resolve_config("text", {**TINY_TEXT, "condition": "user", "judge_epochs": None})
    result = train("text", data, tmp_path / "user_text", config, recommender=rec)
    assert result.metrics["condition"] == "user" and "generation" not in result.metrics
    assert all(isinstance(s["condition"], list) for s in result.metrics["samples"])  # histories
    model = load_run_model(result.path, ConditionalTextGenerator)
    user_encoder = model.conditioning.preference_model.user_encoder
    assert not user_encoder.trainable  # frozen: the recommender's, unchanged by training
    for ours, recommenders in zip(
        user_encoder.get_weights(), rec.build_user_encoder().get_weights(), strict=True
    ):
        np.testing.assert_array_equal(ours, recommenders)
    texts = model.generate([3, 17, 42], num=2, seed=0)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_generate_describes_catalogue_items_with_an_item_conditioned_run(
    tiny_shapes, tmp_path, capsys
):
    data = mmrec.data.load(tiny_shapes)
    settings = {**TINY_TEXT, "condition": "item", "judge_epochs": None, "epochs": 1}
    # The captioner's item encoder pretrained as an attribute classifier, then frozen.
    config = resolve_config("text", {**settings, "pretrain_epochs": 1})
    result = train("text", data, tmp_path / "captions", config)
    capsys.readouterr()  # the training log
    args = ["generate", "--run", result.path, "--items", "3,17", "--num", "2", "--seed", "5"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    model = load_run_model(result.path, ConditionalTextGenerator)
    assert not model.conditioning.network.get_layer("item_encoder").trainable
    content = model.conditioning.item_content(data, [3, 17])
    expected = model.generate(content, num=2, seed=5)
    assert lines == [text for texts in expected for text in texts] and len(lines) == 4
    # Items outside the catalogue, users for a model that describes items: one-line errors.
    assert main(["generate", "--run", result.path, "--items", "3,100000"]) == 2
    assert f"Expected item ids in [0, {data.info.num_items}). Received: [100000]" in (
        capsys.readouterr().err
    )
    assert main(["generate", "--run", result.path, "--users", "1"]) == 2
    assert "is conditioned on item, not users: use --items." in capsys.readouterr().err
    # Only a captioner has an item encoder to pretrain.
    config = resolve_config("text", {**settings, "condition": "attributes", "pretrain_epochs": 1})
    with pytest.raises(ValueError, match="pretrain_epochs only with condition 'item'"):
        train("text", data, tmp_path / "attributes", config)


def test_items_for_an_attribute_run_and_nothing_given_are_usage_errors(text_run, capsys):
    assert main(["generate", "--run", text_run, "--items", "3"]) == 2
    assert "is conditioned on attributes, not items: use --attributes." in capsys.readouterr().err
    assert main(["generate", "--run", text_run]) == 2
    assert "Give what to generate for: --users, --text, --attributes or --items." in (
        capsys.readouterr().err
    )


def test_a_text_run_starts_from_a_local_pretrained_preset_with_lora(tiny_shapes, tmp_path):
    from mmrec import testing
    from mmrec.models.pretrained_text import PretrainedTextDecoder

    preset = testing.save_tiny_gpt2_preset(str(tmp_path / "tiny_gpt2"))
    data = mmrec.data.load(tiny_shapes)
    settings = {
        **{
            k: v for k, v in TINY_TEXT.items() if k not in ("hidden_dim", "num_layers", "num_heads")
        },
        "pretrained": preset,
        "lora_rank": 2,
        "judge_epochs": None,
        "epochs": 1,
    }
    result = train("text", data, tmp_path / "gpt2_text", resolve_config("text", settings))
    model = load_run_model(result.path, ConditionalTextGenerator)
    assert isinstance(model.decoder, PretrainedTextDecoder)
    assert model.decoder.get_config()["lora_rank"] == 2
    assert result.metrics["valid"]["perplexity"] > 1.0
    # The run's samples were written with the preset's own tokenizer (byte-pair, not WordPiece).
    assert all(isinstance(s["text"], str) for s in result.metrics["samples"])
    # A decoder setting beside a preset is a contradiction, not silently dropped.
    with pytest.raises(ValueError, match="either preset"):
        ConditionalTextGenerator.from_dataset(data, preset=preset, decoder={"hidden_dim": 8})
    with pytest.raises(ValueError, match="give preset=PATH too"):
        ConditionalTextGenerator.from_dataset(data, lora_rank=2)
