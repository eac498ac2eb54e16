"""Failures a person can fix, and how the `mmrec` command tells them from bugs.

`UsageError` marks an expected failure: a bad option, a missing file, a model of
the wrong kind. Its message alone says what to do, so the command prints
``mmrec: error: <message>`` and exits with status 2 (the traceback only with
``mmrec --debug``). Every other exception is a bug and shows its traceback.

The library validates its arguments with ``ValueError("Expected ... Received ...")``.
Where the command passes what a person typed into the library, it wraps that one
call in `usage_errors()`, which turns those messages into `UsageError`s, and only
those: a ``ValueError`` raised inside Keras or TensorFlow is not a message for
the user and keeps its traceback.
"""

from __future__ import annotations

import contextlib

# Top-level packages whose errors are never the library's own validation messages.
_FRAMEWORKS = frozenset({"keras", "tensorflow", "tf_keras", "tensorflow_text"})


class UsageError(Exception):
    """An expected failure, explained in one line: the user can fix it without a traceback.

    Example:

    >>> try:
    ...     raise UsageError("Expected --history (item ids, e.g. 3,17,42) for a recommender.")
    ... except UsageError as e:
    ...     print(f"mmrec: error: {e}")
    mmrec: error: Expected --history (item ids, e.g. 3,17,42) for a recommender.
    """


def raised_by_mmrec(error: BaseException) -> bool:
    """Whether mmrec's library code raised ``error`` itself (not inside Keras or TensorFlow).

    True when the innermost frame of its traceback is in an ``mmrec`` module other
    than the command line's own (`mmrec.cli` raises `UsageError` directly) and no
    frame on the way belongs to Keras or TensorFlow.
    """
    modules = []
    frame = error.__traceback__
    while frame is not None:
        modules.append(frame.tb_frame.f_globals.get("__name__", ""))
        frame = frame.tb_next
    if not modules:
        return False
    innermost = modules[-1]
    in_library = innermost.startswith("mmrec.") and not innermost.startswith("mmrec.cli")
    return in_library and not any(m.partition(".")[0] in _FRAMEWORKS for m in modules)


@contextlib.contextmanager
def usage_errors():
    """Inside the block, the library's ``ValueError`` messages become `UsageError`s.

    Wrap a call that receives what a person typed (options, a config file, a
    dataset folder). A ``ValueError`` raised inside Keras or TensorFlow passes
    through unchanged (see `raised_by_mmrec`), so a bug still shows its traceback.

    Example:

    >>> from mmrec.training.samples import parse_attributes
    >>> try:
    ...     with usage_errors():
    ...         parse_attributes("shape")
    ... except UsageError as e:
    ...     print(str(e)[:42])
    Expected attributes as name=value pairs, e
    """
    try:
        yield
    except ValueError as e:
        if not raised_by_mmrec(e):
            raise
        raise UsageError(str(e)) from e
