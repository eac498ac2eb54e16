"""The networks run on JAX without TensorFlow: a guard for their ``keras.ops``-only code.

A subprocess with ``KERAS_BACKEND=jax`` (the backend is fixed when Keras is
first imported, so it cannot be switched inside the test process) makes any
import of ``tensorflow``, ``tensorflow_text`` or ``tensorflow_hub`` fail, then
for each entry of `NETWORKS`: builds the network, rebuilds it with
``from_config(get_config())``, runs a forward pass on small random inputs and
checks the output shapes, that floating outputs are float32 and finite, and
that the rebuilt network with copied weights gives the same outputs.

`MultimodalItemEncoder` gets token ids for its text: tokenising ``tf.string``
needs tensorflow-text, so under another backend the tokenizer runs in the
``tf.data`` pipeline (images and audio are preprocessed with ``keras.ops``
inside the encoders, so they get raw pixels and waveforms).

Run this file as a script to get the same report on the console::

    KERAS_BACKEND=jax python tests/test_backends.py
"""

from __future__ import annotations

import importlib
import importlib.abc
import json
import os
import subprocess
import sys
import traceback
from typing import Any, NamedTuple

import numpy as np
import pytest

BLOCKED = ("tensorflow", "tensorflow_text", "tensorflow_hub")
BACKEND = "jax"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = "RESULT "  # prefix of the subprocess's report lines


class Case(NamedTuple):
    """What a builder returns: a network and what to call it with."""

    network: Any  # the layer or model, built by its constructor
    inputs: Any  # the first call argument: an array or a dict of arrays
    output_shape: Any  # a tuple, or a dict of tuples for dict outputs
    call_kwargs: dict = {}  # further call arguments (masks, item ids)


RNG = np.random.default_rng(0)
BATCH = 2


def _images(size=16):
    return RNG.integers(0, 256, (BATCH, size, size, 3)).astype("uint8")


def _token_ids(length=6, vocabulary_size=20):
    ids = RNG.integers(1, vocabulary_size, (BATCH, length)).astype("int32")
    ids[0, length // 2 :] = 0  # padding
    return ids


def _waveforms(samples=800):
    return RNG.uniform(-1, 1, (BATCH, samples)).astype("float32")


def _embeddings():
    return {
        m: RNG.normal(size=(BATCH, d)).astype("float32") for m, d in [("image", 6), ("text", 5)]
    }


# --- builders: one per network; each gets the imported module --------------------------


def image_encoder(m):
    return Case(m.ImageEncoder(embedding_dim=8, filters=[4, 8], image_size=8), _images(), (2, 8))


def text_encoder(m):
    kwargs = {"vocabulary_size": 20, "embedding_dim": 8, "sequence_length": 6, "hidden_dim": 8}
    return Case(m.TextEncoder(**kwargs), _token_ids(), (2, 8))


def text_encoder_lstm(m):
    kwargs = {"vocabulary_size": 20, "embedding_dim": 8, "sequence_length": 6, "hidden_dim": 8}
    return Case(m.TextEncoder(kind="lstm", **kwargs), _token_ids(), (2, 8))


def audio_encoder(m):
    return Case(m.AudioEncoder(embedding_dim=8, filters=[4], num_mel_bins=8), _waveforms(), (2, 8))


def audio_preprocessor(m):
    return Case(m.AudioPreprocessor(num_mel_bins=8), _waveforms(), (2, 5, 8))


def _fusion(name):
    def build(m):
        layer = getattr(m, name)(["image", "text"], output_dim=4)
        mask = {"text": np.array([1.0, 0.0], "float32")}
        return Case(layer, _embeddings(), (2, 4), {"mask": mask})

    build.__name__ = name
    return build


def item_encoder(m):
    encoder = m.MultimodalItemEncoder(
        fusion="attention",
        embedding_dim=8,
        encoder_config={
            "image": {"filters": [4], "image_size": 8},
            "text": {"vocabulary_size": 20, "hidden_dim": 8, "sequence_length": 6},
            "audio": {"filters": [4], "num_mel_bins": 8},
        },
        use_modality_mask=True,
    )
    items = {
        "image": _images(),
        "text": _token_ids(),
        "audio": _waveforms(),
        "image_mask": np.ones(BATCH, "float32"),
        "text_mask": np.array([1.0, 0.0], "float32"),
        "audio_mask": np.array([0.0, 1.0], "float32"),
    }
    return Case(encoder, items, (2, 8))


def user_encoder(m):
    history = RNG.normal(size=(BATCH, 5, 8)).astype("float32")
    item_ids = np.array([[3, 1, 4, -1, -1], [-1] * 5], "int32")
    return Case(
        m.UserEncoder(pooling="transformer", max_length=5), history, (2, 8), {"item_ids": item_ids}
    )


def generator(m):
    network = m.Generator(image_size=16, condition_dim=6, latent_dim=4, filters=(8, 4, 4))
    inputs = {
        "noise": RNG.normal(size=(BATCH, 4)).astype("float32"),
        "condition": RNG.normal(size=(BATCH, 6)).astype("float32"),
    }
    return Case(network, inputs, (2, 16, 16, 3))


def discriminator(m):
    network = m.Discriminator(16, {"shape": 3, "colour": 4}, filters=(4, 8), feature_dim=8)
    inputs = {
        "image": RNG.uniform(-1, 1, (BATCH, 16, 16, 3)).astype("float32"),
        "label_shape": np.array([0, 2], "int32"),
        "label_colour": np.array([3, 1], "int32"),
    }
    return Case(network, inputs, {"logit": (2, 1), "shape": (2, 3), "colour": (2, 4)})


def vae_encoder(m):
    network = m.VAEEncoder(16, condition_dim=6, latent_dim=4, filters=(4, 8))
    inputs = {
        "image": RNG.uniform(-1, 1, (BATCH, 16, 16, 3)).astype("float32"),
        "condition": RNG.normal(size=(BATCH, 6)).astype("float32"),
    }
    return Case(network, inputs, ((2, 4), (2, 4)))


def spectrogram_generator(m):
    network = m.SpectrogramGenerator(12, 9, condition_dim=6, latent_dim=4, filters=(8, 4, 4))
    inputs = {
        "noise": RNG.normal(size=(BATCH, 4)).astype("float32"),
        "condition": RNG.normal(size=(BATCH, 6)).astype("float32"),
    }
    return Case(network, inputs, (2, 12, 9))


def spectrogram_encoder(m):
    network = m.SpectrogramEncoder(16, 9, condition_dim=6, latent_dim=4, filters=(4, 8))
    inputs = {
        "spectrogram": RNG.uniform(-1, 1, (BATCH, 16, 9)).astype("float32"),
        "condition": RNG.normal(size=(BATCH, 6)).astype("float32"),
    }
    return Case(network, inputs, ((2, 4), (2, 4)))


def attribute_conditioner(m):
    network = m.AttributeConditioner({"shape": ["circle", "star"], "size": 3}, embedding_dim=4)
    inputs = {"label_shape": np.array([1, 0], "int32"), "label_size": np.array([2, 0], "int32")}
    return Case(network, inputs, (2, 8))


def _user_encoder():
    """A user encoder as `Recommender.build_user_encoder` makes one: table lookup → pooling."""
    import keras

    from mmrec.layers.user import ItemEmbeddingTable, UserEncoder

    table = ItemEmbeddingTable(10, 8, name="item_embeddings")
    table.embeddings.assign(RNG.normal(size=(10, 8)).astype("float32"))
    history = keras.Input(shape=(None,), dtype="int32", name="history")
    user = UserEncoder(name="users")(table(history), item_ids=history)
    return keras.Model({"history": history}, user, name="user_encoder")


def preference_model(m):
    network = m.AttributePreferenceModel(_user_encoder(), {"shape": 3, "colour": 4}, hidden_dim=8)
    inputs = {"history": np.array([[3, 1, 4, -1], [2, -1, -1, -1]], "int32")}
    return Case(network, inputs, {"shape": (2, 3), "colour": (2, 4)})


def text_decoder(m):
    network = m.TextDecoder(20, condition_dim=6, sequence_length=8, hidden_dim=8, num_heads=2)
    inputs = {"token_ids": _token_ids(), "condition": RNG.normal(size=(BATCH, 6)).astype("float32")}
    return Case(network, inputs, (2, 6, 20))


def explanation_conditioner(m):
    labels = np.array([[0, 1], [1, 2], [2, 0], [1, 1]])
    network = m.ExplanationConditioner(labels, {"shape": 3, "colour": 3}, embedding_dim=4)
    inputs = {"history": np.array([[3, 1, -1], [2, -1, -1]], "int32"), "item_id": np.array([0, 3])}
    return Case(network, inputs, (2, 4))


# (module, builder). Add a network with one entry; the builder gets the imported module.
NETWORKS = [
    ("mmrec.layers.encoders", image_encoder),
    ("mmrec.layers.encoders", text_encoder),
    ("mmrec.layers.encoders", text_encoder_lstm),
    ("mmrec.layers.encoders", audio_encoder),
    ("mmrec.layers.image_audio_preprocessing", audio_preprocessor),
    ("mmrec.layers.fusion", _fusion("ConcatFusion")),
    ("mmrec.layers.fusion", _fusion("WeightedFusion")),
    ("mmrec.layers.fusion", _fusion("GatedFusion")),
    ("mmrec.layers.fusion", _fusion("AttentionFusion")),
    ("mmrec.layers.item_encoder", item_encoder),
    ("mmrec.layers", user_encoder),  # through the lazy package, as users import it
    # --- the generative models' networks and conditioners (mmrec.models) ------------------
    ("mmrec.models.image_networks", generator),
    ("mmrec.models.image_networks", discriminator),
    ("mmrec.models.image_networks", vae_encoder),
    ("mmrec.models.audio_networks", spectrogram_generator),
    ("mmrec.models.audio_networks", spectrogram_encoder),
    ("mmrec.models.conditioning.attributes", attribute_conditioner),
    ("mmrec.models.conditioning.user", preference_model),
    ("mmrec.models.conditioning.explanation", explanation_conditioner),
    ("mmrec.models.text_networks", text_decoder),
]


def _name(entry):
    return entry[1].__name__


# --- the subprocess -----------------------------------------------------------------------


class _BlockTensorFlow(importlib.abc.MetaPathFinder):
    """Makes ``import tensorflow`` (and tf-text, tf-hub) fail, as if not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by test_backends)")
        return None


def _check(module_name, builder):
    import keras
    from keras import tree

    case = builder(importlib.import_module(module_name))
    network = case.network
    outputs = network(case.inputs, **case.call_kwargs)
    rebuilt = type(network).from_config(network.get_config())
    if not rebuilt.built:  # functional networks are built by their constructor
        rebuilt(case.inputs, **case.call_kwargs)
    rebuilt.set_weights(network.get_weights())
    rebuilt_outputs = rebuilt(case.inputs, **case.call_kwargs)

    shapes = tree.map_structure(lambda x: tuple(x.shape), outputs)
    assert shapes == case.output_shape, f"output shapes {shapes} != {case.output_shape}"
    for output, again in zip(tree.flatten(outputs), tree.flatten(rebuilt_outputs), strict=True):
        output, again = keras.ops.convert_to_numpy(output), keras.ops.convert_to_numpy(again)
        if np.issubdtype(output.dtype, np.floating):
            assert output.dtype == np.float32, f"a {output.dtype} output"
            assert np.isfinite(output).all(), "a non-finite output"
        np.testing.assert_allclose(again, output, atol=1e-5, err_msg="from_config outputs differ")
    return shapes


def _check_string_text_is_refused():
    from mmrec.layers import MultimodalItemEncoder

    vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "star"]
    try:
        MultimodalItemEncoder(("text",), vocabulary=vocabulary)
    except ValueError as error:
        assert "Expected token-id text" in str(error), error
        return "ValueError"
    raise AssertionError("a vocabulary was accepted without TensorFlow")


def main():
    """Runs every check, prints one ``RESULT {json}`` line each; exit status 1 if any failed."""
    sys.meta_path.insert(0, _BlockTensorFlow())
    import keras

    checks = [(_name(entry), lambda entry=entry: _check(*entry)) for entry in NETWORKS]
    checks.append(("string_text_is_refused", _check_string_text_is_refused))
    failed = 0
    for name, check in checks:
        keras.utils.set_random_seed(0)
        try:
            result = {"name": name, "ok": True, "detail": repr(check())}
        except Exception:  # report every network, not just the first failure
            result = {"name": name, "ok": False, "detail": traceback.format_exc()}
            failed += 1
        print(RESULT + json.dumps(result), flush=True)
    imported = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    ok = keras.backend.backend() == BACKEND and not imported
    print(RESULT + json.dumps({"name": "backend", "ok": ok, "detail": repr(imported)}))
    return 1 if failed or not ok else 0


# --- the tests ----------------------------------------------------------------------------


# One JAX subprocess serves the slow tests below (about 30 s on 2 CPU cores).
@pytest.fixture(scope="module")
def jax_results():
    env = dict(os.environ, KERAS_BACKEND=BACKEND, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, os.path.abspath(__file__)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    results = {}
    for line in run.stdout.splitlines():
        if line.startswith(RESULT):
            result = json.loads(line[len(RESULT) :])
            results[result["name"]] = result
    if "backend" not in results:
        pytest.fail(f"the {BACKEND} subprocess crashed (exit {run.returncode}):\n{run.stderr}")
    return results


@pytest.mark.slow
def test_subprocess_ran_on_jax_without_tensorflow(jax_results):
    result = jax_results["backend"]
    assert result["ok"], f"blocked modules imported or wrong backend: {result['detail']}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [_name(entry) for entry in NETWORKS])
def test_network_runs_on_jax_without_tensorflow(jax_results, name):
    result = jax_results[name]
    assert result["ok"], result["detail"]


@pytest.mark.slow
def test_string_text_asks_for_token_ids_on_jax(jax_results):
    result = jax_results["string_text_is_refused"]
    assert result["ok"], result["detail"]


def test_layers_package_resolves_every_name_lazily():
    import mmrec.layers

    for name in mmrec.layers.__all__:
        assert getattr(mmrec.layers, name) is not None
    assert set(mmrec.layers.__all__) <= set(dir(mmrec.layers))
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        mmrec.layers.Nothing  # noqa: B018


if __name__ == "__main__":
    sys.exit(main())
