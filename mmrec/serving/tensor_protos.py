"""`TensorProto` → NumPy for gRPC requests and warm-up records, with the size checked first.

A ``TensorProto`` states its shape separately from its values, and TF Serving
reads fewer values than the shape holds as a fill (the last value repeated):
a 49-byte request claiming shape ``[1, 50000000]`` with one ``int_val`` is
legal and decodes to 200 MB. `tf.make_ndarray` allocates that before anything
looks at it, so the claimed shape is checked here — against the batch limit
and against the largest request this server accepts — before any allocation.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from mmrec.serving.errors import invalid

# Bytes per element of a decoded string tensor: NumPy holds object pointers, and a
# fill repeats one bytes object.
_STRING_ITEMSIZE = 8


def claimed_shape(key, proto):
    """The shape a TensorProto states, as a list of ints (INVALID_ARGUMENT if it has none)."""
    if proto.tensor_shape.unknown_rank:
        raise invalid(f"Expected input '{key}' to have a known shape. Received: unknown rank")
    shape = [dim.size for dim in proto.tensor_shape.dim]
    if any(size < 0 for size in shape):
        raise invalid(f"Expected input '{key}' to have sizes >= 0. Received: shape {shape}")
    return shape


def _itemsize(key, proto):
    try:
        dtype = tf.as_dtype(proto.dtype)
    except TypeError as e:
        raise invalid(f"Input '{key}' has an unknown dtype enum {proto.dtype}.") from e
    if dtype == tf.string:
        return _STRING_ITEMSIZE
    if not (dtype.is_numeric or dtype.is_bool) or dtype.is_quantized:
        raise invalid(
            f"Expected input '{key}' to be a numeric, bool or string tensor. "
            f"Received: dtype {dtype.name}"
        )
    return np.dtype(dtype.as_numpy_dtype).itemsize


def to_array(key, proto, max_batch_size=None, max_bytes=None):
    """A request's ``TensorProto`` → NumPy array, refusing what would not fit the limits.

    Args:
        key: the input's name (for messages).
        proto: the `tensorflow.TensorProto`.
        max_batch_size: largest first dimension accepted (None: any).
        max_bytes: largest decoded size accepted, in bytes (None: any).

    Raises:
        ServingError: INVALID_ARGUMENT, saying what was claimed and what was sent.
    """
    shape = claimed_shape(key, proto)
    if max_batch_size and shape and shape[0] > max_batch_size:
        raise invalid(
            f"Input '{key}' has batch size {shape[0]}, over this server's maximum "
            f"batch size {max_batch_size} (--max-batch-size); split the request."
        )
    count = math.prod(shape)
    decoded = count * _itemsize(key, proto)
    if max_bytes and decoded > max_bytes:
        raise invalid(
            f"Input '{key}' claims shape {shape} ({count} values, {decoded} bytes once decoded) "
            f"but the request carried {proto.ByteSize()} bytes for it. Expected at most "
            f"{max_bytes} bytes decoded per input (--max-body-bytes)."
        )
    if proto.tensor_content and len(proto.tensor_content) != decoded:
        raise invalid(
            f"Input '{key}' claims shape {shape} ({decoded} bytes) but its tensor_content "
            f"holds {len(proto.tensor_content)} bytes."
        )
    try:
        return tf.make_ndarray(proto)
    except Exception as e:
        raise invalid(f"Input '{key}' is not a valid TensorProto: {e}") from e
