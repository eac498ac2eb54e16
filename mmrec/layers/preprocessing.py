"""Text preprocessing: ``tf.string`` descriptions → WordPiece token ids.

Where it sits in the data flow: after ``mmrec.data`` has decoded a feature dict
and before `TextEncoder`. `TextTokenizer` is written with TensorFlow and
tensorflow-text, so the same layer runs

* inside ``tf.data`` (``dataset.map(tokenizer)``),
* inside a Keras model on the TensorFlow backend,
* inside an exported SavedModel served by TF Serving, which links the
  tensorflow-text ops but runs no Python.

It reads the ``vocab.txt`` that the data layer writes (`load_vocabulary`);
learning a vocabulary is a data-preparation step (`mmrec.data.vocabulary`).
Images and audio are preprocessed with ``keras.ops`` instead, under any
backend (`mmrec.layers.image_audio_preprocessing`).
"""

import os

import keras
import tensorflow as tf
import tensorflow_text as tf_text

from mmrec.formats import RESERVED_TOKENS

PAD_TOKEN, UNK_TOKEN, CLS_TOKEN, SEP_TOKEN = RESERVED_TOKENS


# --------------------------------------------------------------------------- #
# Vocabulary file
# --------------------------------------------------------------------------- #


def load_vocabulary(path):
    """Reads a WordPiece vocabulary file: one token per line, line number = token id.

    Args:
        path: path of a ``vocab.txt`` (local or any filesystem ``tf.io.gfile`` reads).

    Returns:
        The tokens, a ``list[str]``.

    Example:

    >>> import os, tempfile
    >>> from mmrec.data.vocabulary import save_vocabulary  # what writes vocab.txt
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


# --------------------------------------------------------------------------- #
# Tokenizer
# --------------------------------------------------------------------------- #


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
            support_detokenization=True,
            token_out_type=tf.int32,
        )
        # keras-hub's tokenizer contract, which the text generator relies on: a
        # sequence starts with [CLS] and ends with [SEP]; [PAD] is 0.
        self.pad_token_id = 0
        self.start_token_id = vocabulary.index(CLS_TOKEN)
        self.end_token_id = vocabulary.index(SEP_TOKEN)

    def vocabulary_size(self):
        """Number of tokens in the vocabulary."""
        return len(self.vocabulary)

    def get_vocabulary(self):
        """The tokens, in id order."""
        return list(self.vocabulary)

    def token_to_id(self, token):
        """The id of ``token`` (a Python lookup, for building models)."""
        return self.vocabulary.index(token)

    def tokenize(self, texts):
        """``tf.string [B]`` → ragged ids ``[B, (tokens)]``: no padding, no truncation."""
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        # The normalisation of BERT's BasicTokenizer(lower_case=True), which is
        # also what `mmrec.data.vocabulary.learn_wordpiece_vocabulary` applies.
        texts = tf_text.case_fold_utf8(texts)
        texts = tf_text.normalize_utf8(texts, "NFD")
        texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
        texts = tf.strings.regex_replace(texts, r"\p{Cc}|\p{Cf}", " ")
        return self._wordpiece.tokenize(texts)

    def detokenize(self, ids):
        """Ids ``[B, T]`` (dense or ragged) → ``tf.string [B]``, in the graph too.

        The reserved tokens ([PAD], [UNK], [CLS], [SEP]) are dropped; ``##`` pieces
        join the word before; words are separated by one space, punctuation kept on
        the word before (``"a star, red"``).
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(ids))
        ids = tf.cast(ids, tf.int32)
        reserved = len(RESERVED_TOKENS)
        ids = tf.ragged.boolean_mask(ids, ids >= reserved)
        texts = self._wordpiece.detokenize(ids)
        # The tokenizer splits punctuation off; written text keeps it on the word.
        texts = tf.strings.regex_replace(texts, r" ([,;:.!?)])", r"\1")
        texts = tf.strings.regex_replace(texts, r"(\w) - (\w)", r"\1-\2")  # "polka-dot"
        return tf.strings.regex_replace(texts, r"\( ", "(")

    def call(self, texts):
        ids = self.tokenize(texts)
        return ids.to_tensor(default_value=0, shape=[None, self.sequence_length])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.sequence_length)

    def compute_output_spec(self, texts):
        return keras.KerasTensor((texts.shape[0], self.sequence_length), dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary": self.vocabulary, "sequence_length": self.sequence_length})
        return config
