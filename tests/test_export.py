"""SavedModel export for TF Serving: layout, signatures, outputs, versions, atomicity, checks."""

import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

import mmrec
from mmrec.cli import main
from mmrec.export import (
    ExportError,
    export_saved_model,
    read_models_config,
    seeded_noise,
    versions,
)
from mmrec.export.warmup import CHECK_PAUSE_ENV
from mmrec.layers import UserEncoder
from mmrec.models import ConditionalGAN, ConditionalVAE
from mmrec.models.recommender import Recommender

TINY_ENCODERS = {
    "image": {"filters": [4, 8]},
    "text": {"hidden_dim": 8, "sequence_length": 16},
}
TINY_GAN = {"latent_dim": 8, "generator_filters": (16, 8, 8, 4), "discriminator_filters": (4, 8, 8)}
WARMUP = os.path.join("assets.extra", "tf_serving_warmup_requests")


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


def tiny_recommender(data, **kwargs):
    return Recommender.from_dataset(
        data,
        modalities=("image", "text"),
        embedding_dim=8,
        encoder_config=TINY_ENCODERS,
        **kwargs,
    )


@pytest.fixture(scope="module")
def rec(data):
    return tiny_recommender(data)


@pytest.fixture(scope="module")
def rec_export(rec, tmp_path_factory):
    """The recommender exported (and validated) once: ``(base folder, version folder)``."""
    base = tmp_path_factory.mktemp("savedmodels")
    return base, export_saved_model(rec, base, name="rec")


def tiny_user_encoder(num_items, dim=8):
    history = keras.Input(shape=(None,), dtype="int32", name="history")
    items = keras.layers.Embedding(num_items, dim)(keras.ops.maximum(history, 0))
    user = UserEncoder(name="pool")(items, item_ids=history)
    return keras.Model({"history": history}, user, name="user_encoder")


def padded(histories, length):
    out = np.full((len(histories), length), -1, dtype="int32")
    for i, row in enumerate(histories):
        out[i, : len(row)] = row[-length:]
    return out


def read_warmup(path):
    return [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(os.path.join(path, WARMUP))
    ]


# --- the recommender ------------------------------------------------------------------------


def test_recommender_export_layout_and_signatures(rec, rec_export):
    base, path = rec_export
    assert path == os.path.join(base, "rec", "1")
    assert sorted(os.listdir(base / "rec")) == ["1"]  # no temporary folder left
    for part in ("saved_model.pb", "variables/variables.index", "assets/vocab.txt", WARMUP):
        assert os.path.exists(os.path.join(path, part)), part
    with open(os.path.join(path, "assets", "vocab.txt")) as f:
        assert f.read().split("\n")[:-1] == rec.tokenizer.get_vocabulary()

    logs = read_warmup(path)
    assert 0 < len(logs) <= 1000
    requests = [log.predict_log.request for log in logs]
    assert [r.model_spec.signature_name for r in requests] == [
        "recommend",
        "embed_user",
        "embed_item",
    ]
    assert {r.model_spec.name for r in requests} == {"rec"}
    assert set(requests[2].inputs) == {"image", "text"}

    config = read_models_config(base / "models.config")
    entries = [(c.name, c.base_path, c.model_platform) for c in config.model_config_list.config]
    assert entries == [("rec", "/models/rec", "tensorflow")]

    signatures = tf.saved_model.load(path).signatures
    assert set(signatures) == {"recommend", "embed_user", "embed_item", "serving_default"}
    recommend = signatures["recommend"]
    assert set(recommend.structured_input_signature[1]) == {"history"}
    assert signatures["serving_default"].structured_outputs.keys() == {"item_ids", "scores"}
    outputs = recommend.structured_outputs
    assert outputs["item_ids"].dtype == tf.int32 and outputs["scores"].dtype == tf.float32
    item_inputs = signatures["embed_item"].structured_input_signature[1]
    assert item_inputs["text"].dtype == tf.string and item_inputs["image"].dtype == tf.uint8


def test_exported_signatures_equal_the_in_memory_model(rec, data, rec_export):
    signatures = tf.saved_model.load(rec_export[1]).signatures
    long_history = list(range(rec.max_history + 5))  # longer than the model keeps
    histories = [[3, 17, 42], [5], [], long_history]
    matrix = padded(histories[:3], 4)
    ids, scores = rec.recommend(histories[:3], k=10)
    out = signatures["recommend"](history=tf.constant(matrix))
    np.testing.assert_array_equal(out["item_ids"], ids)
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-5, atol=1e-6)
    assert not {3, 17, 42} & set(out["item_ids"].numpy()[0].tolist())

    long_ids, _ = rec.recommend([long_history], k=10)
    out = signatures["recommend"](history=tf.constant([long_history], tf.int32))
    np.testing.assert_array_equal(out["item_ids"], long_ids)

    users = rec.user_embeddings(padded(histories[:3], rec.max_history), rec.item_embeddings())
    out = signatures["embed_user"](history=tf.constant(matrix))
    np.testing.assert_allclose(out["user_embedding"], users, rtol=1e-5, atol=1e-6)

    features = data.catalogue().features()
    out = signatures["embed_item"](image=features["image"][:4], text=features["text"][:4])
    expected = keras.ops.convert_to_numpy(rec.item_embeddings())[:4]
    np.testing.assert_allclose(out["item_embedding"], expected, rtol=1e-5, atol=1e-6)

    with pytest.raises(tf.errors.InvalidArgumentError, match=r"item ids in \[0, 60\)"):
        signatures["recommend"](history=tf.constant([[3, 600]], tf.int32))


def test_item_keys_are_exported_with_the_recommendations_and_looked_up(data, tmp_path):
    keys = [f"sku-{7 * i:04d}" for i in range(data.info.num_items)]
    rec = tiny_recommender(data, item_keys=keys)
    path = export_saved_model(rec, tmp_path, name="rec")  # validated: the keys compared too
    requests = [log.predict_log.request for log in read_warmup(path)]
    assert [r.model_spec.signature_name for r in requests][-1] == "lookup_item_ids"

    signatures = tf.saved_model.load(path).signatures
    recommend = signatures["recommend"]
    assert recommend.structured_outputs["item_keys"].dtype == tf.string
    histories = [[3, 17, 42], [5]]
    ids, scores, expected = rec.recommend(histories, k=10, return_keys=True)
    out = recommend(history=tf.constant(padded(histories, 4)))
    np.testing.assert_array_equal(out["item_ids"], ids)
    np.testing.assert_allclose(out["scores"], scores, rtol=1e-5, atol=1e-6)
    returned = [[key.decode() for key in row] for row in out["item_keys"].numpy()]
    assert returned == expected.tolist() == [[keys[i] for i in row] for row in ids]

    lookup = signatures["lookup_item_ids"]
    spec = lookup.structured_input_signature[1]["item_keys"]
    assert spec.dtype == tf.string and spec.shape.as_list() == [None, None]
    out = lookup(item_keys=tf.constant([["sku-0021", "sku-0000", ""], ["sku-0413", "", ""]]))
    np.testing.assert_array_equal(out["item_ids"], [[3, 0, -1], [59, -1, -1]])
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown item keys: sku-9999, 21"):
        lookup(item_keys=tf.constant([["sku-0021", "sku-9999", "21"]]))


def test_versions_auto_increment_and_models_config_lists_every_model(rec, data, tmp_path):
    fast = {"warmup": False, "validate": False}
    assert export_saved_model(rec, tmp_path, name="rec", **fast).endswith(os.sep + "1")
    assert export_saved_model(rec, tmp_path, name="rec", **fast).endswith(os.sep + "2")
    with pytest.raises(FileExistsError, match="Version 2 of 'rec' already exists"):
        export_saved_model(rec, tmp_path, name="rec", version=2, **fast)
    export_saved_model(rec, tmp_path, name="rec", version=7, **fast)
    assert export_saved_model(rec, tmp_path, name="rec", **fast).endswith(os.sep + "8")
    assert versions(tmp_path / "rec") == [1, 2, 7, 8]
    gan = ConditionalGAN.from_dataset(data, condition="attributes", seed=0, **TINY_GAN)
    export_saved_model(gan, tmp_path, name="generator", **fast)
    config = read_models_config(tmp_path / "models.config")
    assert [c.name for c in config.model_config_list.config] == ["rec", "generator"]


def test_a_relative_base_dir_exports_and_validates(rec, tmp_path, monkeypatch):
    # `mmrec quickstart` exports to "savedmodels" relative to the working directory;
    # the validation process runs elsewhere and must still find the model.
    monkeypatch.chdir(tmp_path)
    path = export_saved_model(rec, "savedmodels", name="rec")
    assert path == os.path.join("savedmodels", "rec", "1")
    assert os.path.exists(os.path.join(tmp_path, path, "saved_model.pb"))
    assert os.path.exists(
        os.path.join(tmp_path, path, "assets.extra", "tf_serving_warmup_requests")
    )


def test_stale_temporary_folders_are_removed_and_live_ones_kept(rec, tmp_path):
    dead = tmp_path / "rec" / ".tmp-999999999-abc"  # no such process
    live = tmp_path / "rec" / f".tmp-{os.getpid()}-def"
    dead.mkdir(parents=True)
    live.mkdir()
    export_saved_model(rec, tmp_path, name="rec", warmup=False, validate=False)
    assert not dead.exists() and live.exists()
    assert versions(tmp_path / "rec") == [1]


def test_mixed_precision_model_exports_float32_outputs(data, tmp_path):
    keras.config.set_dtype_policy("mixed_float16")
    rec = tiny_recommender(data)
    keras.config.set_dtype_policy("float32")
    path = export_saved_model(rec, tmp_path, validate=False)
    signatures = tf.saved_model.load(path).signatures
    out = signatures["recommend"](history=tf.constant([[3, 17, 42]], tf.int32))
    assert out["scores"].dtype == tf.float32
    user = signatures["embed_user"](history=tf.constant([[3, 17, 42]], tf.int32))
    assert user["user_embedding"].dtype == tf.float32
    ids, scores = rec.recommend([[3, 17, 42]], k=10)
    np.testing.assert_allclose(out["scores"], scores, atol=2e-3)


# --- generators -----------------------------------------------------------------------------


def test_text_generator_returns_seeded_images_and_png_bytes(data, tmp_path):
    gan = ConditionalGAN.from_dataset(data, condition="text", seed=0, **TINY_GAN)
    path = export_saved_model(gan, tmp_path, name="generator")
    requests = [log.predict_log.request for log in read_warmup(path)]
    assert [r.model_spec.signature_name for r in requests] == ["generate_image"]
    signature = tf.saved_model.load(path).signatures["serving_default"]
    assert set(signature.structured_input_signature[1]) == {"text", "seed"}
    texts = tf.constant(["a large red star", "blue ring on dots", "a large red star"])
    seeds = tf.constant([0, 1, 0], tf.int64)
    out = signature(text=texts, seed=seeds)
    images = out["images"].numpy()
    assert images.dtype == np.float32 and images.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(images[0], images[2])  # same text and seed, same image
    assert not np.allclose(images[0], images[1])
    expected = gan.decode(seeded_noise(seeds, gan.latent_dim), texts)
    np.testing.assert_allclose(images, expected, atol=1e-5)
    pixels = np.stack([tf.io.decode_png(p).numpy() for p in out["images_png_bytes"].numpy()])
    np.testing.assert_array_equal(pixels, np.round((images.clip(-1, 1) + 1) * 127.5))


def test_user_generator_samples_the_users_attributes_in_the_graph(data, tmp_path):
    encoder = tiny_user_encoder(data.metadata.num_items)
    gan = ConditionalGAN.from_dataset(
        data, condition="user", user_encoder=encoder, seed=0, **TINY_GAN
    )
    signature = tf.saved_model.load(export_saved_model(gan, tmp_path)).signatures["generate_image"]
    history = tf.constant([[3, 17, 42], [3, 17, 42], [5, -1, -1]], tf.int32)
    seeds = tf.constant([4, 4, 5], tf.int64)
    out = signature(history=history, seed=seeds)
    labels = {name: out[f"label_{name}"] for name in gan.attributes}
    for name, classes in {"shape": 8, "colour": 8, "pattern": 4, "size": 3}.items():
        assert labels[name].dtype == tf.int32
        assert 0 <= labels[name].numpy().min() and labels[name].numpy().max() < classes
        assert labels[name].numpy()[0] == labels[name].numpy()[1]  # same user, same seed
    condition = {f"label_{name}": value for name, value in labels.items()}
    expected = gan.decode(seeded_noise(seeds, gan.latent_dim), condition)
    np.testing.assert_allclose(out["images"], expected, atol=1e-5)


def test_attribute_vae_checks_label_ranges(data, tmp_path):
    vae = ConditionalVAE.from_dataset(
        data, condition="attributes", latent_dim=8, decoder_filters=(16, 8, 8, 4)
    )
    path = export_saved_model(vae, tmp_path, name="vae", validate=False)
    signature = tf.saved_model.load(path).signatures["generate_image"]
    inputs = {f"label_{n}": tf.constant([1, 2]) for n in ("shape", "colour", "pattern", "size")}
    out = signature(seed=tf.constant([0, 1], tf.int64), **inputs)
    assert out["images"].shape == (2, 32, 32, 3) and out["images_png_bytes"].shape == (2,)
    inputs["label_size"] = tf.constant([1, 3])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"label_size in \[0, 3\)"):
        signature(seed=tf.constant([0, 1], tf.int64), **inputs)


# --- what TF Serving could not run, and bad arguments ---------------------------------------


def test_python_op_fails_the_export_naming_the_op_and_leaves_no_version(tmp_path):
    x = keras.Input(shape=(3,), name="x")
    doubled = keras.layers.Lambda(
        lambda t: tf.numpy_function(lambda a: a * 2, [t], tf.float32), output_shape=(3,)
    )(x)
    model = keras.Model(x, doubled, name="python_op")
    with pytest.raises(ExportError, match=r"op 'PyFunc' \(from tf.numpy_function"):
        export_saved_model(model, tmp_path)
    assert os.listdir(tmp_path / "python_op") == []  # no version, no temporary folder
    assert not (tmp_path / "models.config").exists()


def test_functional_model_exports_a_serve_signature(tmp_path):
    x = keras.Input(shape=(3,), name="x")
    model = keras.Model(x, {"y": keras.layers.Dense(2, name="dense")(x)}, name="plain")
    path = export_saved_model(model, tmp_path, validate=False)
    signature = tf.saved_model.load(path).signatures["serve"]
    values = np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_allclose(signature(x=values)["y"], model(values)["y"], rtol=1e-6)


def test_export_errors_say_what_was_expected(rec, tmp_path):
    with pytest.raises(ValueError, match="Expected a model name"):
        export_saved_model(rec, tmp_path, name="../escape")
    with pytest.raises(ValueError, match="Expected version to be a positive int"):
        export_saved_model(rec, tmp_path, version=0)
    with pytest.raises(ValueError, match="Expected k to be a positive int"):
        export_saved_model(rec, tmp_path, k=0)

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="Received: Subclassed"):
        export_saved_model(Subclassed(), tmp_path)
    assert main(["export", "--model", str(tmp_path / "missing.keras")]) == 2


def test_mmrec_export_command_writes_a_version(rec, tmp_path, capsys):
    saved = tmp_path / "rec.keras"
    rec.save(saved)
    args = ["export", "--model", str(saved), "--base-dir", str(tmp_path / "out"), "--name", "rec"]
    assert main([*args, "--k", "5", "--no-validate"]) == 0
    assert f"exported {tmp_path / 'out' / 'rec' / '1'}" in capsys.readouterr().out
    signature = tf.saved_model.load(str(tmp_path / "out" / "rec" / "1")).signatures["recommend"]
    ids = signature(history=tf.constant([[3, 17, 42]], tf.int32))["item_ids"]
    np.testing.assert_array_equal(ids, rec.recommend([[3, 17, 42]], k=5)[0])


# --- the fresh-process check ends with the export -------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An export stopped in its fresh-process check (which pauses there: CHECK_PAUSE_ENV).
CHECKING = "import sys; from mmrec.export import warmup; warmup.validate_saved_model(*sys.argv[1:])"


def _stat(pid):
    """(state, parent pid) of a process from /proc, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def _check_process(parent, timeout=180):
    """The pid of ``parent``'s child running replay_warmup.py, once it has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert parent.poll() is None, "the export ended before its check process was seen"
        for entry in filter(str.isdigit, os.listdir("/proc")):
            stat = _stat(entry)
            if stat and stat[1] == parent.pid:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"replay_warmup.py" in f.read():
                        return int(entry)
        time.sleep(0.2)
    raise AssertionError("no check process started")


def _ended(pid, timeout=30):
    """Whether process ``pid`` is gone (or a zombie: it has exited) within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        stat = _stat(pid)
        if stat is None or stat[0] == "Z":
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the processes in /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_killed_export_ends_its_check_process(signum, tmp_path):
    env = {
        **os.environ,
        CHECK_PAUSE_ENV: "600",
        "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    paths = [str(tmp_path / name) for name in ("model", "requests.tfrecord", "expected.npz")]
    export = subprocess.Popen(
        [sys.executable, "-c", CHECKING, *paths],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    check = None
    try:
        check = _check_process(export)
        os.kill(export.pid, signum)
        assert export.wait(timeout=60) != 0
        # SIGINT: the export kills it; SIGTERM, SIGKILL: it sees its pipe to the export close.
        assert _ended(check), f"the check process outlived the export killed by {signum!r}"
    finally:
        if export.poll() is None:
            export.kill()
        if check is not None and not _ended(check, timeout=0):
            os.kill(check, signal.SIGKILL)  # a leaked check process would sleep for minutes
