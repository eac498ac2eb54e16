"""Reading mmrec datasets: checked tf.data pipelines and the item catalogue.

Data flow: shards → interleaved `TFRecordDataset`s (each record tagged with its file
and index) → parse + validate + decode → (filter) → shuffle → batch → prefetch.

Every record is validated inside the graph. A bad record either stops the pipeline
with an error that names the shard, the record index and what was expected
(`on_error="raise"`, the default), or is dropped and counted
(`on_error="skip"`) — never silently turned into a wrong example. A shard that
ends early (truncated, or corrupt so that the GZIP stream cannot be read further)
is detected by comparing the records read with the count in `dataset.json`; a
record that TensorFlow cannot parse or decode at all (not an Example, a feature of
the wrong type, undecodable image or audio bytes) is caught where it fails and named
at the end of its shard. A shard file that is missing is an error in both modes,
when a pipeline is built and again, if it disappears later, when one is iterated.

Images stay **uint8** (exact pixels; models scale them inside their graph, so an
exported model takes the same raw pixels), audio is float32 in [-1, 1], text is
`tf.string`, ids are int32 and histories are right-padded with `PAD_ID` (-1).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re

import numpy as np
import tensorflow as tf

from mmrec.data import schema
from mmrec.data.records import (
    MISSING_SHARD,
    check_records,
    item_id_problems,
    keep,
    record_parser,
    shard_records,
    unreadable_records,
    verify_checksums,
)
from mmrec.data.schema import (
    PAD_ID,
    CorruptRecordError,
    DatasetInfo,
    SchemaError,
)

AUTOTUNE = tf.data.AUTOTUNE
logger = logging.getLogger(__name__)

_ERROR_MODES = ("raise", "skip")
_VERIFY_MODES = ("checksum", "none")


def load(path: str, *, on_error: str = "raise", verify: str = "checksum") -> MultimodalDataset:
    """Opens an mmrec dataset folder.

    Args:
        path: a folder written by `mmrec data synth` (or any `DatasetWriter`).
        on_error: `"raise"` stops at the first bad record with an error naming the
            shard and record; `"skip"` drops bad records and reports how many were
            dropped (`dataset.skipped`, and a logged warning).
        verify: `"checksum"` compares every shard with the SHA-256 in
            `dataset.json` before anything is read; `"none"` skips that (the
            in-graph record checks still run).

    Example:

    ```python
    data = mmrec.data.load("tf_records/shapes")
    batch = next(iter(data.interactions("train", batch_size=32)))
    batch["history"].shape  # (32, max_history), padded with -1
    ```
    """
    return MultimodalDataset(path, on_error=on_error, verify=verify)


@dataclasses.dataclass
class Catalogue:
    """Every item decoded once, as tensors indexed by item id (row i is item i).

    Models gather content from here, so interaction batches only carry ids.
    """

    images: tf.Tensor | None  # uint8 [N, H, W, C]
    texts: tf.Tensor | None  # string [N]
    audio: tf.Tensor | None  # float32 [N, samples]
    labels: dict[str, np.ndarray]  # attribute → int32 [N]
    popularity: np.ndarray | None  # float32 [N], ground truth where known
    missing_items: list[int]  # ids whose record was skipped (rows are blank)

    @property
    def num_items(self) -> int:
        return len(next(iter(self.features().values())))

    def features(self) -> dict[str, tf.Tensor]:
        """The content features by modality name (what item encoders take)."""
        out = {"image": self.images, "text": self.texts, "audio": self.audio}
        return {k: v for k, v in out.items() if v is not None}


class MultimodalDataset:
    """A dataset folder opened for reading; see `load`."""

    def __init__(self, path: str, *, on_error: str = "raise", verify: str = "checksum"):
        if on_error not in _ERROR_MODES:
            raise ValueError(
                f"Expected on_error to be one of {_ERROR_MODES}. Received: on_error={on_error!r}"
            )
        if verify not in _VERIFY_MODES:
            raise ValueError(
                f"Expected verify to be one of {_VERIFY_MODES}. Received: verify={verify!r}"
            )
        self.path = os.path.abspath(path)
        self.info = DatasetInfo.read(self.path)
        self.on_error = on_error
        self.skipped: dict[str, int] = {}
        self._catalogue: Catalogue | None = None
        self._key_cache: dict[str, list[str]] = {}
        if verify == "checksum":
            verify_checksums(self.path, self.info)

    def __repr__(self) -> str:
        return (
            f"<MultimodalDataset '{self.info.name}' at {self.path}: {self.info.num_items} items, "
            f"{self.info.num_users} users, interactions {self.info.splits}>"
        )

    @property
    def metadata(self) -> DatasetInfo:
        return self.info

    @property
    def vocabulary_path(self) -> str | None:
        path = os.path.join(self.path, schema.VOCABULARY_FILE)
        return path if os.path.exists(path) else None

    # --- public pipelines -----------------------------------------------------------

    def items(
        self,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        seed: int = 0,
        repeat: bool = False,
        cache: bool = False,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """Batches of decoded items: `item_id`, each modality, and `label_<attribute>`."""
        ds = self._examples("items", shuffle=shuffle, seed=seed)
        return self._finish(ds, batch_size, shuffle, seed, repeat, cache, drop_remainder)

    def interactions(
        self,
        split: str,
        batch_size: int = 256,
        *,
        content: bool | list[str] | tuple[str, ...] = False,
        negatives: int = 0,
        history_content: bool | int = False,
        shuffle: bool | None = None,
        seed: int = 0,
        repeat: bool = False,
        cache: bool = False,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """Batches of `{"user_id", "history", "target"}` for one split.

        `history` is int32 [batch, max_history]: the most recent items, oldest first,
        right-padded with `PAD_ID`. Shuffled by default for "train" only.

        Args:
            content: also carry the targets' content, as `generation_pairs` does:
                ``True`` for every modality of the dataset, or a list of modality
                names; each becomes a key (`image` uint8 [batch, H, W, 3], `text`
                tf.string [batch], `audio` float32 [batch, samples]). Gathered per
                batch from the decoded catalogue (`catalogue()`, the content
                cache), so a model's training step sees only its batch's items.
            negatives: also carry this many uniformly sampled items per batch (mixed
                negative sampling): ``negatives`` = ``{"item_id": int32 [M], <the
                content modalities>}``; seeded, the same stream for the same seed.
            history_content: also carry the content of the items in the batch's
                histories, each once: ``True`` for all of them, an int K for a
                seeded random K of them (a cost that does not grow with the
                catalogue). ``history_items`` = ``{"item_id": int32 [U], <the
                content modalities>}`` and ``history_index`` int32 [batch,
                max_history], the position of each history item in
                ``history_items`` (-1: padding, or not among the K).
        """
        shuffle = (split == "train") if shuffle is None else shuffle
        modalities = self._content_modalities(content)
        if negatives < 0 or isinstance(negatives, bool):
            raise ValueError(f"Expected negatives >= 0. Received: negatives={negatives!r}")
        ds = self._examples(f"interactions-{self._split(split)}", shuffle=shuffle, seed=seed)
        ds = self._finish(ds, batch_size, shuffle, seed, repeat, cache, drop_remainder)
        if not isinstance(history_content, bool) and (
            not isinstance(history_content, int) or history_content < 0
        ):
            raise ValueError(
                "Expected history_content to be True, False or an int >= 0. "
                f"Received: history_content={history_content!r}"
            )
        if not modalities and not negatives and history_content is False:
            return ds
        features = self.catalogue().features()
        table = {m: features[m] for m in modalities}
        num_items = self.info.num_items

        def attach(step, batch):
            batch = {**batch, **{m: tf.gather(v, batch["target"]) for m, v in table.items()}}
            if negatives:
                ids = tf.random.stateless_uniform(
                    [negatives], seed=[seed, step], maxval=num_items, dtype=tf.int32
                )
                batch["negatives"] = {
                    "item_id": ids,
                    **{m: tf.gather(v, ids) for m, v in table.items()},
                }
            if history_content is not False:
                limit = None if history_content is True else int(history_content)
                ids, batch["history_index"] = history_items(
                    batch["history"], limit, [seed + 1, step]
                )
                batch["history_items"] = {
                    "item_id": ids,
                    **{m: tf.gather(v, ids) for m, v in table.items()},
                }
            return batch

        ds = ds.enumerate().map(lambda step, batch: attach(tf.cast(step, tf.int32), batch))
        return ds.prefetch(AUTOTUNE)

    def _content_modalities(self, content) -> tuple[str, ...]:
        available = tuple(self.info.modalities)
        if content is True:
            return available
        if content is False or content is None:
            return ()
        wanted = (content,) if isinstance(content, str) else tuple(content)
        unknown = [m for m in wanted if m not in available]
        if unknown:
            raise ValueError(
                f"Expected content modalities among the dataset's {list(available)}. "
                f"Received: content={list(wanted)}"
            )
        return wanted

    def generation_pairs(
        self,
        split: str,
        batch_size: int = 64,
        *,
        shuffle: bool | None = None,
        seed: int = 0,
        repeat: bool = False,
        drop_remainder: bool = False,
        exclude_targets=None,
    ) -> tf.data.Dataset:
        """(user history → the item that user chose) with the chosen item's content.

        Each element: `user_id`, `history`, `target`, the target's `image`/`text`/
        `audio` (whichever the dataset has) and its `label_<attribute>`s — what a
        personalised generator trains on.

        ``exclude_targets``: item ids whose pairs are left out (e.g. the items a
        captioner is judged on, so that they stay unseen).
        """
        shuffle = (split == "train") if shuffle is None else shuffle
        catalogue = self.catalogue()
        keep = None
        if exclude_targets is not None:
            excluded = np.asarray(exclude_targets, dtype=np.int64).reshape(-1)
            if excluded.size and (excluded.min() < 0 or excluded.max() >= catalogue.num_items):
                raise ValueError(
                    f"Expected exclude_targets to be item ids in [0, {catalogue.num_items}). "
                    f"Received: ids from {excluded.min()} to {excluded.max()}"
                )
            mask = np.ones(catalogue.num_items, dtype=bool)
            mask[excluded] = False
            keep = tf.constant(mask)
        content = dict(catalogue.features())
        content.update({schema.label_key(a): v for a, v in catalogue.labels.items()})

        def attach(example):
            gathered = {k: tf.gather(v, example["target"]) for k, v in content.items()}
            return {**example, **gathered}

        ds = self._examples(f"interactions-{self._split(split)}", shuffle=shuffle, seed=seed)
        if keep is not None:
            ds = ds.filter(lambda example: tf.gather(keep, example["target"]))
        ds = ds.map(attach, num_parallel_calls=AUTOTUNE)
        return self._finish(ds, batch_size, shuffle, seed, repeat, False, drop_remainder)

    def catalogue(self) -> Catalogue:
        """Decodes every item once (cached on this object)."""
        if self._catalogue is None:
            self._catalogue = self._build_catalogue()
        return self._catalogue

    def users(self) -> dict[str, np.ndarray]:
        """Ground-truth user preferences: `user_id` [U] and `pref_<attribute>` [U, k].

        Rows are ordered by user id; lists are right-padded with `PAD_ID`.
        """
        rows = _collect(self._examples("users", shuffle=False), what="user records")
        order = np.argsort(rows[schema.USER_ID])
        return {k: v[order] for k, v in rows.items()}

    def item_keys(self) -> list[str] | None:
        """External item keys by id: `item_keys()[i]` is the key of item i.

        None for a dataset without id maps (the embedded benchmarks).
        """
        return self._keys("items")

    def user_keys(self) -> list[str] | None:
        """External user keys by id: `user_keys()[u]` is the key of user u (or None)."""
        return self._keys("users")

    def user_items(self, split: str) -> dict[int, set[int]]:
        """Every item each user interacted with in `split` and the splits before it.

        Splits are ordered train < valid < test; the sets hold the histories and the
        targets of those splits' interaction records, so they are a user's *whole*
        history, not only the `max_history` most recent items a record carries.
        Users without records there are absent (use `.get(user_id, set())`).

        To exclude a user's known items when evaluating a split, take the split
        before it: `user_items("valid")` when scoring "test" targets,
        `user_items("train")` when scoring "valid" ones (plus the record's own history).

        Example:

        ```python
        seen = data.user_items("valid")  # {user_id: {item_id, ...}}
        ```
        """
        order = schema.SPLITS[: schema.SPLITS.index(self._split(split)) + 1]
        users, items = [], []
        for name in order:
            ds = self._examples(f"interactions-{name}", shuffle=False).batch(4096)
            for batch in ds.as_numpy_iterator():
                history, target = batch[schema.HISTORY], batch[schema.TARGET]
                both = np.concatenate([history, target[:, None]], axis=1)
                owner = np.repeat(batch[schema.USER_ID], both.shape[1])
                keep = both.ravel() != PAD_ID
                users.append(owner[keep])
                items.append(both.ravel()[keep])
        out: dict[int, set[int]] = {}
        if not users:
            return out
        pairs = np.unique(np.stack([np.concatenate(users), np.concatenate(items)], 1), axis=0)
        starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
        for start, end in zip(starts, np.r_[starts[1:], len(pairs)]):
            out[int(pairs[start, 0])] = set(pairs[start:end, 1].tolist())
        return out

    # --- plumbing ---------------------------------------------------------------------

    def _keys(self, kind: str) -> list[str] | None:
        if kind not in self.info.id_maps:
            return None
        if kind not in self._key_cache:
            path = os.path.join(self.path, self.info.id_maps[kind])
            with open(path, encoding="utf-8", newline="\n") as f:
                keys = f.read().split("\n")[:-1]
            expected = self.info.num_items if kind == "items" else self.info.num_users
            if len(keys) != expected:
                raise SchemaError(
                    f"{path}: expected {expected} keys (one per line, dataset.json "
                    f"num_{kind}). Received: {len(keys)}"
                )
            self._key_cache[kind] = keys
        return list(self._key_cache[kind])

    def _split(self, split: str) -> str:
        if split not in schema.SPLITS:
            raise ValueError(f"Expected split to be one of {schema.SPLITS}. Received: {split!r}")
        return split

    def _finish(self, ds, batch_size, shuffle, seed, repeat, cache, drop_remainder):
        if cache:
            ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(AUTOTUNE)

    def _examples(self, kind: str, *, shuffle: bool, seed: int = 0) -> tf.data.Dataset:
        """Parsed, validated, unbatched examples of one record kind."""
        if self.on_error == "skip":
            self._count_skipped(kind)
        ds = self.checked_records(kind, shuffle=shuffle, seed=seed)
        ds = ds.filter(lambda element: keep(element, self.on_error == "raise"))
        return ds.map(lambda element: element["features"])

    def checked_records(
        self, kind: str, *, shuffle: bool = False, seed: int = 0, missing_ok: bool = False
    ) -> tf.data.Dataset:
        """Every record of one kind as `check_records` yields it: `features`, `problem`
        ("" for a good record), `is_end`, `missing`, `unreadable` (what `validate` reads).

        A shard file that is missing is an error (`CorruptRecordError`, naming it), not
        a bad record, unless `missing_ok`; one deleted after this call stops the
        iteration (`keep`).
        """
        shards = self.info.shard_list(kind)
        files = [os.path.join(self.path, s.file) for s in shards]
        absent = [f for f in files if not os.path.exists(f)]
        if absent and not missing_ok:
            more = f" ({len(absent) - 1} more shards are missing)" if len(absent) > 1 else ""
            raise CorruptRecordError(f"{absent[0]}: {MISSING_SHARD}{more}")
        counts = tf.constant([s.records for s in shards], tf.int64)
        ds = tf.data.Dataset.from_tensor_slices((tf.range(len(files)), files, counts))
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed)
        ds = ds.interleave(
            shard_records,
            cycle_length=min(4, len(files)),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
        return check_records(ds, record_parser(kind.split("-")[0], self.info), len(files))

    def _count_skipped(self, kind: str) -> None:
        if kind in self.skipped:
            return
        try:
            good = self.checked_records(kind).reduce(
                tf.constant(0, tf.int64),
                lambda n, element: n + tf.cast(keep(element, False), tf.int64),
            )
        except tf.errors.InvalidArgumentError as e:
            raise CorruptRecordError(assertion_message(e)) from None
        expected = sum(s.records for s in self.info.shard_list(kind))
        self.skipped[kind] = expected - int(good)
        if self.skipped[kind]:
            logger.warning(
                "%s: skipped %d of %d %s records (corrupt or invalid); "
                "run `mmrec data validate %s` to list them.",
                self.path,
                self.skipped[kind],
                expected,
                kind,
                self.path,
            )

    def problems(self, kind: str) -> list[str]:
        """Every problem in one record kind's shards, one message each (empty if clean).

        A record that cannot be parsed or decoded gets its own message, with the reason
        (`unreadable_records`); a missing shard is a problem here, not an error.
        """
        bad = self.checked_records(kind, missing_ok=True).filter(lambda e: e["problem"] != "")
        bad = bad.map(lambda e: (e["problem"], e["unreadable"]))
        found = []
        for problem, unreadable in bad.as_numpy_iterator():
            problem = problem.decode("utf-8")
            if unreadable:
                # The first of the shard's "; "-joined problems is the count of unreadable
                # records: list each of them, with its reason, instead.
                file, _, rest = problem.partition(": record ")
                found += unreadable_records(file, kind.split("-")[0], self.info)
                rest = rest.split("; ", 1)[1:]
                problem = f"{file}: {rest[0]}" if rest else ""
            found += [problem] if problem else []
        return found

    def _build_catalogue(self) -> Catalogue:
        rows = _collect(self._examples("items", shuffle=False), what="item records")
        n = self.info.num_items
        ids = rows.pop(schema.ITEM_ID)
        duplicates, missing_ids = item_id_problems(ids, n)
        if duplicates or (missing_ids and self.on_error == "raise"):
            raise CorruptRecordError(f"{self.path}: {duplicates or missing_ids}")
        missing = sorted(set(range(n)) - set(ids.tolist()))

        def by_id(values: np.ndarray) -> np.ndarray:
            out = np.zeros((n,) + values.shape[1:], dtype=values.dtype)
            if values.dtype == object:  # strings: skipped items get empty text
                out[:] = b""
            out[ids] = values
            return out

        def tensor(key):
            return tf.constant(by_id(rows[key])) if key in rows else None

        labels = {
            a: by_id(rows[schema.label_key(a)]).astype(np.int32) for a in self.info.attributes
        }
        popularity = rows.get(schema.POPULARITY)
        return Catalogue(
            images=tensor(schema.IMAGE),
            texts=tensor(schema.TEXT),
            audio=tensor(schema.AUDIO),
            labels=labels,
            popularity=None if popularity is None else by_id(popularity),
            missing_items=missing,
        )


def history_items(history, limit, seed):
    """The distinct items of a batch of histories (all, or a seeded random ``limit`` of
    them) and where each history entry is among them.

    Returns:
        ``(ids int32 [U], index int32 [B, L])``: ``index[b, l]`` is the position of
        ``history[b, l]`` in ``ids``, -1 for padding and for items left out.
    """
    flat = tf.reshape(history, [-1])
    valid = flat >= 0
    unique, position = tf.unique(tf.boolean_mask(flat, valid))
    count = tf.shape(unique)[0]
    order = tf.random.experimental.stateless_shuffle(tf.range(count), seed=seed)
    if limit is not None:
        order = order[:limit]
    kept = tf.shape(order)[0]
    # new_position[j]: where unique item j went among the kept ones (-1: left out).
    new_position = tf.tensor_scatter_nd_update(tf.fill([count], -1), order[:, None], tf.range(kept))
    index = tf.tensor_scatter_nd_update(
        tf.fill(tf.shape(flat), -1),
        tf.where(valid),
        tf.gather(new_position, position),
    )
    return tf.gather(unique, order), tf.reshape(index, tf.shape(history))


_ASSERT_TEXT = re.compile(r"assertion failed: \[(.*?)\]\s*(\n|$)", re.S)


def assertion_message(error: tf.errors.OpError) -> str:
    """The problem a record check stopped iteration with (`keep`), without TF's wrapping."""
    match = _ASSERT_TEXT.search(error.message)
    return match.group(1).replace("\\'", "'") if match else error.message


def _collect(ds: tf.data.Dataset, what: str) -> dict[str, np.ndarray]:
    """Materialises a small dataset of feature dicts as stacked NumPy arrays."""
    ds = ds.padded_batch(4096, padding_values=_padding_values(ds.element_spec))
    parts: dict[str, list[np.ndarray]] = {}
    try:
        for batch in ds.as_numpy_iterator():
            for key, value in batch.items():
                parts.setdefault(key, []).append(value)
    except tf.errors.InvalidArgumentError as e:
        raise CorruptRecordError(assertion_message(e)) from None
    if not parts:
        raise SchemaError(f"Expected at least one of the {what}; received none.")
    out = {}
    for key, values in parts.items():
        width = max(v.shape[1] for v in values) if values[0].ndim == 2 else None
        if width is not None and values[0].dtype != np.uint8:
            values = [
                np.pad(v, ((0, 0), (0, width - v.shape[1])), constant_values=PAD_ID) for v in values
            ]
        out[key] = np.concatenate(values)
    return out


def _padding_values(spec):
    def pad(s):
        if s.dtype == tf.string:
            return tf.constant(b"")
        if s.dtype.is_integer:
            return tf.constant(PAD_ID, s.dtype) if s.dtype != tf.uint8 else tf.constant(0, s.dtype)
        return tf.constant(0, s.dtype)

    return tf.nest.map_structure(pad, spec)
