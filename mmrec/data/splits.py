"""From an interaction log to the records of the three splits: filters, order and splits.

Where it sits in the data flow: `mmrec.data.importer` turns the interaction
table into integer arrays (user, item, timestamp), then calls, in this order,
`deduplicate` (one interaction per user, item and timestamp), `k_core` (drop users
and items with too few interactions, repeated until nothing changes) and
`leave_last_out` or `time_split`, which give the rows that
`mmrec.data.tfrecord.interaction_example` serialises. Pure NumPy, deterministic:
each user's interactions are ordered by timestamp, ties broken by a fixed rank of
the item (its key's sort position), never by input row order. A user's rows
depend on that user's interactions alone, so the splits give the same rows for
the whole log or user by user: the Beam import (`mmrec.data.beam`) calls them per
user.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmrec.data.schema import SPLITS


@dataclasses.dataclass
class Log:
    """Interactions as parallel int64 arrays: user index, item index, timestamp (seconds).

    Example:

    >>> log = Log(np.array([0, 0, 0, 0]), np.array([3, 1, 2, 0]), np.array([1, 2, 3, 3]))
    >>> rows = leave_last_out(log, tie_rank=np.arange(4), max_history=50)
    >>> [(history.tolist(), target) for _, history, _, target, _ in rows["test"]]
    [([3, 1, 0], 2)]
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, keep: np.ndarray) -> Log:
        return Log(self.users[keep], self.items[keep], self.timestamps[keep])


def deduplicate(log: Log) -> tuple[Log, int]:
    """Keeps the first of the interactions with the same user, item and timestamp."""
    if not len(log):
        return log, 0
    triples = np.stack([log.users, log.items, log.timestamps], axis=1)
    _, first = np.unique(triples, axis=0, return_index=True)
    keep = np.zeros(len(log), dtype=bool)
    keep[first] = True
    return log.subset(keep), int(len(log) - keep.sum())


@dataclasses.dataclass
class KCore:
    """What `k_core` kept and why it dropped the rest."""

    log: Log
    items_kept: np.ndarray  # bool [num_items]: catalogue items that stay
    dropped_by_user: int  # interactions of users with too few interactions
    dropped_by_item: int  # interactions of items with too few interactions
    users_dropped: int
    items_dropped: int


def k_core(log: Log, num_items: int, min_user: int, min_item: int) -> KCore:
    """Drops users with < `min_user` and items with < `min_item` interactions, to a fixed point.

    Dropping a user lowers the counts of their items and the other way round, so the
    two filters alternate until every remaining user and item passes. Catalogue
    items with fewer than `min_item` interactions leave the catalogue (with
    `min_item=0`, items nobody interacted with stay: cold-start candidates).
    """
    num_users = int(log.users.max()) + 1 if len(log) else 0
    by_user = by_item = 0
    items_kept = np.ones(num_items, dtype=bool)
    users_seen = np.bincount(log.users, minlength=num_users) > 0
    while True:
        user_counts = np.bincount(log.users, minlength=num_users)
        item_counts = np.bincount(log.items, minlength=num_items)
        items_kept &= item_counts >= min_item
        user_ok = user_counts[log.users] >= min_user
        item_ok = items_kept[log.items]
        if user_ok.all() and item_ok.all():
            break
        by_user += int((~user_ok).sum())
        by_item += int((user_ok & ~item_ok).sum())
        log = log.subset(user_ok & item_ok)
    users_left = np.bincount(log.users, minlength=num_users) > 0
    return KCore(
        log=log,
        items_kept=items_kept,
        dropped_by_user=by_user,
        dropped_by_item=by_item,
        users_dropped=int(users_seen.sum() - users_left.sum()),
        items_dropped=int(num_items - items_kept.sum()),
    )


def sequences(log: Log, tie_rank: np.ndarray):
    """Yields (user, items, timestamps) per user in user order, each ordered by time.

    Ties in time are broken by `tie_rank[item]` (then by item index), so the order
    does not depend on the order of the input rows.
    """
    order = np.lexsort((log.items, tie_rank[log.items], log.timestamps, log.users))
    users, items, times = log.users[order], log.items[order], log.timestamps[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else []
    ends = np.r_[starts[1:], len(users)] if len(users) else []
    for start, end in zip(starts, ends):
        yield int(users[start]), items[start:end], times[start:end]


def _rows(log: Log, tie_rank: np.ndarray, max_history: int, split_of) -> dict[str, list]:
    """Rows (user, history, history_timestamps, target, target_timestamp) by split.

    Step t of a user's sequence predicts item t from the (up to `max_history`)
    items before it; `split_of(times, n)` names the split of every step.
    """
    out = {split: [] for split in SPLITS}
    for user, items, times in sequences(log, tie_rank):
        names = split_of(times, len(items))
        for t in range(1, len(items)):
            if names[t] is None:
                continue
            lo = max(0, t - max_history)
            out[names[t]].append((user, items[lo:t], times[lo:t], int(items[t]), int(times[t])))
    return out


def leave_last_out(log: Log, tie_rank: np.ndarray, max_history: int) -> dict[str, list]:
    """Test: each user's last interaction; valid: the second-to-last; train: the steps before.

    A user needs three interactions for a valid and a test target after a history
    of at least one item; with fewer, the user's steps go to test, then valid.
    """

    def split_of(times, n):
        names = ["train"] * n
        names[0] = None  # the first item has no history to predict it from
        for index, name in ((n - 1, "test"), (n - 2, "valid")):
            if index >= 1:
                names[index] = name
        return names

    return _rows(log, tie_rank, max_history, split_of)


def time_split(
    log: Log, tie_rank: np.ndarray, max_history: int, valid_from: int, test_from: int
) -> dict[str, list]:
    """Each step by its target's time: train before `valid_from`, test from `test_from`."""
    if valid_from > test_from:
        raise ValueError(
            "Expected valid_from <= test_from. Received: "
            f"valid_from={valid_from}, test_from={test_from}"
        )

    def split_of(times, n):
        names = np.where(times < valid_from, "train", np.where(times < test_from, "valid", "test"))
        return [None] + names[1:].tolist()

    return _rows(log, tie_rank, max_history, split_of)


def items_in(rows: list) -> np.ndarray:
    """The items of `rows`, as history or target: sorted, each once."""
    if not rows:
        return np.zeros(0, dtype=np.int64)
    parts = [np.append(history, target) for _, history, _, target, _ in rows]
    return np.unique(np.concatenate(parts).astype(np.int64))


def cold_items(seen: np.ndarray, num_items: int) -> list[int]:
    """Items not in `seen`: with `items_in(train_rows)`, the items of no training record.

    The Beam import takes `items_in` per user and their union over all users.
    """
    unseen = np.ones(num_items, dtype=bool)
    unseen[np.asarray(seen, dtype=np.int64)] = False
    return np.flatnonzero(unseen).tolist()
