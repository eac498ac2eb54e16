"""Preprocessing layers: raw item content → tensors the encoders read.

Where it sits in the data flow: after ``mmrec.data`` has decoded a feature dict
(uint8 images, ``tf.string`` descriptions, float32 waveforms) and before the
per-modality encoders. Every layer here is written with plain TensorFlow ops
(``tf.image``, ``tf.signal``, tensorflow-text), so the same layer runs

* inside ``tf.data`` (``dataset.map(preprocessor)``),
* inside a Keras model (``encoder = keras.Sequential([preprocessor, ...])``),
* inside an exported SavedModel served by TF Serving, which links the
  tensorflow-text ops but runs no Python.

The module also holds the vocabulary helpers (``learn_wordpiece_vocabulary``,
``save_vocabulary``, ``load_vocabulary``); importing it has no side effects.
"""

import math
import os

import keras
import tensorflow as tf
import tensorflow_text as tf_text
from keras import ops

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
CLS_TOKEN = "[CLS]"
SEP_TOKEN = "[SEP]"
# BERT's reserved tokens. `[PAD]` comes first so that the padding id is 0, which is
# what `TextEncoder` masks.
RESERVED_TOKENS = (PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN)


# --------------------------------------------------------------------------- #
# Vocabulary helpers
# --------------------------------------------------------------------------- #


def load_vocabulary(path):
    """Reads a WordPiece vocabulary file: one token per line, line number = token id.

    Args:
        path: path of a ``vocab.txt`` (local or any filesystem ``tf.io.gfile`` reads).

    Returns:
        The tokens, a ``list[str]``.

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> save_vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "star"], path)
    >>> load_vocabulary(path)
    ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'star']
    """
    with tf.io.gfile.GFile(os.fspath(path), "r") as f:
        tokens = [line.rstrip("\r\n") for line in f]
    # A trailing newline must not become an empty token.
    while tokens and tokens[-1] == "":
        tokens.pop()
    return tokens


def save_vocabulary(tokens, path):
    """Writes ``tokens`` to ``path``, one per line (the format ``load_vocabulary`` reads).

    Example:

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "vocab.txt")
    >>> save_vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "star"], path)
    >>> open(path).read().split()
    ['[PAD]', '[UNK]', '[CLS]', '[SEP]', 'star']
    """
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        tf.io.gfile.makedirs(parent)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(f"{token}\n" for token in tokens))


def learn_wordpiece_vocabulary(texts, vocab_size=1000, reserved_tokens=RESERVED_TOKENS):
    """Learns a BERT-style WordPiece vocabulary from a corpus.

    Uses ``tensorflow_text.tools.wordpiece_vocab.bert_vocab_from_dataset`` with
    lower-casing, i.e. the same normalisation and word splitting as
    `TextTokenizer`, so the learned vocabulary fits the tokenizer.

    Args:
        texts: the corpus: a list of ``str``, a 1-D ``tf.string`` tensor / numpy
            array, or a ``tf.data.Dataset`` of strings (batched or not).
        vocab_size: the maximum size of the vocabulary, reserved tokens included.
        reserved_tokens: tokens placed first, in this order. Keep ``"[PAD]"``
            first: `TextTokenizer` requires the padding id to be 0.

    Returns:
        The vocabulary, a ``list[str]``; the position of a token is its id.

    Example:

    >>> vocab = learn_wordpiece_vocabulary(
    ...     ["a large red star", "a small blue heart"] * 10, vocab_size=60)
    >>> vocab[:4]
    ['[PAD]', '[UNK]', '[CLS]', '[SEP]']
    >>> "star" in vocab
    True
    """
    # Imported here: the learner is only needed when building a dataset.
    from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset

    if isinstance(texts, tf.data.Dataset):
        dataset = texts
        if dataset.element_spec.shape.rank == 0:
            dataset = dataset.batch(1024)
    else:
        dataset = tf.data.Dataset.from_tensor_slices(tf.constant(texts, dtype=tf.string))
        dataset = dataset.batch(1024)
    return bert_vocab_from_dataset.bert_vocab_from_dataset(
        dataset,
        vocab_size=vocab_size,
        reserved_tokens=list(reserved_tokens),
        bert_tokenizer_params={"lower_case": True},
        learn_params={},
    )


# --------------------------------------------------------------------------- #
# Layers
# --------------------------------------------------------------------------- #


@keras.saving.register_keras_serializable(package="mmrec")
class ImagePreprocessor(keras.layers.Layer):
    """Scales images to ``[-1, 1]`` and resizes them to ``image_size``.

    Input: ``[B, H, W, 3]`` images, ``uint8`` or float with values in ``[0, 255]``.
    Output: ``[B, image_size, image_size, 3]`` float32 in ``[-1, 1]`` (float32
    also under mixed precision; the next layer casts).

    Args:
        image_size: target side length (int) or ``(height, width)``; ``None``
            keeps the input size. Resizing is bilinear with anti-aliasing and is
            skipped when the input already has the target size.

    Example:

    >>> images = np.random.randint(0, 256, size=(2, 32, 32, 3), dtype="uint8")
    >>> ImagePreprocessor(image_size=16)(images).shape
    TensorShape([2, 16, 16, 3])
    """

    def __init__(self, image_size=None, **kwargs):
        # No autocast: the scaling is done in float32 whatever the policy.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if image_size is not None:
            if isinstance(image_size, int):
                image_size = (image_size, image_size)
            image_size = tuple(image_size)
            if len(image_size) != 2 or not all(isinstance(s, int) and s > 0 for s in image_size):
                raise ValueError(
                    "Expected image_size to be None, a positive int or a pair of positive "
                    f"ints. Received: image_size={image_size}"
                )
        self.image_size = image_size

    def call(self, images):
        images = ops.cast(images, "float32")
        if self.image_size is not None and tuple(images.shape[1:3]) != self.image_size:
            images = ops.image.resize(
                images, self.image_size, interpolation="bilinear", antialias=True
            )
            # Resampling can round a hair past the input range.
            images = ops.clip(images, 0.0, 255.0)
        return images / 127.5 - 1.0

    def compute_output_shape(self, input_shape):
        if self.image_size is None:
            return tuple(input_shape)
        return (input_shape[0], *self.image_size, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"image_size": self.image_size})
        return config


@keras.saving.register_keras_serializable(package="mmrec")
class AudioPreprocessor(keras.layers.Layer):
    """Turns mono waveforms into log-mel spectrograms with ``tf.signal``.

    Input: ``[B, samples]`` float32 waveform in ``[-1, 1]`` at ``sample_rate``.
    Output: ``[B, frames, num_mel_bins]`` float32 with
    ``frames = ceil(samples / frame_step)`` (the last frame is zero-padded), so
    0.5 s at 16 kHz with the defaults gives ``[B, 50, 64]``. Values are
    ``log(mel_power + 1e-6)``.

    Args:
        sample_rate: sampling rate of the waveform in Hz.
        frame_length: window length in samples (default 25 ms at 16 kHz).
        frame_step: hop between windows in samples (default 10 ms at 16 kHz).
        num_mel_bins: number of mel bands, from 20 Hz to ``sample_rate / 2``.

    Example:

    >>> waves = np.random.uniform(-1, 1, size=(2, 8000)).astype("float32")
    >>> AudioPreprocessor()(waves).shape
    TensorShape([2, 50, 64])
    """

    def __init__(
        self, sample_rate=16000, frame_length=400, frame_step=160, num_mel_bins=64, **kwargs
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        for name, value in [
            ("sample_rate", sample_rate),
            ("frame_length", frame_length),
            ("frame_step", frame_step),
            ("num_mel_bins", num_mel_bins),
        ]:
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"Expected {name} to be a positive int. Received: {name}={value}")
        self.sample_rate = sample_rate
        self.frame_length = frame_length
        self.frame_step = frame_step
        self.num_mel_bins = num_mel_bins
        self.fft_length = 2 ** math.ceil(math.log2(frame_length))
        # A constant matrix, not a weight: it is part of the graph, like the FFT.
        self._mel_matrix = tf.signal.linear_to_mel_weight_matrix(
            num_mel_bins=num_mel_bins,
            num_spectrogram_bins=self.fft_length // 2 + 1,
            sample_rate=sample_rate,
            lower_edge_hertz=20.0,
            upper_edge_hertz=sample_rate / 2,
        )

    def call(self, waveforms):
        waveforms = tf.cast(waveforms, tf.float32)
        stft = tf.signal.stft(
            waveforms,
            frame_length=self.frame_length,
            frame_step=self.frame_step,
            fft_length=self.fft_length,
            pad_end=True,
        )
        power = tf.square(tf.abs(stft))
        mel = tf.tensordot(power, self._mel_matrix, axes=1)
        return tf.math.log(mel + 1e-6)

    def compute_output_shape(self, input_shape):
        samples = input_shape[-1]
        frames = None if samples is None else math.ceil(samples / self.frame_step)
        return (input_shape[0], frames, self.num_mel_bins)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sample_rate": self.sample_rate,
                "frame_length": self.frame_length,
                "frame_step": self.frame_step,
                "num_mel_bins": self.num_mel_bins,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="mmrec")
class TextTokenizer(keras.layers.Layer):
    """BERT WordPiece tokenizer (tensorflow-text): ``tf.string [B]`` → ids ``[B, L]``.

    BERT's uncased recipe: the text is lower-cased (``case_fold_utf8``),
    NFD-normalised with accents stripped, control characters become spaces;
    ``tensorflow_text.FastWordpieceTokenizer`` then splits it on whitespace and
    punctuation and cuts each word into WordPieces. Words that cannot be cut are
    mapped to ``[UNK]``. Rows are truncated to ``sequence_length`` or padded with
    the ``[PAD]`` id, 0; an empty string gives a row of padding.

    The vocabulary is stored in the layer config (a few KB for mmrec's
    catalogues), so a saved ``.keras`` model carries it.

    Args:
        vocabulary: a list of tokens, or the path of a ``vocab.txt`` (one token
            per line). Must start with ``"[PAD]"`` and contain ``"[UNK]"``,
            ``"[CLS]"`` and ``"[SEP]"``.
        sequence_length: length of the output rows.

    Example:

    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "red", "star", "##s"]
    >>> tokenizer = TextTokenizer(vocab, sequence_length=6)
    >>> tokenizer(tf.constant(["A red Stars!", ""])).numpy().tolist()
    [[4, 5, 6, 7, 1, 0], [0, 0, 0, 0, 0, 0]]
    """

    def __init__(self, vocabulary, sequence_length=32, **kwargs):
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if isinstance(vocabulary, (str, os.PathLike)):
            vocabulary = load_vocabulary(vocabulary)
        vocabulary = [str(token) for token in vocabulary]
        if not vocabulary or vocabulary[0] != PAD_TOKEN:
            first = vocabulary[0] if vocabulary else None
            raise ValueError(
                f"Expected vocabulary[0] to be '{PAD_TOKEN}' (the padding id is 0). "
                f"Received: vocabulary[0]={first!r}"
            )
        missing = [token for token in RESERVED_TOKENS if token not in vocabulary]
        if missing:
            raise ValueError(
                f"Expected the vocabulary to contain the reserved tokens {list(RESERVED_TOKENS)}."
                f" Received: a vocabulary of {len(vocabulary)} tokens missing {missing}"
            )
        if not isinstance(sequence_length, int) or sequence_length <= 0:
            raise ValueError(
                "Expected sequence_length to be a positive int. "
                f"Received: sequence_length={sequence_length}"
            )
        self.vocabulary = vocabulary
        self.sequence_length = sequence_length
        # Ragged string ops and tf-text kernels have no XLA implementation.
        self.supports_jit = False
        # FastWordpieceTokenizer compiles the vocabulary into a constant buffer
        # (no lookup-table resource), which exports cleanly to SavedModel. With
        # no_pretokenization=False it also does BERT's whitespace/punctuation split.
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=vocabulary,
            suffix_indicator="##",
            unknown_token=UNK_TOKEN,
            no_pretokenization=False,
            token_out_type=tf.int32,
        )

    def vocabulary_size(self):
        """Number of tokens in the vocabulary."""
        return len(self.vocabulary)

    def get_vocabulary(self):
        """The tokens, in id order."""
        return list(self.vocabulary)

    def token_to_id(self, token):
        """The id of ``token`` (a Python lookup, for building models)."""
        return self.vocabulary.index(token)

    def call(self, texts):
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        # The normalisation of BERT's BasicTokenizer(lower_case=True), which is
        # also what `learn_wordpiece_vocabulary` applies.
        texts = tf_text.case_fold_utf8(texts)
        texts = tf_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
        texts = tf.strings.regex_replace(texts, r"\p{Cc}|\p{Cf}", " ")
        ids = self._wordpiece.tokenize(texts)  # ragged [B, (tokens)]
        return ids.to_tensor(default_value=0, shape=[None, self.sequence_length])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.sequence_length)

    def compute_output_spec(self, texts):
        return keras.KerasTensor((texts.shape[0], self.sequence_length), dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary": self.vocabulary, "sequence_length": self.sequence_length})
        return config
