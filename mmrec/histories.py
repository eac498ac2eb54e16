"""The history format shared by data, layers, models and export: item ids right-padded with -1.

A user's history is a row of item ids, most recent last, right-padded with
`PAD_ID`. The data layer writes it, the user tower masks on it, the models and
the exported signatures accept it. Pure NumPy: importing it costs nothing.
"""

from __future__ import annotations

import numpy as np

PAD_ID = -1


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
