"""Preprocessing layers (mmrec/layers/image_audio_preprocessing.py, preprocessing.py) and the
vocabulary helpers (mmrec/data/vocabulary.py), which make the files the tokenizer reads."""

import doctest
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import mmrec.data.vocabulary as vocabulary
import mmrec.layers.image_audio_preprocessing as image_audio_preprocessing
import mmrec.layers.preprocessing as preprocessing
from mmrec.data.vocabulary import learn_wordpiece_vocabulary, save_vocabulary
from mmrec.layers import (
    RESERVED_TOKENS,
    AudioPreprocessor,
    ImagePreprocessor,
    TextTokenizer,
    load_vocabulary,
)
from mmrec.testing import run_layer_checks

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "large", "red", "star", "##s", "on", "creme", ","]


@pytest.mark.parametrize(
    "module", [image_audio_preprocessing, preprocessing, vocabulary], ids=lambda m: m.__name__
)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, extraglobs={"np": np, "tf": tf})
    assert result.attempted > 0 and result.failed == 0


# --- ImagePreprocessor --------------------------------------------------------------


def test_image_preprocessor_standard_checks(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("uint8")
    run_layer_checks(
        ImagePreprocessor,
        {"image_size": 16},
        images,
        expected_output_shape=(2, 16, 16, 3),
        tmp_path=tmp_path,
    )


def test_image_preprocessor_scales_to_minus_one_one():
    images = np.zeros((1, 4, 4, 3), "uint8")
    images[0, 0, 0] = 255
    images[0, 1, 1] = 51
    out = ImagePreprocessor()(images).numpy()
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(out[0, 1, 1], [51 / 127.5 - 1] * 3, rtol=1e-6)
    np.testing.assert_allclose(out[0, 2, 2], [-1.0, -1.0, -1.0])


def test_image_preprocessor_uint8_and_float_agree_and_resize_keeps_constant():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 8, 8, 3)).astype("uint8")
    layer = ImagePreprocessor(image_size=(4, 6))
    np.testing.assert_allclose(layer(images), layer(images.astype("float32")), atol=1e-6)
    grey = np.full((1, 8, 8, 3), 102, "uint8")
    out = layer(grey).numpy()
    assert out.shape == (1, 4, 6, 3)
    np.testing.assert_allclose(out, 102 / 127.5 - 1, atol=1e-5)


def test_image_preprocessor_in_tf_data():
    images = np.full((4, 8, 8, 3), 255, "uint8")
    ds = tf.data.Dataset.from_tensor_slices(images).batch(2).map(ImagePreprocessor(4))
    batches = list(ds)
    assert [tuple(b.shape) for b in batches] == [(2, 4, 4, 3)] * 2
    np.testing.assert_allclose(batches[0], 1.0)


@pytest.mark.parametrize("image_size", [0, (3,), "32", (4, -1)])
def test_image_preprocessor_rejects_bad_sizes(image_size):
    with pytest.raises(ValueError, match="Expected image_size to be None, a positive int"):
        ImagePreprocessor(image_size=image_size)


# --- AudioPreprocessor --------------------------------------------------------------


def test_audio_preprocessor_standard_checks(tmp_path):
    waves = np.random.default_rng(0).uniform(-1, 1, (2, 1600)).astype("float32")
    run_layer_checks(
        AudioPreprocessor,
        {"num_mel_bins": 16},
        waves,
        expected_output_shape=(2, 10, 16),
        tmp_path=tmp_path,
    )


def test_audio_preprocessor_shapes_for_the_benchmark_audio():
    # 0.5 s at 16 kHz, 10 ms hop: 50 frames.
    out = AudioPreprocessor()(np.zeros((3, 8000), "float32"))
    assert tuple(out.shape) == (3, 50, 64)
    np.testing.assert_allclose(out, math.log(1e-6), rtol=1e-6)  # silence → log(eps)


@pytest.mark.parametrize("frequency", [440.0, 1000.0, 3000.0])
def test_audio_preprocessor_puts_a_tone_in_its_mel_band(frequency):
    t = np.arange(8000) / 16000
    wave = (0.5 * np.sin(2 * np.pi * frequency * t)).astype("float32")[None]
    layer = AudioPreprocessor(num_mel_bins=64)
    peak_bin = int(np.argmax(layer(wave).numpy()[0].mean(axis=0)))

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    # tf.signal's mel bands are evenly spaced in mel from 20 Hz to 8 kHz.
    edges = np.linspace(mel(20.0), mel(8000.0), 64 + 2)
    expected_bin = int(np.argmin(np.abs(edges[1:-1] - mel(frequency))))
    assert abs(peak_bin - expected_bin) <= 1


@pytest.mark.parametrize(
    "sample_rate, frame_length, frame_step, num_mel_bins, samples",
    [(16000, 400, 160, 64, 8000), (16000, 400, 160, 8, 1601), (8000, 200, 80, 16, 999)],
)
def test_audio_preprocessor_matches_tf_signal(
    sample_rate, frame_length, frame_step, num_mel_bins, samples
):
    # The keras.ops log-mel is tf.signal's STFT (pad_end=True) and mel matrix.
    waves = np.random.default_rng(2).uniform(-1, 1, (2, samples)).astype("float32")
    layer = AudioPreprocessor(sample_rate, frame_length, frame_step, num_mel_bins)
    stft = tf.signal.stft(waves, frame_length, frame_step, layer.fft_length, pad_end=True)
    mel_matrix = tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins, layer.fft_length // 2 + 1, sample_rate, 20.0, sample_rate / 2
    )
    expected = tf.math.log(tf.tensordot(tf.square(tf.abs(stft)), mel_matrix, axes=1) + 1e-6)
    np.testing.assert_allclose(layer(waves), expected, atol=2e-4)


def test_audio_preprocessor_takes_any_length_inside_a_model():
    waves = keras.Input(shape=(None,), name="audio")
    model = keras.Model(waves, AudioPreprocessor(num_mel_bins=8)(waves))
    assert tuple(model.output.shape) == (None, None, 8)
    for samples in (160, 161, 1600):
        frames = math.ceil(samples / 160)
        assert tuple(model(np.zeros((2, samples), "float32")).shape) == (2, frames, 8)


def test_audio_preprocessor_rejects_bad_arguments():
    with pytest.raises(ValueError, match="Expected frame_step to be a positive int"):
        AudioPreprocessor(frame_step=0)


# --- TextTokenizer ------------------------------------------------------------------


def test_text_tokenizer_standard_checks(tmp_path):
    texts = np.array(["a large red star", "", "stars on zebra"])
    run_layer_checks(
        TextTokenizer,
        {"vocabulary": VOCAB, "sequence_length": 6},
        texts,
        expected_output_shape=(3, 6),
        run_fit=False,  # integer output
        tmp_path=tmp_path,
    )


def test_text_tokenizer_ids_unknown_padding_and_truncation():
    tokenizer = TextTokenizer(VOCAB, sequence_length=5)
    ids = tokenizer(tf.constant(["A large RED star", "", "zebra", "stars, stars, stars"]))
    assert ids.dtype == tf.int32
    assert ids.numpy().tolist() == [
        [4, 5, 6, 7, 0],  # lower-cased, padded with [PAD] = 0
        [0, 0, 0, 0, 0],  # empty → all padding
        [1, 0, 0, 0, 0],  # unknown word → [UNK] = 1
        [7, 8, 11, 7, 8],  # word pieces, punctuation split, truncated to 5
    ]


def test_text_tokenizer_strips_accents_and_control_characters():
    tokenizer = TextTokenizer(VOCAB, sequence_length=4)
    ids = tokenizer(tf.constant(["Crème\ton  a\nstar"]))
    assert ids.numpy().tolist() == [[10, 9, 4, 7]]


def test_text_tokenizer_vocabulary_from_file_is_stored_in_config(tmp_path):
    path = tmp_path / "vocab.txt"
    save_vocabulary(VOCAB, path)
    tokenizer = TextTokenizer(str(path), sequence_length=4)
    assert tokenizer.get_config()["vocabulary"] == VOCAB
    assert tokenizer.vocabulary_size() == len(VOCAB)
    assert tokenizer.token_to_id("star") == 7
    # The .keras file carries the vocabulary: loading works after the file is gone.
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, tokenizer(inputs))
    model.save(tmp_path / "tokenizer.keras")
    path.unlink()
    loaded = keras.saving.load_model(tmp_path / "tokenizer.keras")
    assert loaded(tf.constant(["red stars"])).numpy().tolist() == [[6, 7, 8, 0]]


def test_text_tokenizer_in_tf_data_and_exported_saved_model(tmp_path):
    tokenizer = TextTokenizer(VOCAB, sequence_length=4)
    ds = tf.data.Dataset.from_tensor_slices(["a red star", ""]).batch(2).map(tokenizer)
    expected = [[4, 6, 7, 0], [0, 0, 0, 0]]
    assert next(iter(ds)).numpy().tolist() == expected

    # An exported graph: reloaded with TensorFlow alone (no Keras, no mmrec objects).
    texts = keras.Input(shape=(), dtype="string", name="text")
    waves = keras.Input(shape=(1600,), dtype="float32", name="audio")
    images = keras.Input(shape=(8, 8, 3), dtype="uint8", name="image")
    model = keras.Model(
        {"text": texts, "audio": waves, "image": images},
        {
            "ids": tokenizer(texts),
            "log_mel": AudioPreprocessor(num_mel_bins=8)(waves),
            "pixels": ImagePreprocessor(4)(images),
        },
    )
    model.export(str(tmp_path / "export"), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(tmp_path / "export"))
    features = {
        "text": tf.constant(["a red star", ""]),
        "audio": tf.zeros((2, 1600)),
        "image": tf.fill((2, 8, 8, 3), tf.constant(255, tf.uint8)),
    }
    served = reloaded.serve(features)
    assert served["ids"].numpy().tolist() == expected
    np.testing.assert_allclose(served["log_mel"], model(features)["log_mel"], rtol=1e-5)
    np.testing.assert_allclose(served["pixels"], 1.0)


def test_text_tokenizer_validates_vocabulary():
    with pytest.raises(ValueError, match=r"Expected vocabulary\[0\] to be '\[PAD\]'"):
        TextTokenizer(["[UNK]", "[PAD]", "[CLS]", "[SEP]"])
    with pytest.raises(ValueError, match=r"missing \['\[CLS\]', '\[SEP\]'\]"):
        TextTokenizer(["[PAD]", "[UNK]", "star"])
    with pytest.raises(ValueError, match="Expected sequence_length to be a positive int"):
        TextTokenizer(VOCAB, sequence_length=0)


# --- vocabulary helpers (mmrec/data/vocabulary.py) ------------------------------------


def test_learning_and_tokenizing_use_the_same_reserved_tokens():
    assert vocabulary.RESERVED_TOKENS == RESERVED_TOKENS == ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def test_moved_vocabulary_helpers_still_import_from_layers():
    import mmrec.layers

    assert mmrec.layers.learn_wordpiece_vocabulary is learn_wordpiece_vocabulary
    assert mmrec.layers.save_vocabulary is save_vocabulary


def test_learned_vocabulary_covers_its_corpus(tmp_path):
    corpus = [
        "a large crimson star on a striped background",
        "small heart, teal, dotted backdrop",
        "this item shows a medium ring in navy against a checked background",
    ] * 20
    vocab = learn_wordpiece_vocabulary(corpus, vocab_size=200)
    assert vocab[:4] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    assert len(vocab) <= 200 and len(set(vocab)) == len(vocab)
    assert {"crimson", "star", "heart", "background"} <= set(vocab)

    tokenizer = TextTokenizer(vocab, sequence_length=16)
    ids = tokenizer(tf.constant(corpus[:3])).numpy()
    assert not (ids == 1).any(), "a word of the corpus became [UNK]"
    assert (ids[:, 0] != 0).all()

    # A tf.data.Dataset of unbatched strings is accepted too, with the same result.
    dataset = tf.data.Dataset.from_tensor_slices(corpus)
    assert learn_wordpiece_vocabulary(dataset, vocab_size=200) == vocab

    save_vocabulary(vocab, tmp_path / "sub" / "vocab.txt")
    assert load_vocabulary(tmp_path / "sub" / "vocab.txt") == vocab
