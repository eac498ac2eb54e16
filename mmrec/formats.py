"""The formats every part of mmrec shares: modality names, label features, item-id histories.

The data layer writes them, the layers and models read them, export serves them;
each is defined once, here. Pure Python and NumPy: importing it costs nothing
(no TensorFlow), so the networks, the data layer and export can all use it.

* `MODALITIES`: the content an item can have.
* ``label_<attribute>``: the feature holding an item's class id for an attribute.
* A user's history: item ids, most recent last, right-padded with `PAD_ID`.
* A WordPiece vocabulary (``vocab.txt``) starts with `RESERVED_TOKENS`.
"""

from __future__ import annotations

import numpy as np

MODALITIES = ("image", "text", "audio")
LABEL_PREFIX = "label_"
PAD_ID = -1
# BERT's reserved tokens, first in every vocabulary: `[PAD]` first, so that the
# padding id is 0, which the tokenizer pads with and `TextEncoder` masks.
RESERVED_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


def label_key(attribute: str) -> str:
    """The feature name of an attribute's label: ``label_<attribute>``."""
    return LABEL_PREFIX + attribute


def pad_histories(history, length=None) -> tuple[np.ndarray, bool]:
    """A history (ids), a list of them or a 2-D array → ``(int32 [B, L] padded with -1, single)``.

    ``single`` is True when one history (a flat list of ids) was given. With
    ``length``, each row keeps its *most recent* ``length`` items; otherwise
    ``L`` is the longest row (at least 1). A 2-D array of the right width is
    returned as it is.
    """
    if not isinstance(history, (list, tuple)) and len(np.shape(history)) == 2:
        array = np.asarray(history, dtype=np.int32)
        if length is None or array.shape[1] == length:
            return array, False
        rows = [row[row != PAD_ID] for row in array]
        single = False
    else:
        rows = list(history)
        single = not rows or np.ndim(rows[0]) == 0
        if single:
            rows = [rows]
        rows = [[int(i) for i in row if int(i) != PAD_ID] for row in rows]
    if length is None:
        length = max(1, max((len(r) for r in rows), default=1))
    out = np.full((len(rows), length), PAD_ID, dtype=np.int32)
    for i, row in enumerate(rows):
        row = list(row)[-length:] if length else []
        out[i, : len(row)] = row
    return out, single
