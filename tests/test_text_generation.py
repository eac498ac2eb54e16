"""ConditionalTextGenerator, TextDecoder and the item / explanation conditionings."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec
from mmrec.layers import TextTokenizer
from mmrec.models.conditioning import AttributeConditioning, get_conditioning
from mmrec.models.conditioning.explanation import ExplanationConditioner, write_explanation
from mmrec.models.text_generation import ConditionalTextGenerator, sequence_mask
from mmrec.models.text_networks import TextDecoder, generate_token_ids, get_sampler, text_lengths
from mmrec.testing import run_layer_checks

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "red", "blue", "star", "heart", "ring", "big"]
TEXTS = ["a red star", "a blue heart", "big ring", "a big red heart"]
TINY_DECODER = {"hidden_dim": 16, "num_layers": 1, "num_heads": 2}


@pytest.fixture(autouse=True)
def seed():
    keras.utils.set_random_seed(0)


def _memorising_model(sampler="greedy"):
    """Four attribute values, one text each: a model that can learn them by heart."""
    tokenizer = TextTokenizer(VOCAB, name="tokenizer")
    conditioning = AttributeConditioning.from_attributes({"shape": 4}, embedding_dim=8)
    decoder = TextDecoder(len(VOCAB), 8, sequence_length=8, **TINY_DECODER)
    return ConditionalTextGenerator(decoder, tokenizer, conditioning, sampler=sampler, seed=1)


def _memorising_data(repeat=8):
    return {
        "text": np.array(TEXTS * repeat),
        "label_shape": np.tile(np.arange(4, dtype="int32"), repeat),
    }


@pytest.fixture(scope="module")
def memorised():
    model = _memorising_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(_memorising_data(), batch_size=32, epochs=60, verbose=0)
    return model, history.history


def test_text_decoder_standard_checks(tmp_path):
    inputs = {
        "token_ids": np.array([[2, 4, 5, 3, 0], [2, 6, 3, 0, 0]], "int32"),
        "condition": np.random.default_rng(0).normal(size=(2, 6)).astype("float32"),
    }
    run_layer_checks(
        TextDecoder,
        {"vocabulary_size": 11, "condition_dim": 6, "sequence_length": 8, **TINY_DECODER},
        inputs,
        expected_output_shape=(2, 5, 11),
        tmp_path=tmp_path,
    )


def test_text_decoder_is_causal_and_conditioned():
    decoder = TextDecoder(11, 6, sequence_length=8, **TINY_DECODER)
    ids = np.array([[2, 4, 5, 7, 3, 0]], "int32")
    condition = np.ones((1, 6), "float32")
    logits = np.asarray(decoder({"token_ids": ids, "condition": condition}))
    changed = ids.copy()
    changed[0, 3] = 9
    after = np.asarray(decoder({"token_ids": changed, "condition": condition}))
    np.testing.assert_allclose(
        after[:, :3], logits[:, :3], atol=1e-5
    )  # the past ignores the future
    assert not np.allclose(after[:, 3], logits[:, 3])
    other = np.asarray(decoder({"token_ids": ids, "condition": -condition}))
    assert not np.allclose(other[:, 0], logits[:, 0])  # the soft prompt reaches the first token


def test_text_decoder_validates_its_arguments():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        TextDecoder(11, 6, hidden_dim=10, num_heads=4)
    with pytest.raises(ValueError, match="sampler to be one of"):
        get_sampler("nucleus")


def test_sequence_mask_and_lengths():
    targets = np.array([[4, 5, 3, 0, 0], [4, 3, 3, 0, 6]])
    np.testing.assert_array_equal(
        sequence_mask(targets, 3), [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    )  # up to and including the first end token
    sampled = np.array([[2, 4, 5, 3, 9], [2, 4, 4, 4, 4]])
    np.testing.assert_array_equal(text_lengths(sampled, 3), [2, 4])


def test_tokenize_adds_start_and_end_and_detokenize_inverts_it():
    model = _memorising_model()
    ids = model.tokenize(tf.constant(["a red star", "big ring"])).numpy()
    assert ids.shape == (2, 9)
    assert ids[0].tolist() == [2, 4, 5, 7, 3, 0, 0, 0, 0]
    sampled = np.concatenate([ids[:, :-1]], axis=0)
    assert model.detokenize(sampled).numpy().tolist() == [b"a red star", b"big ring"]


def test_fit_learns_each_condition_text(memorised):
    model, history = memorised
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert history["perplexity"][-1] < 1.2
    assert history["token_accuracy"][-1] > 0.95
    written = model.generate({"shape": [0, 1, 2, 3]}, num=1, sampler="greedy")
    assert [texts[0] for texts in written] == TEXTS


def test_generate_samplers_seeds_and_errors(memorised):
    model, _ = memorised
    first = model.generate({"shape": 2}, num=3, seed=7, sampler="top_k")
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert model.generate({"shape": 2}, num=3, seed=7, sampler="top_k") == first
    # Row i of a request uses seed + i alone: the second row of seed 7 is the first of seed 8.
    assert model.generate({"shape": 2}, num=1, seed=8, sampler="top_k") == first[1:2]
    assert model.generate({"shape": 1}, num=2, sampler="beam") == ["a blue heart"] * 2
    for sampler in ("top_p", "random"):
        assert model.generate({"shape": 0}, num=2, seed=0, sampler=sampler) == ["a red star"] * 2
    with pytest.raises(ValueError, match="sampler to be one of"):
        model.generate({"shape": 0}, sampler="nucleus")
    with pytest.raises(ValueError, match="Expected condition"):
        model.generate("a red star")


def test_save_and_load_give_the_same_texts(memorised, tmp_path):
    model, _ = memorised
    path = str(tmp_path / "text.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded, ConditionalTextGenerator) and reloaded.sampler == "greedy"
    condition = {"shape": [0, 3]}
    assert reloaded.generate(condition, num=2, seed=3, sampler="top_k") == model.generate(
        condition, num=2, seed=3, sampler="top_k"
    )


def test_generate_token_ids_stops_at_the_end_token(memorised):
    model, _ = memorised
    condition = model.conditioning({"label_shape": np.array([0, 2], "int32")})
    ids = np.asarray(
        generate_token_ids(model.decoder, condition, 2, 3, get_sampler("greedy"), length=8)
    )
    assert ids.shape == (2, 8) and (ids[:, 0] == 2).all()
    np.testing.assert_array_equal(text_lengths(ids, 3), [3, 2])  # "a red star", "big ring"


def test_constructor_checks_the_contract():
    tokenizer = TextTokenizer(VOCAB)
    conditioning = AttributeConditioning.from_attributes({"shape": 4}, embedding_dim=8)
    with pytest.raises(ValueError, match="condition_dim"):
        ConditionalTextGenerator(TextDecoder(11, 5, **TINY_DECODER), tokenizer, conditioning)
    with pytest.raises(ValueError, match="tokenize/detokenize"):
        ConditionalTextGenerator(TextDecoder(11, 8, **TINY_DECODER), object(), conditioning)
    with pytest.raises(ValueError, match="text decoder"):
        ConditionalTextGenerator(keras.layers.Dense(3), tokenizer, conditioning)


# --- on the tiny shapes dataset: every kind of condition ------------------------------------


@pytest.mark.parametrize("condition", ["attributes", "item", "explanation"])
def test_from_dataset_trains_generates_and_saves(tiny_shapes, condition, tmp_path):
    data = mmrec.data.load(tiny_shapes)
    model = ConditionalTextGenerator.from_dataset(
        data, condition=condition, decoder=TINY_DECODER, embedding_dim=8
    )
    assert model.condition == condition
    model.compile()
    pairs = data.generation_pairs("train", batch_size=16).take(3)
    history = model.fit(pairs, validation_data=pairs.take(1), epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert {"val_loss", "val_perplexity"} <= set(history.history)
    request = get_conditioning(condition).grid_conditions(data, rows=2)
    texts = model.generate(request, num=2, seed=0)
    assert len(texts) == 2 and all(len(row) == 2 for row in texts)
    path = str(tmp_path / "model.keras")
    model.save(path)
    assert keras.saving.load_model(path).generate(request, num=2, seed=0) == texts


def test_user_conditioned_text(tiny_shapes):
    data = mmrec.data.load(tiny_shapes)
    rec = mmrec.models.Recommender.from_dataset(data, embedding_dim=8)
    model = ConditionalTextGenerator.from_dataset(
        data, condition="user", user_encoder=rec.build_user_encoder(), decoder=TINY_DECODER
    )
    model.compile()
    history = model.fit(data.generation_pairs("train", batch_size=16).take(2), verbose=0)
    assert "condition_loss" in history.history
    texts = model.generate([[1, 2, 3], [4, 5]], num=2, seed=0)
    assert len(texts) == 2 and all(len(row) == 2 for row in texts)
    attributes = model.preferred_attributes([[1, 2, 3]], num=5, seed=0)
    assert attributes["shape"].shape == (1, 5)


def test_item_conditioning_refuses_text_and_checks_content(tiny_shapes):
    data = mmrec.data.load(tiny_shapes)
    item = get_conditioning("item")
    rec = mmrec.models.Recommender.from_dataset(data, embedding_dim=8)
    with pytest.raises(ValueError, match="without the text modality"):
        item.from_dataset(data, item_encoder=rec.item_encoder)
    conditioning = item.from_dataset(data, embedding_dim=8)
    assert sorted(conditioning.serving_inputs()) == ["audio", "image"]
    with pytest.raises(ValueError, match="without \\['audio'\\]"):
        conditioning.parse({"image": np.zeros((1, 32, 32, 3))}, 1, None)
    with pytest.raises(ValueError, match="image content of shape"):
        conditioning.parse({"image": np.zeros((1, 8, 8, 3)), "audio": np.zeros((1, 8000))}, 1, None)
    content = conditioning.item_content(data, [0, 1])
    inputs, single = conditioning.parse(content, 3, None)
    assert not single and inputs["image"].shape == (6, 32, 32, 3)


def test_explanations_name_the_history_and_the_item():
    attributes = {"shape": ["star", "cross"], "colour": ["red", "blue"], "pattern": ["dots"]}
    text = write_explanation(
        {"shape": 1, "colour": 0, "pattern": 0},
        {"shape": 0, "colour": 0, "pattern": 0},
        attributes,
        ("colour", "shape"),
    )
    assert text == "you often pick red crosses; this is a red star (dots)"
    labels = np.array([[0, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]])  # shape, colour, pattern
    conditioning = get_conditioning("explanation")(
        ExplanationConditioner(labels, attributes, embedding_dim=4), strong=["colour", "shape"]
    )
    # History items 1, 2 (red crosses) and 0 (a blue star): the modes are red and cross.
    assert conditioning.explanations(np.array([[0, 1, 2, -1]]), [3]) == [
        "you often pick red crosses; this is a red star (dots)"
    ]
    inputs, single = conditioning.parse(([0, 1], 3), 2, None)
    assert single and inputs["history"].tolist() == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match=r"item ids in \[0, 4\)"):
        conditioning.parse(([0, 9], 3), 1, None)


# --- a pretrained keras-hub LM (a tiny random GPT-2 saved as a local preset) ----------------


@pytest.fixture(scope="module")
def gpt2_preset(tmp_path_factory):
    from mmrec.testing import save_tiny_gpt2_preset

    return save_tiny_gpt2_preset(str(tmp_path_factory.mktemp("presets") / "gpt2"))


def _pretrained_model(preset, **decoder_kwargs):
    from mmrec.models import PretrainedTextDecoder

    conditioning = AttributeConditioning.from_attributes({"shape": 4}, embedding_dim=8)
    decoder = PretrainedTextDecoder(preset, condition_dim=8, **decoder_kwargs)
    return ConditionalTextGenerator(decoder, None, conditioning, sampler="greedy", max_length=8)


def test_pretrained_decoder_fine_tuned_learns_the_condition_texts(gpt2_preset, tmp_path):
    model = _pretrained_model(gpt2_preset, trainable_backbone=True)
    assert model.tokenizer is model.decoder.tokenizer and model.sequence_length == 7
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(_memorising_data(), batch_size=32, epochs=40, verbose=0).history
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    written = model.generate({"shape": [0, 1, 2, 3]}, num=1)
    assert [texts[0] for texts in written] == TEXTS
    path = str(tmp_path / "gpt2_text.keras")
    model.save(path)
    assert keras.saving.load_model(path).generate({"shape": [0, 1]}, num=1) == written[:2]


def test_pretrained_decoder_with_lora_keeps_the_backbone(gpt2_preset):
    model = _pretrained_model(gpt2_preset, lora_rank=4)
    embeddings = np.array(model.decoder.backbone.token_embedding.embeddings)
    model.compile(optimizer=keras.optimizers.Adam(3e-2))
    history = model.fit(_memorising_data(), batch_size=32, epochs=20, verbose=0).history
    # The LoRA factors and the soft prompt adapt (a random tiny GPT-2 has little to adapt
    # from: the fine-tuned model above learns the texts by heart, this one only halfway).
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    np.testing.assert_array_equal(model.decoder.backbone.token_embedding.embeddings, embeddings)


def test_from_dataset_on_a_preset_uses_its_tokenizer(tiny_shapes, gpt2_preset):
    data = mmrec.data.load(tiny_shapes)
    model = ConditionalTextGenerator.from_dataset(data, preset=gpt2_preset, embedding_dim=8)
    assert type(model.tokenizer).__name__ == "GPT2Tokenizer"
    assert model.max_length < model.decoder.sequence_length  # the texts', not the LM's context
    # Frozen LM: the soft prompt's projection (kernel, bias) and the conditioning train.
    assert len(model.decoder.trainable_weights) == 2
    assert len(model.trainable_weights) == 2 + len(model.conditioning.trainable_weights)


def test_pretrained_item_encoder_reads_attributes_and_is_used_frozen(tiny_shapes):
    from mmrec.models import pretrain_item_encoder

    data = mmrec.data.load(tiny_shapes)
    encoder, report = pretrain_item_encoder(
        data,
        epochs=60,
        batch_size=8,
        learning_rate=5e-3,
        embedding_dim=16,
        encoder_config={"image": {"filters": [8, 16]}, "audio": {"filters": [4, 8]}},
        verbose=0,
    )
    # 60 items: the judges' split, 48 to train on (item_id % 5 != 0) and 12 held out.
    assert (report["train_items"], report["held_out_items"]) == (48, 12)
    assert report["steps"] == 60 * 6
    assert set(report["held_out_accuracy"]) == set(data.info.attributes)
    # Colour and pattern are easy to see: the classifier learns them on its training items.
    assert report["train_accuracy"]["colour"] >= 0.85
    assert report["train_accuracy"]["pattern"] >= 0.85
    assert all(0.0 <= a <= 1.0 for a in report["held_out_accuracy"].values())

    model = ConditionalTextGenerator.from_dataset(data, condition="item", item_encoder=encoder)
    frozen = model.conditioning.network.get_layer("item_encoder")
    assert not frozen.trainable and frozen is not encoder
    for mine, theirs in zip(frozen.get_weights(), encoder.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    trained = {id(v) for v in model._trained_variables()}
    assert not any(id(v) in trained for v in frozen.weights)

    item = get_conditioning("item")
    with pytest.raises(ValueError, match="either item_encoder or pretrain_epochs"):
        item.from_dataset(data, item_encoder=encoder, pretrain_epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        pretrain_item_encoder(data, epochs=0)
