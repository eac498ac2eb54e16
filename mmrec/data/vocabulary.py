"""Learning and writing a WordPiece vocabulary: a data-preparation step.

Where it sits in the data flow: when a dataset is written (`mmrec.data.simulation`),
the item texts are turned into a ``vocab.txt`` next to the records; at training
time `mmrec.layers.TextTokenizer` reads that file (`mmrec.layers.load_vocabulary`)
and tokenises with the same normalisation that was used to learn it.
"""

from __future__ import annotations

import os

import tensorflow as tf

from mmrec.formats import RESERVED_TOKENS


def learn_wordpiece_vocabulary(texts, vocab_size=1000, reserved_tokens=RESERVED_TOKENS):
    """Learns a BERT-style WordPiece vocabulary from a corpus.

    Uses ``tensorflow_text.tools.wordpiece_vocab.bert_vocab_from_dataset`` with
    lower-casing, i.e. the same normalisation and word splitting as
    `mmrec.layers.TextTokenizer`, so the learned vocabulary fits the tokenizer.

    Args:
        texts: the corpus: a list of ``str``, a 1-D ``tf.string`` tensor / numpy
            array, or a ``tf.data.Dataset`` of strings (batched or not).
        vocab_size: the maximum size of the vocabulary, reserved tokens included.
        reserved_tokens: tokens placed first, in this order. Keep ``"[PAD]"``
            first: the tokenizer requires the padding id to be 0.

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
    # Imported here: tensorflow-text is needed to learn a vocabulary, not to read a dataset.
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


def save_vocabulary(tokens, path):
    """Writes ``tokens`` to ``path``, one per line (the ``vocab.txt`` format).

    Parent folders are created; any filesystem ``tf.io.gfile`` writes works.

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
