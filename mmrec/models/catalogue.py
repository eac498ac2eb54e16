"""A recommender's catalogue from a dataset: content, tokenised texts, external item keys.

Where it sits in the data flow: `Recommender.from_dataset` takes what its item
tower reads per item from `content_spec` (and the tokenizer, see
`tokenize_texts`) and the sampling frequencies from `target_frequencies`. It reads the dataset's
id map (``data.item_keys()``: line i of ``item_keys.txt`` is the external key of
internal item id i) into an `ItemKeys`, which turns a history of external keys
into ids and returned ids back into keys (the exported ``recommend`` signature
gathers the same keys in the graph). `tokenize_texts` tokenises the catalogue's
texts once, and warns when the tokeniser's ``sequence_length`` cuts many of them.
"""

from __future__ import annotations

import warnings

import numpy as np
from keras import ops

from mmrec.layers.preprocessing import TextTokenizer

# Warn when more than this share of the catalogue's texts is truncated.
TRUNCATION_WARNING_SHARE = 0.05


class ItemKeys:
    """The external keys of a catalogue's items: ``keys[i]`` is item id i's key.

    Args:
        keys: a list of N distinct, non-empty strings (e.g. MovieLens movie ids).
        num_items: N, checked against ``len(keys)``.

    Example:

    >>> keys = ItemKeys(["tt01", "tt07", "tt42"], num_items=3)
    >>> keys.ids_for([["tt42", "tt01"], ["tt07"]])
    [[2, 0], [1]]
    >>> keys.keys_for(np.array([[1, 2]])).tolist()
    [['tt07', 'tt42']]
    """

    def __init__(self, keys, num_items):
        keys = list(keys)
        if len(keys) != num_items:
            raise ValueError(
                f"Expected one item key per item ({num_items}). Received: {len(keys)} keys"
            )
        wrong = [k for k in keys if not isinstance(k, str) or not k][:5]
        if wrong:
            raise ValueError(f"Expected item keys to be non-empty strings. Received: {wrong}")
        self.to_id = {key: i for i, key in enumerate(keys)}
        if len(self.to_id) != len(keys):
            seen, repeated = set(), []
            for key in keys:
                if key in seen and key not in repeated:
                    repeated.append(key)
                seen.add(key)
            raise ValueError(f"Expected distinct item keys. Received duplicates: {repeated[:5]}")
        self.keys = keys
        self._array = np.asarray(keys, dtype=str)

    def __len__(self):
        return len(self.keys)

    def ids_for(self, keys):
        """Item ids of external keys, in the same nesting: a key, a list, or a list of lists.

        Raises:
            ValueError: naming the keys this catalogue does not have.
        """
        nested = not isinstance(keys, str | bytes)
        rows = [keys] if not nested else list(keys)
        deep = any(not isinstance(row, str | bytes) for row in rows)
        rows = [list(row) for row in rows] if deep else [rows]
        text = [[k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in r] for r in rows]
        unknown = sorted({k for row in text for k in row if k not in self.to_id})
        if unknown:
            example = self.keys[: min(3, len(self.keys))]
            raise ValueError(
                f"Expected item keys of this model's catalogue ({len(self.keys)} items, e.g. "
                f"{example}). Received {len(unknown)} unknown: {unknown[:10]}"
            )
        ids = [[self.to_id[k] for k in row] for row in text]
        if deep:
            return ids
        return ids[0] if nested else ids[0][0]

    def keys_for(self, ids):
        """The keys of item ids: a NumPy array of ``str`` shaped like ``ids``."""
        return self._array[np.asarray(ids, dtype=np.int64)]


class ItemKeysMixin:
    """External item keys for a model holding an `ItemKeys` (or None) in ``_item_keys``:
    `item_keys`, `item_key_to_id`, `item_ids_for` (the `Recommender`'s)."""

    @property
    def item_keys(self):
        """The items' external keys (``item_keys[i]`` is item i's), or None."""
        return None if self._item_keys is None else list(self._item_keys.keys)

    @property
    def item_key_to_id(self):
        """External key → item id (a dict; raises `ValueError` without `item_keys`)."""
        return self._keys("item_key_to_id").to_id

    def item_ids_for(self, keys):
        """Item ids of external keys, nested like ``keys`` (a key, a list, a list of lists).

        Raises:
            ValueError: naming the keys the catalogue does not have.

        Example:

        ```python
        ids, scores = rec.recommend(rec.item_ids_for([["1", "296"], ["593"]]))
        ```
        """
        return self._keys("item_ids_for").ids_for(keys)

    def _keys(self, what):
        if self._item_keys is None:
            raise ValueError(
                f"{what} needs the items' external keys, and this model has none "
                "(item_keys=None: its dataset has no id maps, e.g. a synthetic benchmark). "
                "Use item ids, or build it from a dataset imported with `mmrec data import`."
            )
        return self._item_keys


def tokenize_texts(texts, vocabulary, sequence_length):
    """Token ids ``int32 [N, sequence_length]`` of the catalogue's texts, and their tokenizer.

    Warns (`UserWarning`, once per call) when more than
    `TRUNCATION_WARNING_SHARE` of the texts are longer than ``sequence_length``
    tokens, saying how many, so that the length can be raised.
    """
    tokenizer = TextTokenizer(vocabulary, sequence_length=sequence_length)
    # One token more than kept: a text is truncated when that token is not padding.
    longer = TextTokenizer(tokenizer.get_vocabulary(), sequence_length=sequence_length + 1)
    tokens = ops.convert_to_numpy(longer(texts)).astype("int32")
    truncated = int(np.count_nonzero(tokens[:, sequence_length]))
    if truncated > TRUNCATION_WARNING_SHARE * len(tokens):
        warnings.warn(
            f"{truncated} of {len(tokens)} item texts ({truncated / len(tokens):.0%}) are "
            f"longer than the text encoder's sequence_length={sequence_length} tokens and are "
            "truncated. To keep more of them, raise it: "
            "encoder_config={'text': {'sequence_length': ...}}.",
            UserWarning,
            stacklevel=4,  # the caller of Recommender.from_dataset
        )
    return tokens[:, :sequence_length], tokenizer


def content_spec(data, modalities, encoder_config):
    """What a `Recommender`'s item tower takes per item, for ``modalities`` of a dataset.

    Returns:
        ``(spec, tokenizer, encoder_config)``: ``{modality: {"shape": [...],
        "dtype": ...}}`` per item (text as raw strings, shape ``[]``), the
        `TextTokenizer` (None without text), and a copy of ``encoder_config``
        whose ``"text"`` entry holds the ``sequence_length`` (default 24) and the
        vocabulary's size. Tokenises the catalogue's texts once to warn about
        truncation (`tokenize_texts`).
    """
    features = data.catalogue().features()
    encoder_config = {m: dict(c) for m, c in (encoder_config or {}).items()}
    spec, tokenizer = {}, None
    for m in modalities:
        if m not in features:
            raise ValueError(
                f"Expected modalities among the dataset's {list(features)}. "
                f"Received: modalities={list(modalities)}"
            )
        dtype = "string" if m == "text" else features[m].dtype.name
        spec[m] = {"shape": list(features[m].shape[1:]), "dtype": dtype}
    if "text" in modalities:
        text_config = encoder_config.setdefault("text", {})
        length = text_config.setdefault("sequence_length", 24)
        _, tokenizer = tokenize_texts(features["text"], data.vocabulary_path, length)
        text_config["vocabulary_size"] = tokenizer.vocabulary_size()
    return spec, tokenizer, encoder_config


def target_frequencies(data):
    """How often each item is a target in the training split: float64 [N]."""
    frequencies = np.zeros(data.info.num_items)
    for batch in data.interactions("train", batch_size=8192, shuffle=False):
        np.add.at(frequencies, batch["target"].numpy(), 1)
    return frequencies
