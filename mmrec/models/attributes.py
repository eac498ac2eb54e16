"""Item attributes as the generative models see them: names, class counts, label features.

An attribute set is a dict ``name → number of classes`` or ``name → list of
class names`` (as in ``dataset.json``). Batches carry one int label per
attribute under ``label_<name>``. Pure Python and NumPy: the networks, the
conditionings, evaluation and export share these helpers.
"""

from __future__ import annotations

import numpy as np

from mmrec.formats import label_key


def check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"Expected {name} to be a positive int. Received: {name}={value!r}")


def check_attributes(attributes) -> dict:
    """attribute name → number of classes, or → list of class names (kept as given)."""
    if not isinstance(attributes, dict) or not attributes:
        raise ValueError(
            "Expected attributes to be a non-empty dict of attribute name → number of "
            "classes (or list of class names), e.g. {'shape': 8, 'colour': 8}. "
            f"Received: attributes={attributes!r}"
        )
    checked = {}
    for name, classes in attributes.items():
        if isinstance(classes, (list, tuple)):
            if not classes or not all(isinstance(c, str) for c in classes):
                raise ValueError(
                    f"Expected attributes[{name!r}] to be a positive int or a non-empty list of "
                    f"class names. Received: {classes!r}"
                )
            checked[str(name)] = [str(c) for c in classes]
        else:
            check_positive_int(f"attributes[{name!r}]", classes)
            checked[str(name)] = int(classes)
    return checked


def num_classes(attributes) -> dict[str, int]:
    """attribute name → number of classes, from counts or lists of class names."""
    return {k: v if isinstance(v, int) else len(v) for k, v in attributes.items()}


def class_name(attributes, attribute, index) -> str:
    """A class's name (or its id as a string when the attribute has no names)."""
    classes = attributes[attribute]
    return str(index) if isinstance(classes, int) else classes[int(index)]


def attribute_ids(attributes, values) -> tuple[dict[str, np.ndarray], bool]:
    """``{attribute: id or class name, or a list of them}`` → ``({label_key: int32 [N]}, single)``.

    Every attribute must be given; lists must have one length, and a scalar goes
    with every row (``{"shape": ["star", "heart"], "size": 1}``). Names and ids may
    be mixed (``{"shape": "star", "colour": 3}``). ``single`` is True when every
    value is a scalar. A digit string counts as an id (``"3"``), which is what
    command lines send.

    Example:

    >>> ids, single = attribute_ids({"shape": ["circle", "star"], "size": 3},
    ...                             {"shape": ["star", 0], "size": "2"})
    >>> {k: v.tolist() for k, v in ids.items()}, single
    ({'label_shape': [1, 0], 'label_size': [2, 2]}, False)
    """
    missing = [name for name in attributes if name not in values]
    unknown = [name for name in values if name not in attributes]
    if missing or unknown:
        raise ValueError(
            f"Expected a value for each attribute {list(attributes)}. "
            f"Received: {values!r} (missing {missing}, unknown {unknown})"
        )
    single = all(np.ndim(v) == 0 for v in values.values())
    counts = num_classes(attributes)
    out = {}
    for name, given in values.items():
        ids = []
        for value in np.atleast_1d(np.asarray(given, dtype=object)):
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str):
                names = attributes[name]
                if value.strip().isascii() and value.strip().isdigit():
                    value = int(value)
                elif isinstance(names, int) or value not in names:
                    raise ValueError(
                        f"Expected {name} to be one of {names}. Received: {name}={value!r}"
                    )
                else:
                    value = names.index(value)
            if not 0 <= int(value) < counts[name]:
                raise ValueError(
                    f"Expected 0 <= {name} < {counts[name]}. Received: {name}={value!r}"
                )
            ids.append(int(value))
        out[label_key(name)] = np.asarray(ids, dtype="int32")
    lists = {len(out[label_key(n)]) for n, v in values.items() if np.ndim(v) > 0}
    if len(lists) > 1:
        raise ValueError(
            "Expected the same number of values for every attribute given as a list. "
            f"Received: { {k: len(v) for k, v in out.items()} }"
        )
    rows = lists.pop() if lists else 1
    return {k: np.resize(v, rows) if len(v) == 1 else v for k, v in out.items()}, single
