"""`mmrec train`, `mmrec generate`, `mmrec quickstart`: real runs on a tiny dataset.

One short epoch per kind (module fixtures, trained once through the CLI), then
the run folders, the metrics, the errors and the quick start (which reuses the
finished runs, as it does on a rerun) are checked. Then the run-kind registry:
``None`` settings take the model's defaults, given ones reach the model, a new
kind trains through the same driver, mixed precision survives ``model.keras``,
and a user-conditioned GAN is judged on Fashion-MNIST's attributes.
"""

import contextlib
import csv
import dataclasses
import glob
import io
import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec
from mmrec.cli import main
from mmrec.data.fashion_mnist import DEFAULT_DIR, FashionMnistConfig, write_fashion_mnist
from mmrec.evaluation.generation import AttributeJudge
from mmrec.layers.item_encoder import ENCODERS
from mmrec.models import ConditionalGAN, ConditionalVAE
from mmrec.models.recommender import Recommender
from mmrec.training import (
    RunKind,
    RunPlan,
    configs,
    get_run_kind,
    load_run_model,
    precision_policy,
    register_run_kind,
    resolve_config,
    run_kind_names,
    runs,
    train,
)
from mmrec.training.configs import known_keys
from mmrec.training.kinds import RUN_KINDS
from mmrec.training.quickstart import OVERRIDES, SMOKE

# One short epoch of each kind: the quick start's smoke settings (so that it reuses the runs).
SHORT = {
    kind: {"preset": "tiny", **(OVERRIDES[kind] if kind == "recommender" else {}), **settings}
    for kind, settings in SMOKE.items()
}
# The VAE is no longer part of the quick start: its short run, as the others'.
SHORT["vae"] = {**SHORT["gan"]}


@pytest.fixture(scope="module")
def data_dir(tiny_shapes):
    return tiny_shapes


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("runs"))


def run_cli(argv):
    """``main(argv)`` → (exit status, stdout, stderr), also inside module fixtures."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


def train_kind(kind, data_dir, runs_dir, *extra):
    config = os.path.join(runs_dir, f"{kind}.json")
    with open(config, "w") as f:
        json.dump(SHORT[kind], f)
    out = os.path.join(runs_dir, kind)
    argv = ["train", kind, "--data", data_dir, "--out", out, "--config", config, "--epochs", "1"]
    status, stdout, stderr = run_cli(argv + list(extra))
    assert status == 0, stderr
    return out, stdout


@pytest.fixture(scope="module")
def rec_run(data_dir, runs_dir):
    return train_kind("recommender", data_dir, runs_dir)


@pytest.fixture(scope="module")
def judge_run(data_dir, runs_dir):
    return train_kind("judge", data_dir, runs_dir)


@pytest.fixture(scope="module")
def gan_run(data_dir, runs_dir, rec_run, judge_run):
    return train_kind(
        "gan", data_dir, runs_dir, "--recommender", rec_run[0], "--judge", judge_run[0]
    )


@pytest.fixture(scope="module")
def vae_run(data_dir, runs_dir, rec_run):
    return train_kind("vae", data_dir, runs_dir, "--recommender", rec_run[0])


def read_json(path):
    with open(path) as f:
        return json.load(f)


def summary_tags(folder):
    """Tags of the TensorBoard events under ``folder``."""
    tags = set()
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def csv_rows(run):
    with open(os.path.join(run, "training.csv")) as f:
        return list(csv.DictReader(f))


# --- the four kinds ---------------------------------------------------------------------------


def test_recommender_run_folder_holds_model_metrics_logs_and_baselines(rec_run, data_dir):
    run, stdout = rec_run
    for name in ("config.json", "model.keras", "metrics.json", "training.csv"):
        assert os.path.exists(os.path.join(run, name)), name
    assert os.path.exists(os.path.join(run, "checkpoints", "best.keras"))
    assert not os.path.exists(os.path.join(run, "backup"))  # removed once finished
    config = read_json(os.path.join(run, "config.json"))
    assert config["kind"] == "recommender" and config["data"] == os.path.abspath(data_dir)
    assert config["config"] == resolve_config("recommender", SHORT["recommender"], {"epochs": 1})
    metrics = read_json(os.path.join(run, "metrics.json"))
    # The quick start's recommender trains no ID-only baseline (test_your_data's does).
    assert list(metrics["test"]) == ["popularity", "recommender", "oracle"]
    for result in metrics["test"].values():
        assert result["examples"] == 24
        assert 0.0 <= result["overall"]["recall@10"] <= result["overall"]["recall@50"] <= 1.0
    # The oracle ranks by the true affinity: it beats popularity on shapes.
    test = metrics["test"]
    assert test["oracle"]["overall"]["ndcg@10"] > test["popularity"]["overall"]["ndcg@10"]
    assert metrics["steps_per_epoch"] == 2 and metrics["batch_size"] == 32
    assert len(csv_rows(run)) == 1 and np.isfinite(float(csv_rows(run)[0]["loss"]))
    assert "popularity" in stdout and "oracle" in stdout  # the table is printed
    assert {"epoch_loss", "epoch_learning_rate"} <= summary_tags(os.path.join(run, "logs", "train"))
    assert "epoch_loss" in summary_tags(os.path.join(run, "logs", "validation"))


def test_judge_run_reports_its_held_out_accuracy(judge_run):
    metrics = read_json(os.path.join(judge_run[0], "metrics.json"))
    accuracy = metrics["held_out_accuracy"]
    assert set(accuracy) == {"shape", "colour", "pattern", "size"}
    assert all(0.0 <= v <= 1.0 for v in accuracy.values())
    assert "judge held-out accuracy: shape" in judge_run[1]


def test_gan_run_is_judged_and_writes_sample_grids(gan_run, judge_run):
    run, stdout = gan_run
    metrics = read_json(os.path.join(run, "metrics.json"))
    assert metrics["condition"] == "user"
    assert metrics["judge"]["path"] == os.path.join(judge_run[0], "model.keras")
    generation = metrics["generation"]
    for key in ("hit_rate", "hit_rate_random_items", "fcd", "kcd", "diversity"):
        assert np.isfinite(generation[key]), key
    assert set(generation["conditional_accuracy"]) == {"shape", "colour", "pattern", "size"}
    assert "personalisation hit-rate" in stdout
    assert set(csv_rows(run)[0]) >= {"d_loss", "g_loss", "val_d_loss"}
    for name in ("epoch_001.png", "final.png"):
        with open(os.path.join(run, "samples", name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "samples" in summary_tags(os.path.join(run, "logs", "images"))
    assert os.path.exists(os.path.join(run, "checkpoints", "last.keras"))
    assert not os.path.exists(os.path.join(run, "judge"))  # --judge was given


def test_vae_run_trains_its_own_judge_and_reports_the_elbo(vae_run):
    run, _ = vae_run
    metrics = read_json(os.path.join(run, "metrics.json"))
    assert os.path.exists(os.path.join(run, "judge", "metrics.json"))
    assert metrics["judge"]["path"] == os.path.join(run, "judge", "model.keras")
    valid = metrics["valid"]
    assert valid["neg_elbo"] == pytest.approx(valid["reconstruction"] + valid["kl"], rel=1e-4)
    assert valid["bits_per_dim"] > 0


def test_user_conditioned_runs_condition_on_the_recommenders_user_encoder(rec_run, gan_run):
    rec = load_run_model(rec_run[0], Recommender)
    gan = load_run_model(gan_run[0], ConditionalGAN)
    history = np.full((3, rec.max_history), -1, "int32")
    history[0, :3], history[1, :1] = [3, 17, 42], [5]
    encoder = gan.conditioning.preference_model.user_encoder
    np.testing.assert_allclose(
        encoder({"history": history}), rec.build_user_encoder()({"history": history}), atol=1e-5
    )
    assert not encoder.trainable_weights


def test_load_run_model_checks_the_class(rec_run, tmp_path):
    assert isinstance(load_run_model(os.path.join(rec_run[0], "model.keras")), Recommender)
    with pytest.raises(ValueError, match="hold a ConditionalGAN or ConditionalVAE. Received: Rec"):
        load_run_model(rec_run[0], (ConditionalGAN, ConditionalVAE))
    with pytest.raises(FileNotFoundError, match="No trained AttributeJudge at"):
        load_run_model(str(tmp_path), AttributeJudge)


def test_mixed_float16_recommender_scales_its_loss(data_dir):
    """compile() wraps the optimizer in a LossScaleOptimizer; train_step must scale the loss,
    else the unscaled updates are 2**15 times too small."""
    data = mmrec.data.load(data_dir)
    batches = data.interactions("train", batch_size=32, content=["text"], drop_remainder=True)
    batches = batches.take(10).cache()
    batches = batches.apply(tf.data.experimental.assert_cardinality(10))
    updates = {}
    for policy in ("float32", "mixed_float16"):
        keras.utils.set_random_seed(0)
        with precision_policy(policy):
            rec = Recommender.from_dataset(
                data,
                modalities=("text",),
                embedding_dim=8,
                encoder_config={"text": {"hidden_dim": 8, "sequence_length": 16}},
            )
        rec.compile(keras.optimizers.SGD(0.1))
        before = rec.user_hidden.kernel.numpy()
        rec.fit(batches, verbose=0)
        updates[policy] = np.abs(rec.user_hidden.kernel.numpy() - before).mean()
        if policy == "mixed_float16":
            assert isinstance(rec.optimizer, keras.optimizers.LossScaleOptimizer)
    # The dynamic loss scale skips the first steps whose scaled gradients overflow.
    assert 0.3 < updates["mixed_float16"] / updates["float32"] < 1.5


# --- generate and quickstart -------------------------------------------------------------------


def png_shape(path):
    with open(path, "rb") as f:
        return tuple(tf.io.decode_png(f.read()).shape)


def test_generate_writes_a_grid_per_user_or_attribute_set(gan_run, tmp_path):
    out = str(tmp_path / "users.png")
    status, stdout, stderr = run_cli(
        ["generate", "--run", gan_run[0], "--users", "1,2", "--num", "3", "--out", out]
    )
    assert status == 0, stderr
    assert png_shape(out) == (2 * 34 + 2, 3 * 34 + 2, 3)  # 32-px images, 2-px padding
    assert "2 row(s) × 3 images" in stdout
    out = str(tmp_path / "star.png")
    attributes = "shape=star,colour=red,pattern=plain,size=large"
    status, _, stderr = run_cli(
        ["generate", "--run", gan_run[0], "--attributes", attributes, "--num", "2", "--out", out]
    )
    assert status == 0, stderr
    assert png_shape(out) == (36, 70, 3)
    status, _, stderr = run_cli(
        ["generate", "--run", gan_run[0], "--text", "a red star", "--out", out]
    )
    assert status == 2 and "conditioned on user, not text: use --users or --attributes" in stderr
    status, _, stderr = run_cli(["generate", "--run", gan_run[0], "--users", "999", "--out", out])
    assert status == 2 and "Not found: [999]" in stderr


@pytest.mark.slow
def test_quickstart_reuses_finished_runs_then_writes_grids_items_and_exports(
    data_dir, runs_dir, rec_run, judge_run, gan_run, tmp_path
):
    exports = str(tmp_path / "savedmodels")
    status, stdout, stderr = run_cli(
        ["quickstart", "--data", data_dir, "--out", runs_dir, "--export-dir", exports, "--smoke"]
    )
    assert status == 0, stderr
    assert "at most 10 minutes on 2 CPU cores" in stdout
    assert stdout.count("reusing the finished run") == 3  # recommender, judge, cGAN
    summary = read_json(os.path.join(runs_dir, "summary.json"))
    for kind, name in (("recommender", "rec"), ("gan", "cgan"), ("text", "text"), ("item", "item")):
        assert summary["exports"][kind] == os.path.join(exports, f"quickstart_{name}", "1")
        assert os.path.exists(os.path.join(summary["exports"][kind], "saved_model.pb"))
    # The text generator (trained here: smoke settings), conditioned on users too.
    assert read_json(os.path.join(runs_dir, "text", "config.json"))["config"]["condition"] == "user"
    with open(os.path.join(exports, "models.config")) as f:
        names = set(re.findall(r'name: "(\w+)"', f.read()))
    assert {"quickstart_cgan", "quickstart_text", "quickstart_item"} <= names
    # Complete items: the run judges were reused, the consistency report and the gallery.
    item = os.path.join(runs_dir, "item")
    assert sorted(os.listdir(os.path.join(item, "judges"))) == [
        "audio.keras",
        "image.keras",
        "text.keras",
    ]
    assert summary["item"]["num_items"] == 16
    assert summary["gallery"] == os.path.join(item, "gallery", "index.html")
    with open(summary["gallery"]) as f:
        assert f.read().count("<audio") == 8  # 4 users × 2 items
    assert len(summary["sample_grids"]) == 4
    with open(os.path.join(runs_dir, "samples", "descriptions.txt")) as f:
        descriptions = f.read().splitlines()
    for (user, grid), line in zip(summary["sample_grids"].items(), descriptions, strict=True):
        assert png_shape(grid["path"]) == (2 * 34 + 2, 8 * 34 + 2, 3)  # real, cGAN rows
        assert grid["likes"]["colour"] and grid["likes"]["shape"]
        assert grid["description"] and line == f"user {user}: {grid['description']}"
    for words in ("Recommendation (full-catalogue ranking", "personalisation hit-rate", "Next:"):
        assert words in stdout
    assert "Complete items for users" in stdout and "--html gallery/" in stdout

    # The exported generator answers through its serving signature.
    out = str(tmp_path / "exported.png")
    status, _, stderr = run_cli(
        ["generate", "--export", os.path.join(exports, "quickstart_cgan"), "--users", "1,3"]
        + ["--data", data_dir, "--num", "2", "--out", out]
    )
    assert status == 0, stderr
    assert png_shape(out) == (70, 70, 3)


# --- errors, help and configs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (["train", "recommender", "--data", "/nonexistent", "--out", "x"], "No dataset at"),
        (
            ["train", "recommender", "--data", "D", "--out", "x", "--strategy", "multiworker"],
            "--strategy multiworker needs TF_CONFIG",
        ),
        (
            ["train", "recommender", "--data", "D", "--out", "x", "--cpu-devices", "2"],
            "--cpu-devices splits the CPU into devices for --strategy mirrored",
        ),
        (["train", "gan", "--data", "D", "--out", "x"], "give --recommender RUN"),
        (
            ["train", "judge", "--data", "D", "--out", "x", "--recommender", "r"],
            "--recommender is used only by user-conditioned gan/vae/text/audio runs",
        ),
        (["train", "vae", "--data", "D", "--out", "x", "--config", "nope.json"], "No config file"),
        (["generate", "--run", "/nonexistent", "--attributes", "shape=0", "--out", "g.png"], "No"),
    ],
)
def test_wrong_arguments_give_one_clear_line(argv, words, data_dir, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    argv = [data_dir if a == "D" else a for a in argv]
    status, _, stderr = run_cli(argv)
    assert status == 2
    assert stderr.startswith("mmrec: error:") and words in stderr
    assert "Traceback" not in stderr


def test_config_file_errors_name_the_known_keys(data_dir, tmp_path):
    path = str(tmp_path / "bad.json")
    with open(path, "w") as f:
        json.dump({"preset": "tiny", "epochs": 1, "learning_rat": 0.1}, f)
    status, _, stderr = run_cli(
        ["train", "recommender", "--data", data_dir, "--out", str(tmp_path / "r"), "--config", path]
    )
    assert status == 2
    assert "unknown key(s) ['learning_rat'] for a recommender config" in stderr
    assert "'learning_rate'" in stderr and "'embedding_dim'" in stderr  # the known keys
    with open(path, "w") as f:
        json.dump({"epochs": "three"}, f)
    status, _, stderr = run_cli(
        ["train", "judge", "--data", data_dir, "--out", "x", "--config", path]
    )
    assert status == 2 and "expected 'epochs' to be an integer. Received: 'three'" in stderr
    with open(path, "w") as f:
        json.dump({"condition": "text"}, f)
    status, _, stderr = run_cli(
        ["train", "gan", "--data", data_dir, "--out", "x", "--config", path, "--jit"]
    )
    assert status == 2 and "--jit cannot compile a text-conditioned generator" in stderr


def test_unknown_keys_inside_object_settings_are_refused_with_the_valid_ones(data_dir, tmp_path):
    path = str(tmp_path / "typo.json")
    with open(path, "w") as f:
        json.dump({"preset": "tiny", "encoder_config": {"image": {"filtres": [8, 16]}}}, f)
    out = str(tmp_path / "r")
    status, _, stderr = run_cli(
        ["train", "recommender", "--data", data_dir, "--out", out, "--config", path]
    )
    assert status == 2 and "Traceback" not in stderr
    assert (
        f'{path}: unknown key "filtres" in encoder_config.image. '
        "Valid keys: embedding_dim, filters, image_size"
    ) in stderr
    assert not os.path.exists(out)  # refused before anything is written
    words = r'keys "video", "mood" in encoder_config\. Valid keys: audio, image, text'
    with pytest.raises(ValueError, match=words):
        resolve_config("recommender", {"encoder_config": {"video": {}, "mood": {}}})
    with pytest.raises(ValueError, match="expected encoder_config.text to be an object"):
        resolve_config("recommender", {"encoder_config": {"text": 16}})
    # The valid keys are the encoders' constructor arguments: what their configs store.
    keys = get_run_kind("recommender").object_keys["encoder_config"]
    for modality, encoder in ENCODERS.items():
        config = encoder(**({"vocabulary_size": 10} if modality == "text" else {})).get_config()
        assert set(keys[modality]) == set(config) - {"name", "trainable", "dtype"}, modality
    for kind in run_kind_names():  # every preset passes its own checks
        for name in get_run_kind(kind).presets:
            assert resolve_config(kind, name)
    # A kind must describe each object setting's keys (None: not checked).
    judge = get_run_kind("judge")
    settings = {**judge.settings, "extra": dict | None}
    presets = {"base": {**judge.presets["base"], "extra": None}}
    with pytest.raises(ValueError, match=r"object_keys to describe its object \(dict\) settings"):
        dataclasses.replace(judge, name="extra_judge", settings=settings, presets=presets)
    free = dataclasses.replace(
        judge, name="extra_judge", settings=settings, presets=presets, object_keys={"extra": None}
    )
    try:
        register_run_kind(free)
        assert resolve_config("extra_judge", {"extra": {"any": 1}})["extra"] == {"any": 1}
        register_run_kind(
            dataclasses.replace(free, object_keys={"extra": {"a": {"b": None}}}), overwrite=True
        )
        assert resolve_config("extra_judge", {"extra": {"a": {"b": 1}}})["extra"]["a"]["b"] == 1
        with pytest.raises(ValueError, match=r'unknown key "c" in extra\.a\. Valid keys: b'):
            resolve_config("extra_judge", {"extra": {"a": {"c": 1}}})
    finally:
        RUN_KINDS.pop("extra_judge", None)


def test_a_diverging_run_stops_with_a_clear_error(data_dir, tmp_path):
    config = str(tmp_path / "explode.json")
    with open(config, "w") as f:
        json.dump({"preset": "tiny", "epochs": 2, "learning_rate": 1e30}, f)
    out = str(tmp_path / "judge")
    status, _, stderr = run_cli(
        ["train", "judge", "--data", data_dir, "--out", out, "--config", config]
    )
    assert status == 2 and "became NaN or infinite at epoch" in stderr
    assert "Lower the learning rate" in stderr and "Traceback" not in stderr
    assert not os.path.exists(os.path.join(out, "metrics.json"))
    # Epochs that ended with a non-finite metric are not backed up: the backup holds the
    # last epoch whose metrics were all finite (none here: validation diverged at once).
    good = 0
    for row in csv_rows(out):
        if not all(np.isfinite(float(v)) for v in row.values()):
            break
        good += 1
    metadata = os.path.join(out, "backup", "training_metadata.json")
    assert (read_json(metadata)["epoch"] if os.path.exists(metadata) else 0) == good
    # No epoch was backed up, so there is nothing to resume: the corrected command (as
    # the error advises, a lower learning rate) starts the run again instead of being
    # refused as a resumption with other settings.
    assert good == 0 and os.path.exists(os.path.join(out, "config.json"))
    with open(config, "w") as f:
        json.dump({"preset": "tiny", "epochs": 1}, f)
    status, _, stderr = run_cli(
        ["train", "judge", "--data", data_dir, "--out", out, "--config", config]
    )
    assert status == 0, stderr
    assert read_json(os.path.join(out, "config.json"))["config"]["learning_rate"] == 3e-3
    rows = csv_rows(out)  # the diverged attempt's rows are gone
    assert len(rows) == 1 and np.isfinite(float(rows[0]["loss"]))


def test_finished_runs_are_kept_and_changed_settings_do_not_resume(rec_run, data_dir, tmp_path):
    run = rec_run[0]
    status, _, stderr = run_cli(["train", "recommender", "--data", data_dir, "--out", run])
    assert status == 2 and "already holds a finished recommender run" in stderr
    assert "--overwrite" in stderr
    # An unfinished run (config.json and a backed-up epoch, no metrics.json) resumes only
    # with the same settings.
    unfinished = str(tmp_path / "unfinished")
    os.makedirs(os.path.join(unfinished, "backup"))
    with open(os.path.join(rec_run[0], "config.json")) as f:
        config = f.read()
    with open(os.path.join(unfinished, "config.json"), "w") as f:
        f.write(config)
    with open(os.path.join(unfinished, "backup", "training_metadata.json"), "w") as f:
        json.dump({"epoch": 1, "batch": -1}, f)
    argv = ["train", "recommender", "--data", data_dir, "--out", unfinished, "--seed", "7"]
    status, _, stderr = run_cli(argv)
    assert status == 2 and "unfinished run started with other settings" in stderr
    assert "seed: 0 → 7" in stderr


def test_a_run_that_never_completed_an_epoch_is_replaced_not_resumed(tmp_path):
    # What a run that failed before its first epoch leaves: its config, and some of what
    # training writes (a partial backup of another model, logs, an empty CSV).
    folder = str(tmp_path / "failed")
    os.makedirs(os.path.join(folder, "backup"))
    os.makedirs(os.path.join(folder, "logs", "train"))
    record = {k: None for k in runs.RESUME_KEYS} | {"kind": "judge", "seed": 0}
    runs.write_json(os.path.join(folder, "config.json"), {**record, "config": {"epochs": 9}})
    for name in ("backup/model.weights.h5", "training.csv", "notes.txt"):
        with open(os.path.join(folder, name), "w") as f:
            f.write("")
    assert not runs.training_started(folder)
    changed = {**record, "config": {"epochs": 1}, "seed": 3}
    assert runs.prepare_run_dir(folder, changed, overwrite=False) == 0
    assert read_json(os.path.join(folder, "config.json"))["seed"] == 3
    assert sorted(os.listdir(folder)) == ["config.json", "notes.txt"]  # not the user's file
    # Once an epoch is backed up, the run is resumable, so other settings are refused.
    os.makedirs(os.path.join(folder, "backup"))
    runs.write_json(os.path.join(folder, "backup", "training_metadata.json"), {"epoch": 2})
    assert runs.training_started(folder)
    assert runs.prepare_run_dir(folder, changed, overwrite=False) == 2
    with pytest.raises(ValueError, match=r"unfinished run started with other settings \(seed"):
        runs.prepare_run_dir(folder, {**changed, "seed": 4}, overwrite=False)


def test_help_explains_the_new_commands(capsys):
    def help_text(*argv):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--help"])
        assert exit_info.value.code == 0
        return capsys.readouterr().out

    assert "mmrec quickstart" in help_text()
    text = help_text("train")
    for words in ("BackupAndRestore", "Run the same command again", "TF_CONFIG", "global batch"):
        assert words in text
    assert "--users" in help_text("generate") and "--export" in help_text("generate")
    assert "minutes on 2 CPU cores" in help_text("quickstart")


def test_resolve_config_presets_files_and_overrides(tmp_path):
    tiny = resolve_config("gan", "tiny")
    assert set(tiny) == set(known_keys("gan")) and tiny["condition"] == "user"
    assert resolve_config("gan", "tiny", {"epochs": 3, "batch_size": None})["epochs"] == 3
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"preset": "tiny", "learning_rate": 1}))
    config = resolve_config("vae", str(path))
    assert config["learning_rate"] == 1.0 and isinstance(config["learning_rate"], float)
    assert config["latent_dim"] == resolve_config("vae", "tiny")["latent_dim"]
    assert resolve_config("vae", {"latent_dim": 5})["epochs"] == resolve_config("vae")["epochs"]
    with pytest.raises(ValueError, match="expected 'preset' to be one of"):
        resolve_config("vae", {"preset": "huge"})
    with pytest.raises(ValueError, match="expected 'condition' to be one of"):
        resolve_config("vae", {"condition": "mood"})
    with pytest.raises(ValueError, match="expected 'steps_per_epoch' >= 1"):
        resolve_config("gan", {"steps_per_epoch": 0})
    with pytest.raises(ValueError, match="expected 'r1_weight' to be a number or null"):
        resolve_config("gan", {"r1_weight": "high"})
    # null: the model's default (the kind passes the model only what is given).
    assert resolve_config("gan", {"d_learning_rate": None, "r1_weight": 1})["r1_weight"] == 1.0
    assert resolve_config("gan")["d_learning_rate"] is None


# --- run kinds: the registry, model defaults, precision, other datasets --------------------------

# A GAN small enough to build, train a step and be judged in seconds.
SMALL_GAN = {
    "preset": "tiny",
    "epochs": 1,
    "steps_per_epoch": 2,
    "batch_size": 16,
    "latent_dim": 8,
    "generator_filters": [16, 8, 8, 4],
    "discriminator_filters": [4, 8, 8],
}
SMALL_VAE = {
    "preset": "tiny",
    "condition": "attributes",
    "latent_dim": 8,
    "decoder_filters": [16, 8, 8, 4],
    "encoder_filters": [4, 8, 8],
}


@pytest.fixture(scope="module")
def shapes(data_dir):
    return mmrec.data.load(data_dir)


@pytest.fixture(scope="module")
def untrained_judge(shapes):
    return AttributeJudge.from_dataset(shapes, filters=(4, 8, 8), feature_dim=8)


def built(kind, data, config):
    """A kind's model, built and compiled by its hooks as `train` does (no training)."""
    spec = get_run_kind(kind)
    plan = RunPlan.create(spec, resolve_config(kind, config), data)
    model = spec.build(plan, None, "float32")
    spec.compile(model, plan, False)
    return model


def test_none_settings_take_the_models_own_defaults(shapes):
    # The tiny preset sets the quick start's recipe; null, each takes the model's own.
    recipe = dict.fromkeys(("learning_rate", "d_learning_rate", "ac_weight", "adam_beta_2"))
    gan = built("gan", shapes, {**SMALL_GAN, **recipe, "condition": "attributes"})
    reference = ConditionalGAN.from_dataset(shapes, latent_dim=8)
    reference.compile()
    assert float(gan.d_optimizer.learning_rate) == pytest.approx(4e-4)  # not 2e-4 any more
    for name in ("d_optimizer", "g_optimizer"):
        ours, theirs = getattr(gan, name).get_config(), getattr(reference, name).get_config()
        assert {k: v for k, v in ours.items() if k != "name"} == {
            k: v for k, v in theirs.items() if k != "name"
        }
    for name in ("r1_weight", "ac_weight", "gan_loss", "augment"):
        assert getattr(gan, name) == getattr(reference, name), name
    vae = built("vae", shapes, SMALL_VAE)
    assert vae.beta == 1.0 and float(vae.optimizer.learning_rate) == pytest.approx(1e-3)
    rec = built("recommender", shapes, {"preset": "tiny", "learning_rate": None})
    default = Recommender.from_dataset(shapes, modalities=("text",))
    assert (rec.temperature, rec.item_bias_l2) == (default.temperature, default.item_bias_l2)
    assert float(rec.optimizer.learning_rate) == pytest.approx(1e-3)  # Recommender.compile's


def test_given_settings_reach_the_model(shapes):
    gan = built(
        "gan",
        shapes,
        {
            **SMALL_GAN,
            "condition": "attributes",
            "r1_weight": 1.0,
            "d_learning_rate": 1e-4,
            "learning_rate": 5e-5,
            "loss": "hinge",
            "augment": False,
        },
    )
    assert gan.r1_weight == 1.0 and gan.gan_loss == "hinge" and not gan.augment
    assert float(gan.d_optimizer.learning_rate) == pytest.approx(1e-4)
    assert float(gan.g_optimizer.learning_rate) == pytest.approx(5e-5)
    assert gan.ema_decay == 0.99 and gan.latent_dim == 8  # the tiny preset's
    vae = built("vae", shapes, {**SMALL_VAE, "beta": 0.5})
    assert vae.beta == 0.5
    settings = {"preset": "tiny", "item_bias_l2": 0, "unseen_bias_neighbours": 0}
    rec = built("recommender", shapes, settings)
    assert float(rec.optimizer.learning_rate) == pytest.approx(3e-3)  # the preset's
    assert rec.item_bias_l2 == 0.0 and rec.unseen_bias_neighbours == 0


def test_the_recommenders_early_stopping_setting_adds_the_callback(shapes, tmp_path):
    spec = get_run_kind("recommender")

    def callbacks(config):
        plan = RunPlan.create(spec, resolve_config("recommender", config), shapes, run_dir=tmp_path)
        return spec.callbacks(None, plan)

    assert [type(c).__name__ for c in callbacks("tiny")] == ["ModelCheckpoint"]
    stop = callbacks({"preset": "tiny", "early_stopping": 3})[-1]
    assert isinstance(stop, keras.callbacks.EarlyStopping)
    assert (stop.monitor, stop.patience, stop.restore_best_weights) == ("val_loss", 3, True)


def test_a_registered_kind_trains_through_the_same_driver(data_dir, tmp_path):
    judge = get_run_kind("judge")
    small = dataclasses.replace(
        judge,
        name="small_judge",
        presets={"base": {**judge.presets["base"], "epochs": 1, "filters": [4, 8, 8]}},
    )
    register_run_kind(small)
    try:
        assert "small_judge" in run_kind_names() and "small_judge" in configs.KINDS
        assert known_keys("small_judge") == known_keys("judge")
        result = train("small_judge", data_dir, str(tmp_path / "j"), {"feature_dim": 8}, verbose=0)
        assert result.model.filters == (4, 8, 8) and result.model.feature_dim == 8
        metrics = read_json(os.path.join(result.path, "metrics.json"))
        assert metrics["kind"] == "small_judge" and len(csv_rows(result.path)) == 1
        assert set(metrics["held_out_accuracy"]) == {"shape", "colour", "pattern", "size"}
        with pytest.raises(ValueError, match="'small_judge', already registered"):
            register_run_kind(small)
    finally:
        RUN_KINDS.pop("small_judge", None)
    with pytest.raises(ValueError, match="'base' preset to give every setting.*missing"):
        dataclasses.replace(judge, name="broken", presets={"base": {"epochs": 1}})
    with pytest.raises(ValueError, match="Expected kind to be one of"):
        train("broken", data_dir, str(tmp_path / "b"))
    assert isinstance(judge, RunKind)


def test_docstring_examples_run():
    import doctest

    from mmrec.training.kinds import base

    try:
        for module in (configs, base):
            result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
            assert result.attempted and not result.failed, module.__name__
    finally:
        RUN_KINDS.pop("attribute_vae", None)


def test_mixed_bfloat16_run_reloads_with_its_policies(data_dir, untrained_judge, tmp_path):
    config = {**SMALL_GAN, "condition": "attributes"}
    result = train(
        "gan",
        data_dir,
        str(tmp_path / "bf16"),
        config,
        judge=untrained_judge,
        mixed_precision="mixed_bfloat16",
        verbose=0,
    )
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    assert read_json(os.path.join(result.path, "config.json"))["mixed_precision"] == "bfloat16"
    assert np.isfinite(result.metrics["last_epoch"]["d_loss"])
    loaded = load_run_model(result.path, ConditionalGAN)
    for model in (result.model, loaded):
        for network in (model.generator, model.discriminator, model.conditioner):
            assert network.dtype_policy.name == "mixed_bfloat16", network.name
        assert model.generator.get_layer("stem").compute_dtype == "bfloat16"
    condition = dict.fromkeys(loaded.attributes, 0)
    np.testing.assert_allclose(
        loaded.generate(condition, num=2, seed=0), result.model.generate(condition, num=2, seed=0)
    )


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    if not os.path.exists(os.path.join(DEFAULT_DIR, "train-images-idx3-ubyte.gz")):
        pytest.fail("Fashion-MNIST is missing: `apt-get install dataset-fashion-mnist`.")
    path = str(tmp_path_factory.mktemp("fashion") / "ds")
    write_fashion_mnist(path, FashionMnistConfig(num_items=60, num_users=24), progress=False)
    return mmrec.data.load(path)


def test_user_conditioned_gan_on_fashion_mnist_reports_its_attributes(fashion, tmp_path, capsys):
    rec = train(
        "recommender",
        fashion,
        str(tmp_path / "rec"),
        {**SHORT["recommender"], "modalities": ["text"], "id_only_baseline": False},
        verbose=0,
    )
    judge = AttributeJudge.from_dataset(fashion, filters=(4, 8, 8), feature_dim=8)
    gan = train("gan", fashion, str(tmp_path / "gan"), SMALL_GAN, recommender=rec.path, judge=judge)
    generation = gan.metrics["generation"]
    assert gan.metrics["condition"] == "user" and generation["hit_attributes"] == ["category"]
    for key in ("hit_rate", "hit_rate_random_items", "hit_rate_category", "hit_rate_brightness"):
        assert 0.0 <= generation[key] <= 1.0, key
    assert generation["hit_rate"] == generation["hit_rate_category"]  # one strong preference
    assert set(generation["conditional_accuracy"]) == {"category", "brightness"}
    out = capsys.readouterr().out
    assert f"personalisation hit-rate  {generation['hit_rate']:.3f} on category" in out
    assert f"category {generation['hit_rate_category']:.3f}, brightness" in out
