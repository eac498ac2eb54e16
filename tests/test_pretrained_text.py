"""PretrainedTextDecoder on tiny local keras-hub presets (mmrec.testing): the decoder
contract (shape, dtype, causal, conditioned), what trains (frozen, LoRA, full), saving
(self-contained .keras files) and the errors; the tiny presets and their tokenizers."""

import doctest
import os
import re
import shutil

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from mmrec import testing
from mmrec.data.synthetic import ShapesConfig, describe, sample_items
from mmrec.models import pretrained_text
from mmrec.models.pretrained_text import PretrainedTextDecoder

CONDITION_DIM = 8
PREFIX_LENGTH = 4
HIDDEN_DIM = 16  # the tiny presets'


@pytest.fixture(scope="module")
def gpt2_preset(tmp_path_factory):
    return testing.save_tiny_gpt2_preset(str(tmp_path_factory.mktemp("presets") / "tiny_gpt2"))


@pytest.fixture(scope="module")
def gemma_preset(tmp_path_factory):
    pytest.importorskip("sentencepiece")
    return testing.save_tiny_gemma_preset(str(tmp_path_factory.mktemp("presets") / "tiny_gemma"))


@pytest.fixture(params=["gpt2", "gemma"])
def preset(request):
    return request.getfixturevalue(f"{request.param}_preset")


def descriptions(n=4, seed=0):
    items = sample_items(ShapesConfig(num_items=50), np.random.default_rng(seed))
    return [describe(items, i) for i in range(n)]


def inputs(decoder, batch_size=2, length=10, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(1, decoder.vocabulary_size, (batch_size, length)).astype("int32"),
        "condition": rng.normal(size=(batch_size, CONDITION_DIM)).astype("float32"),
    }


def decoder_for(preset, **kwargs):
    return PretrainedTextDecoder(
        preset, condition_dim=CONDITION_DIM, prefix_length=PREFIX_LENGTH, **kwargs
    )


def numpy_weights(weights):
    return [keras.ops.convert_to_numpy(w).copy() for w in weights]


# === The tiny presets ============================================================================


def test_tiny_gpt2_preset_loads_from_its_directory(gpt2_preset):
    assert os.path.exists(os.path.join(gpt2_preset, "config.json"))
    backbone = keras_hub.models.Backbone.from_preset(gpt2_preset)
    assert isinstance(backbone, keras_hub.models.GPT2Backbone)
    assert (backbone.num_layers, backbone.hidden_dim, backbone.max_sequence_length) == (2, 16, 64)
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(gpt2_preset)
    assert isinstance(tokenizer, keras_hub.models.GPT2Tokenizer)
    assert tokenizer.vocabulary_size() == backbone.vocabulary_size
    # The end token is id 0: start, end and pad are the same token.
    assert tokenizer.start_token_id == tokenizer.end_token_id == tokenizer.pad_token_id == 0
    causal_lm = keras_hub.models.CausalLM.from_preset(gpt2_preset)
    assert isinstance(causal_lm, keras_hub.models.GPT2CausalLM)


def test_tiny_gpt2_preset_weights_follow_the_seed(tmp_path, gpt2_preset):
    again = testing.save_tiny_gpt2_preset(str(tmp_path / "again"), seed=0)
    other = testing.save_tiny_gpt2_preset(str(tmp_path / "other"), seed=1)
    weights = [
        keras_hub.models.Backbone.from_preset(p).get_weights() for p in (gpt2_preset, again, other)
    ]
    for a, b in zip(weights[0], weights[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(weights[0][0], weights[2][0])


@pytest.mark.slow  # tracing keras-hub's BPE tokenizer alone takes seconds
def test_tiny_gpt2_tokenizer_has_one_token_per_word_and_round_trips_in_a_tf_function(
    gpt2_preset,
):
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(gpt2_preset)
    texts = [*descriptions(), "Any text: Ünïcode ✓, digits 42 and\nnewlines"]

    @tf.function
    def round_trip(strings):
        ids = tokenizer.tokenize(strings)
        # Ragged ids, and dense [B, T] ones (the generator's samples) without padding.
        return ids, tokenizer.detokenize(ids), tokenizer.detokenize(ids[:1].to_tensor())

    ids, detokenized, dense = round_trip(tf.constant(texts))
    assert isinstance(ids, tf.RaggedTensor)
    assert [s.decode("utf-8") for s in detokenized.numpy()] == texts
    assert dense.numpy()[0].decode("utf-8") == texts[0]
    # Each word of a shapes description (with its leading space), and each run of
    # punctuation, is one token.
    pieces = re.findall(r" ?[^\W\d_]+| ?[^\s\w]+", texts[0])
    assert ids.row_lengths()[0] == len(pieces), (texts[0], pieces)


def test_tiny_presets_learn_their_vocabulary_from_texts(tmp_path):
    path = testing.save_tiny_gpt2_preset(str(tmp_path / "words"), texts=["zebra zebra quokka"])
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(path)
    assert len(tokenizer.tokenize(["zebra quokka"])[0]) == 2  # eager: Python lists
    assert tokenizer.vocabulary_size() < 300  # the end token, 256 bytes, a few merges


def test_tiny_gemma_preset_loads_and_round_trips(gemma_preset):
    backbone = keras_hub.models.Backbone.from_preset(gemma_preset)
    assert isinstance(backbone, keras_hub.models.GemmaBackbone)
    tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(gemma_preset)
    assert isinstance(tokenizer, keras_hub.models.GemmaTokenizer)
    assert (tokenizer.pad_token_id, tokenizer.end_token_id, tokenizer.start_token_id) == (0, 1, 2)
    texts = [*descriptions(), "Ünïcode ✓"]
    ids = tf.function(tokenizer.tokenize)(tf.constant(texts))
    detokenized = tf.function(tokenizer.detokenize)(ids)
    assert [s.decode("utf-8") for s in detokenized.numpy()] == texts


# === The decoder contract ========================================================================


def test_logits_shape_dtype_and_attributes(preset):
    decoder = decoder_for(preset)
    logits = decoder(inputs(decoder, batch_size=3, length=7))
    assert tuple(logits.shape) == (3, 7, decoder.vocabulary_size)
    assert logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))
    assert decoder.condition_dim == CONDITION_DIM and decoder.prefix_length == PREFIX_LENGTH
    assert decoder.vocabulary_size == decoder.tokenizer.vocabulary_size()
    assert decoder.vocabulary_size == decoder.backbone.vocabulary_size
    if isinstance(decoder.backbone, keras_hub.models.GPT2Backbone):
        assert decoder.sequence_length == 64 - PREFIX_LENGTH  # the prefix takes positions
        # The longest text fits.
        assert decoder(inputs(decoder, length=decoder.sequence_length)).shape[1] == 60
    else:
        assert decoder.sequence_length == pretrained_text.GEMMA_CONTEXT_LENGTH - PREFIX_LENGTH


def test_the_condition_changes_the_logits(preset):
    decoder = decoder_for(preset)
    data = inputs(decoder)
    other = {**data, "condition": data["condition"] + 1.0}
    difference = np.abs(decoder(data).numpy() - decoder(other).numpy())
    assert difference[:, 0].max() > 1e-3  # from the first position on
    # ... and each row only its own logits.
    swapped = {key: value[::-1] for key, value in data.items()}
    np.testing.assert_allclose(decoder(swapped).numpy()[::-1], decoder(data).numpy(), atol=1e-5)


def test_causal(preset):
    decoder = decoder_for(preset)
    data = inputs(decoder, length=8)
    t = 4
    changed = data["token_ids"].copy()
    changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % decoder.vocabulary_size
    before = decoder(data).numpy()
    after = decoder({**data, "token_ids": changed}).numpy()
    np.testing.assert_allclose(after[:, : t + 1], before[:, : t + 1], atol=1e-5)
    assert np.abs(after[:, t + 1 :] - before[:, t + 1 :]).max() > 1e-4


def test_frozen_by_default_only_the_prefix_projection_trains(preset):
    decoder = decoder_for(preset)
    assert [w.path for w in decoder.trainable_weights] == [
        "prefix_projection/kernel",
        "prefix_projection/bias",
    ]
    trainable = sum(int(np.prod(w.shape)) for w in decoder.trainable_weights)
    assert trainable == (CONDITION_DIM + 1) * PREFIX_LENGTH * HIDDEN_DIM
    non_trainable = sum(int(np.prod(w.shape)) for w in decoder.non_trainable_weights)
    assert non_trainable == decoder.backbone.count_params()


def test_trainable_backbone_tunes_every_weight(gpt2_preset):
    decoder = decoder_for(gpt2_preset, trainable_backbone=True)
    assert not decoder.non_trainable_weights
    assert len(decoder.trainable_weights) == len(decoder.backbone.weights) + 2


def lora_trainable_paths(decoder):
    return sorted(w.path for w in decoder.trainable_weights)


def train_to_predict_a_token_per_condition(decoder, steps=8):
    """Every position of a condition's text should predict that condition's token."""
    data = inputs(decoder, batch_size=2, length=6)
    targets = np.broadcast_to(np.array([[3], [5]], "int32"), data["token_ids"].shape)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.Adam(learning_rate=5e-2)

    @tf.function  # traced once: faster than eager steps through the keras-hub layers
    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(targets, decoder(data, training=True))
        grads = tape.gradient(loss, decoder.trainable_weights)
        optimizer.apply(grads, decoder.trainable_weights)
        return loss

    return data, [float(train_step()) for _ in range(steps)]


def test_lora_trains_only_the_lora_factors_and_the_prefix(preset):
    decoder = decoder_for(preset, lora_rank=2)
    paths = lora_trainable_paths(decoder)
    lora = [p for p in paths if p.rsplit("/", 1)[-1] in ("lora_kernel_a", "lora_kernel_b")]
    # Query and value of 2 attention layers, two factors each; then the prefix projection.
    assert len(lora) == 2 * 2 * 2
    assert sorted(set(paths) - set(lora)) == ["prefix_projection/bias", "prefix_projection/kernel"]
    backbone_before = numpy_weights(decoder.backbone.non_trainable_weights)
    lora_before = numpy_weights(w for w in decoder.trainable_weights if "lora" in w.path)

    _, losses = train_to_predict_a_token_per_condition(decoder)

    assert losses[-1] < losses[0] - 0.5, losses
    for weight, old in zip(decoder.backbone.non_trainable_weights, backbone_before, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), old, err_msg=weight.path)
    tuned = [w for w in decoder.trainable_weights if "lora" in w.path]
    assert all(
        not np.array_equal(keras.ops.convert_to_numpy(w), old)
        for w, old in zip(tuned, lora_before, strict=True)
    )


# === Saving ======================================================================================


def test_standard_checks(gpt2_preset, tmp_path):
    """Config round trip, functional call, .keras save/load, one fit step, mixed precision."""
    decoder = decoder_for(gpt2_preset)
    testing.run_layer_checks(
        PretrainedTextDecoder,
        init_kwargs={
            "preset": gpt2_preset,
            "condition_dim": CONDITION_DIM,
            "prefix_length": PREFIX_LENGTH,
        },
        input_data=inputs(decoder),
        expected_output_shape=(2, 10, decoder.vocabulary_size),
        tmp_path=tmp_path,
    )


def test_config_round_trip_with_lora(preset):
    decoder = decoder_for(preset, lora_rank=2)
    testing.check_config_round_trip(decoder, testing.functional_model(decoder, inputs(decoder))[1])
    revived = PretrainedTextDecoder.from_config(decoder.get_config())
    assert lora_trainable_paths(revived) == lora_trainable_paths(decoder)
    assert revived.get_config()["preset"] == preset


def test_tuned_decoder_reloads_from_keras_file_without_the_preset(preset, tmp_path):
    copy = shutil.copytree(preset, tmp_path / "preset")
    decoder = decoder_for(copy, lora_rank=2)
    data, _ = train_to_predict_a_token_per_condition(decoder, steps=3)
    expected = decoder(data).numpy()
    decoder.save(tmp_path / "decoder.keras")
    shutil.rmtree(copy)

    loaded = keras.saving.load_model(tmp_path / "decoder.keras")

    assert isinstance(loaded, PretrainedTextDecoder)
    np.testing.assert_allclose(loaded(data).numpy(), expected, atol=1e-5)
    assert lora_trainable_paths(loaded) == lora_trainable_paths(decoder)
    text = descriptions(1)[0]  # the vocabulary came back from the .keras file
    assert loaded.tokenizer.detokenize(loaded.tokenizer.tokenize([text])) == [text]


# === Errors ======================================================================================


def test_a_preset_that_is_not_a_local_directory_is_a_clear_error(tmp_path):
    for preset in ("gpt2_base_en", str(tmp_path / "missing"), None):
        with pytest.raises(ValueError, match="Expected preset to be a local keras-hub preset"):
            PretrainedTextDecoder(preset, condition_dim=CONDITION_DIM)
    with pytest.raises(ValueError, match="has no config.json"):
        PretrainedTextDecoder(str(tmp_path), condition_dim=CONDITION_DIM)


def test_an_unsupported_backbone_family_is_a_clear_error(tmp_path):
    backbone = keras_hub.models.OPTBackbone(
        vocabulary_size=10,
        num_layers=1,
        num_heads=1,
        hidden_dim=4,
        intermediate_dim=8,
        max_sequence_length=8,
    )
    backbone.save_to_preset(str(tmp_path / "opt"))
    with pytest.raises(ValueError, match=r"GPT2Backbone, GemmaBackbone.*OPTBackbone"):
        PretrainedTextDecoder(str(tmp_path / "opt"), condition_dim=CONDITION_DIM)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"condition_dim": 0}, "Expected condition_dim to be a positive int"),
        ({"prefix_length": 64}, r"below the backbone's context length \(64\)"),
        ({"lora_rank": 0}, "Expected lora_rank to be a positive int"),
        ({"lora_rank": 2, "trainable_backbone": True}, "not both"),
    ],
)
def test_bad_arguments_are_clear_errors(gpt2_preset, kwargs, message):
    with pytest.raises(ValueError, match=message):
        PretrainedTextDecoder(gpt2_preset, **{"condition_dim": CONDITION_DIM, **kwargs})


def test_docstring_examples(tmp_path):
    for module in (pretrained_text,):
        result = doctest.testmod(
            module, extraglobs={"np": np, "os": os, "tmp": str(tmp_path)}, verbose=False
        )
        assert result.failed == 0 and result.attempted > 0
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    globs = {"os": os, "keras_hub": keras_hub, "tmp": str(tmp_path), **vars(testing)}
    for test in finder.find(testing.save_tiny_gpt2_preset, globs=globs):
        runner.run(test)
    assert runner.failures == 0 and runner.tries > 0
