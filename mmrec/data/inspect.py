"""Looking at a dataset: a text summary, sample items as text, a contact-sheet PNG of items,
and the checks of `mmrec data validate` that go beyond single records."""

from __future__ import annotations

import os
import textwrap

import numpy as np

from mmrec.data import schema
from mmrec.data.pipeline import MultimodalDataset
from mmrec.data.vocabulary import RESERVED_TOKENS


def preference_hit_rates(data: MultimodalDataset, split: str = "test") -> dict[str, float] | None:
    """How often a split's targets match their user's favourites on every strong preference.

    Strong preferences: `DatasetInfo.strong_preferences`. Returned next to the rate
    for uniformly random items: the gap is what a recommender (or a personalised
    generator) can learn. None without ground truth.
    """
    info = data.info
    prefs = list(info.strong_preferences)
    if not prefs:
        return None
    labels = data.catalogue().labels
    users = data.users()
    matches_target, matches_random = [], []
    rng = np.random.default_rng(0)
    for batch in data.interactions(split, batch_size=4096, shuffle=False).as_numpy_iterator():
        uid, target = batch["user_id"], batch["target"]
        random_items = rng.integers(0, info.num_items, len(target))
        for items, out in ((target, matches_target), (random_items, matches_random)):
            hit = np.ones(len(items), dtype=bool)
            for a in prefs:
                hit &= (labels[a][items][:, None] == users[f"pref_{a}"][uid]).any(axis=1)
            out.append(hit)
    return {
        f"{split}_targets": float(np.concatenate(matches_target).mean()),
        "random_items": float(np.concatenate(matches_random).mean()),
        "attributes": prefs,
    }


def summary(data: MultimodalDataset) -> str:
    info = data.info
    lines = [
        f"dataset      {info.name}  ({data.path})",
        f"schema       version {info.schema_version}; modalities: {', '.join(info.modalities)}",
        f"items        {info.num_items} ({len(info.cold_items)} cold: never in training sequences)",
        f"users        {info.num_users}",
        "interactions " + ", ".join(f"{k}={v}" for k, v in info.splits.items()),
        f"history      up to {info.max_history} items, padded with -1",
    ]
    if info.image_size:
        lines.append(f"image        {info.image_size}x{info.image_size}x{info.image_channels} PNG")
    if info.audio_sample_rate:
        lines.append(
            f"audio        mono 16-bit WAV, {info.audio_sample_rate} Hz, "
            f"{info.audio_samples} samples"
        )
    labels = data.catalogue().labels
    for attribute, classes in info.attributes.items():
        counts = np.bincount(labels[attribute], minlength=len(classes))
        shown = ", ".join(f"{c}={n}" for c, n in zip(classes, counts))
        lines.append(f"attribute    {attribute}: {shown}")
    for kind, shards in info.shards.items():
        records = sum(s.records for s in shards)
        lines.append(f"shards       {kind}: {len(shards)} file(s), {records} records")
    if data.vocabulary_path:
        with open(data.vocabulary_path, encoding="utf-8") as f:
            lines.append(f"vocabulary   {sum(1 for _ in f)} WordPiece tokens (vocab.txt)")
    if info.id_maps:
        files = ", ".join(info.id_maps[k] for k in sorted(info.id_maps))
        lines.append(f"id maps      {files} (external keys; line i = id i)")
    for kind, reasons in info.generator.get("dropped", {}).items():
        for reason, count in reasons.items():
            lines.append(f"dropped      {count} {kind}: {reason}")
    rates = preference_hit_rates(data)
    if rates:
        lines.append(
            f"ground truth test targets matching favourite {' and '.join(rates['attributes'])}: "
            f"{rates['test_targets']:.3f} (random items: {rates['random_items']:.3f})"
        )
    return "\n".join(lines)


def sample_items(data: MultimodalDataset, samples: int = 8, seed: int = 0) -> str:
    """A few random items as text lines: id, key, attribute values and the item's text."""
    catalogue = data.catalogue()
    keys = data.item_keys()
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(catalogue.num_items, min(samples, catalogue.num_items), False))
    texts = catalogue.texts.numpy() if catalogue.texts is not None else None
    lines = []
    for i in ids:
        names = [data.info.attributes[a][catalogue.labels[a][i]] for a in data.info.attributes]
        line = f"#{i}" + (f" [{keys[i]}]" if keys else "")
        if names:
            line += " " + "/".join(names)
        if texts is not None:
            line += ": " + textwrap.shorten(texts[i].decode("utf-8"), 100)
        lines.append(line)
    return "\n".join(lines)


def vocabulary_problem(data: MultimodalDataset) -> str | None:
    """What is wrong with the vocabulary of a dataset with text (None when nothing is)."""
    if "text" not in data.info.modalities:
        return None
    path = os.path.join(data.path, schema.VOCABULARY_FILE)
    fix = (
        "re-create the dataset with `mmrec data import`, which learns one, or write one with "
        "mmrec.data.vocabulary.learn_wordpiece_vocabulary and save_vocabulary"
    )
    if not os.path.exists(path):
        return f"{path} is missing: a dataset with text needs a WordPiece vocabulary; {fix}."
    with open(path, encoding="utf-8") as f:
        tokens = f.read().split("\n")
    if tokens[: len(RESERVED_TOKENS)] != list(RESERVED_TOKENS):
        return (
            f"{path}: expected the reserved tokens {list(RESERVED_TOKENS)} first (the padding "
            f"id must be 0). Received: {tokens[: len(RESERVED_TOKENS)]}; {fix}."
        )
    return None


def write_contact_sheet(
    data: MultimodalDataset, path: str, samples: int = 24, columns: int = 6, seed: int = 0
) -> str:
    """A PNG grid of randomly chosen items, each with its id, labels and description."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    catalogue = data.catalogue()
    if catalogue.images is None:
        raise ValueError(f"{data.path}: the dataset has no images to put on a contact sheet.")
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(catalogue.num_items, min(samples, catalogue.num_items), False))
    rows = int(np.ceil(len(ids) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.9 * rows), squeeze=False)
    images = catalogue.images.numpy()
    texts = catalogue.texts.numpy() if catalogue.texts is not None else None
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, ids):
        ax.imshow(images[i].squeeze(), cmap="gray", interpolation="nearest")
        names = [data.info.attributes[a][catalogue.labels[a][i]] for a in data.info.attributes]
        caption = f"#{i} " + "/".join(names)
        if texts is not None:
            caption += "\n" + textwrap.fill(texts[i].decode("utf-8"), 28)
        ax.set_title(caption, fontsize=7, loc="left")
    figure.suptitle(f"{data.info.name}: {len(ids)} of {catalogue.num_items} items", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
