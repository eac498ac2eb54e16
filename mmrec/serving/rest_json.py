"""TF Serving's REST JSON ↔ NumPy: the ``instances``/``inputs`` requests and their responses.

As TF Serving documents it (https://www.tensorflow.org/tfx/serving/api_rest):

* requests carry ``"instances"`` (row format: a list with one entry per batch row,
  an object of named inputs per row, or the bare value when the signature has
  one input) or ``"inputs"`` (columnar: an object of named batched tensors, or
  the bare tensor for one input), never both, and an optional ``signature_name``;
* binary strings are ``{"b64": "<base64>"}``; ``NaN``/``Infinity`` are accepted;
* row requests are answered with ``"predictions"`` (a list of rows: objects of
  named outputs, or bare values when there is one output), columnar ones with
  ``"outputs"`` (an object of named outputs, or the bare tensor);
* string outputs whose names end in ``_bytes`` are returned as ``{"b64": …}``.
"""

from __future__ import annotations

import base64
import binascii
import json

import numpy as np
import tensorflow as tf

from mmrec.serving.errors import invalid
from mmrec.serving.servables import describe, dtype_name

# Deeper lists than this are no tensor a signature takes (TF tensors have at most a few
# dimensions); the check keeps the recursive readers below far from Python's limit.
MAX_RANK = 32


def parse_request(body):
    """Request bytes → ``(signature_name, payload, row_format)``; INVALID_ARGUMENT if malformed."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise invalid(f"Malformed JSON in the request body: {e}") from e
    except RecursionError as e:  # the parser recurses once per nesting level
        raise invalid(
            f"The request's JSON is nested too deeply; expected tensors of at most {MAX_RANK} "
            "dimensions."
        ) from e
    if not isinstance(request, dict):
        raise invalid(
            "Expected the request body to be a JSON object with 'instances' or 'inputs'. "
            f"Received: a JSON {type(request).__name__}"
        )
    if ("instances" in request) == ("inputs" in request):
        raise invalid(
            "Expected exactly one of 'instances' (row format) or 'inputs' (columnar format). "
            f"Received keys: {sorted(request)}"
        )
    signature_name = request.get("signature_name") or "serving_default"
    if not isinstance(signature_name, str):
        raise invalid(f"Expected signature_name to be a string. Received: {signature_name!r}")
    row_format = "instances" in request
    return signature_name, request["instances" if row_format else "inputs"], row_format


def request_inputs(payload, row_format, specs):
    """The ``instances``/``inputs`` payload → input name → NumPy array of the signature's dtype."""
    names = sorted(specs)
    if row_format:
        if not isinstance(payload, list) or not payload:
            raise invalid("Expected 'instances' to be a non-empty list, one entry per batch row.")
        if all(isinstance(row, dict) and not _is_b64(row) for row in payload):
            keys = {frozenset(row) for row in payload}
            if len(keys) > 1:
                raise invalid(
                    "Expected every instance to have the same named inputs. "
                    f"Received: {sorted(sorted(k) for k in keys)}"
                )
            columns = {key: [row[key] for row in payload] for key in payload[0]}
        elif len(names) == 1:
            columns = {names[0]: payload}
        else:
            raise invalid(
                "Expected each instance to be an object of named inputs (the signature has "
                f"several inputs: {describe(specs)})."
            )
    elif isinstance(payload, dict) and not _is_b64(payload):
        columns = payload
    elif len(names) == 1:
        columns = {names[0]: payload}
    else:
        raise invalid(f"Expected 'inputs' to be an object of named inputs: {describe(specs)}")
    arrays = {}
    for key, value in columns.items():
        if key not in specs:
            arrays[key] = np.zeros(0)  # reported with the expected inputs by the servable
            continue
        arrays[key] = to_array(key, value, specs[key].dtype)
    return arrays


def _is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def _shape(value, key, depth=0):
    """The shape of a nested list (rectangular), checked."""
    if not isinstance(value, list):
        return ()
    if depth >= MAX_RANK:
        raise invalid(
            f"Expected input '{key}' to have at most {MAX_RANK} dimensions. Received lists "
            f"nested more than {MAX_RANK} deep"
        )
    if not value:
        return (0,)
    inner = {_shape(v, key, depth + 1) for v in value}
    if len(inner) != 1:
        raise invalid(
            f"Expected input '{key}' to be a rectangular (nested) list; rows have different "
            "lengths. Pad them (history: with -1)."
        )
    return (len(value), *inner.pop())


def _decode_string(value, key):
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON's "\ud800" escapes decode to lone surrogates
            raise invalid(
                f"Expected input '{key}' to hold valid UTF-8 text. Received: a lone surrogate "
                f"{value[e.start : e.end]!a} at position {e.start}"
            ) from e
    if _is_b64(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, TypeError) as e:
            raise invalid(f"Input '{key}' has an invalid base64 value: {e}") from e
    raise invalid(
        f"Expected input '{key}' to hold strings or {{\"b64\": ...}} objects. "
        f"Received: {value!r:.60}"
    )


def to_array(key, value, dtype):
    """A JSON value (nested lists) → NumPy array of ``dtype``, checking kinds and ranges."""
    dtype = tf.as_dtype(dtype)
    shape = _shape(value, key)
    if dtype == tf.string:
        flat = np.empty(int(np.prod(shape)), dtype=object)
        leaves = _leaves(value)
        flat[:] = [_decode_string(v, key) for v in leaves]
        return flat.reshape(shape)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:
        message = f"Input '{key}' could not be read as a {dtype_name(dtype)} tensor: {e}"
        raise invalid(message) from e
    kind = array.dtype.kind
    expected = dtype_name(dtype)
    if dtype.is_bool:
        ok = kind == "b"
    elif dtype.is_integer:
        ok = kind in "iu" or (array.size == 0 and kind == "f")
    else:
        ok = kind in "iuf"
    if not ok:
        kinds = {"U": "strings", "f": "non-integer numbers", "b": "booleans"}
        received = kinds.get(kind, "mixed values")
        raise invalid(f"Expected input '{key}' to hold {expected} values. Received: {received}")
    if dtype.is_integer and array.size:
        low, high = int(array.min()), int(array.max())
        if low < dtype.min or high > dtype.max:
            raise invalid(
                f"Expected input '{key}' values in the {expected} range "
                f"[{dtype.min}, {dtype.max}]. Received: values in [{low}, {high}]"
            )
    return array.astype(dtype.as_numpy_dtype)


def _leaves(value):
    if isinstance(value, list):
        out = []
        for v in value:
            out.extend(_leaves(v))
        return out
    return [value]


def _json_value(name, array):
    if array.dtype.kind in "OSU":
        binary = name.endswith("_bytes")
        flat = [
            {"b64": base64.b64encode(v).decode("ascii")}
            if binary
            else (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
            for v in array.reshape(-1)
        ]
        if array.ndim == 0:
            return flat[0]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def response_body(outputs, row_format):
    """Output name → NumPy array → TF Serving's JSON response (bytes)."""
    if row_format:
        sizes = {v.shape[0] if v.ndim else None for v in outputs.values()}
        if len(sizes) != 1 or None in sizes:
            raise invalid(
                "The outputs have different batch sizes, which the row format cannot carry; "
                "send the request in the columnar format ('inputs')."
            )
        if len(outputs) == 1:
            ((name, array),) = outputs.items()
            payload = {"predictions": _json_value(name, array)}
        else:
            columns = {name: _json_value(name, array) for name, array in outputs.items()}
            rows = sizes.pop()
            payload = {"predictions": [{n: c[i] for n, c in columns.items()} for i in range(rows)]}
    elif len(outputs) == 1:
        ((name, array),) = outputs.items()
        payload = {"outputs": _json_value(name, array)}
    else:
        payload = {"outputs": {name: _json_value(name, array) for name, array in outputs.items()}}
    return json.dumps(payload).encode("utf-8")
