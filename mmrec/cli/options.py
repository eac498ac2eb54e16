"""Value types of the command line's options: argparse checks them before any command runs."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """``--items 2000``: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text}")
    return value


def port(text: str) -> int:
    """``--rest-port 8501``: a TCP port (0 picks a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a port in [0, 65535], received {text}"
        ) from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in [0, 65535], received {text}")
    return value


def id_list(text: str) -> list[int]:
    """``--history 3,17,42``: comma-separated non-negative ids (item or user ids)."""
    try:
        ids = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        ids = []
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ids, e.g. 3,17,42, received {text!r}"
        )
    return ids


def model_limit(text: str) -> tuple[str | None, int]:
    """``--max-batch-size 64`` or ``--max-batch-size rec=8``: ``(model name or None, N >= 1)``."""
    name, equals, value = (part.strip() for part in text.rpartition("="))
    if not (value.isascii() and value.isdigit() and int(value) >= 1) or (equals and not name):
        raise argparse.ArgumentTypeError(
            f"expected a positive integer N or MODEL=N (e.g. rec=8), received {text!r}"
        )
    return name or None, int(value)
