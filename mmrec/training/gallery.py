"""A static HTML gallery of generated multimodal items: one page, PNG and WAV files, no server.

Where it sits in the data flow: after generation. For each user, the generator
gives items in three modalities (an image, a description, a sound) with the
attributes it sampled, and independent judges say what they read in each
modality. `write_gallery` lays that out for a person: the user's recent real
items, then one card per generated item with the image, the text, an audio
player and a table of the judges' verdicts, ✓ where a verdict matches the
sampled attribute and ✗ where it does not, and a summary of agreement on top.

The page works offline from ``file://`` (inline CSS, relative links, no
scripts), is written atomically, and is byte-identical for the same input.
"""

from __future__ import annotations

import html
import numbers
import os
import shutil
import uuid

import numpy as np

from mmrec.data.tfrecord import encode_wav
from mmrec.formats import MODALITIES
from mmrec.training.callbacks import write_png

INDEX = "index.html"
MEDIA = "media"
# What a folder may hold for `write_gallery` to replace it: a previous gallery.
_GALLERY_FILES = frozenset({INDEX, MEDIA})
_ITEM_KEYS = ("image", "text", "audio", "attributes", "verdicts")
_AGREE, _DISAGREE = "✓", "✗"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; background: #fafafa; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; } h3 { font-size: 1rem; }
img { image-rendering: pixelated; image-rendering: crisp-edges; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; }
.history { display: flex; flex-wrap: wrap; gap: 0.5rem; }
.history figure { margin: 0; text-align: center; font-size: 0.8rem; color: #555; }
.history img { width: 64px; height: 64px; }
.items { display: flex; flex-wrap: wrap; gap: 1rem; }
.item { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.8rem; }
.item h4 { margin: 0 0 0.5rem; }
.item img { width: 160px; height: 160px; display: block; }
.item audio { width: 100%; margin: 0.5rem 0; }
.text { font-style: italic; max-width: 24rem; }
.attributes { font-size: 0.9rem; } .attributes td { white-space: nowrap; }
.agree { color: #1a7f37; } .disagree { color: #c62828; } .missing { color: #999; }
"""


def write_gallery(
    folder, users, title: str = "mmrec: generated items", sample_rate: int = 16000
) -> str:
    """Writes the gallery page of generated items; returns the path of its ``index.html``.

    Writes ``folder/index.html`` and the images (PNG) and sounds (16-bit PCM
    WAV) under ``folder/media/``. Open the page in any browser, straight from
    disk. The folder is written next to ``folder`` and renamed into place, so
    it is either the old gallery or the new one, never half of one; an existing
    ``folder`` is replaced only if it is empty or a previous gallery. Input is
    checked before anything is written.

    Args:
        folder: where the gallery goes.
        users: a list of dicts, one per user:
            ``{"user_id": int, "history": [{"item_id": int, "image": ...}, ...],
            "items": [item, ...]}``; ``history`` holds the user's recent real
            items, shown as thumbnails. Each generated ``item`` is a dict with
            ``"image"`` (uint8 ``[H, W, 3]``), ``"text"`` (str), ``"audio"``
            (a 1-D float waveform in [-1, 1]), ``"attributes"`` (the sampled
            ``{name: class name}``) and ``"verdicts"`` (``{modality: {name:
            class name}}``, modalities among ``"image"``, ``"text"``,
            ``"audio"``, names among the attributes; ``{}`` without judges).
        title: the page's title.
        sample_rate: the sounds' sample rate in Hz.

    Example:

    ```python
    import numpy as np

    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000).astype("float32")
    item = {
        "image": red,
        "text": "a small red circle",
        "audio": tone,
        "attributes": {"shape": "circle", "colour": "red"},
        "verdicts": {"image": {"shape": "circle", "colour": "red"},
                     "audio": {"colour": "blue"}},
    }
    path = write_gallery("gallery", [{"user_id": 0, "history": [], "items": [item]}])
    # open gallery/index.html: the image ✓ on both attributes, the sound ✗ on colour
    ```
    """
    if not isinstance(title, str):
        raise ValueError(f"Expected title to be a string. Received: title={title!r}")
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, numbers.Integral)
        or sample_rate <= 0
    ):
        raise ValueError(
            f"Expected sample_rate to be a positive integer (Hz). Received: {sample_rate!r}"
        )
    users = _checked_users(users)
    folder = os.path.abspath(os.fspath(folder))
    _check_replaceable(folder)

    temporary = f"{folder}.partial-{uuid.uuid4().hex[:8]}"
    try:
        os.makedirs(os.path.join(temporary, MEDIA))
        page = _render(users, title, sample_rate, temporary)
        with open(os.path.join(temporary, INDEX), "w", encoding="utf-8", newline="\n") as f:
            f.write(page)
        _move_into_place(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return os.path.join(folder, INDEX)


# --- Checking the input -------------------------------------------------------------------


def _checked_users(users) -> list[dict]:
    """The users with images and sounds as NumPy arrays, or a ValueError naming the bad value."""
    if not isinstance(users, (list, tuple)) or not users:
        raise ValueError(
            "Expected users to be a non-empty list of dicts "
            '({"user_id": ..., "history": [...], "items": [...]}). '
            f"Received: {_short(users)}"
        )
    checked, seen = [], {}
    for u, user in enumerate(users):
        where = f"users[{u}]"
        _check_keys(user, ("user_id", "history", "items"), where)
        user_id = _check_id(user["user_id"], f"{where}['user_id']")
        if user_id in seen:
            raise ValueError(
                f"Expected each user once. Received: user_id={user_id} in "
                f"users[{seen[user_id]}] and {where}"
            )
        seen[user_id] = u
        history = _check_list(user["history"], f"{where}['history']")
        items = _check_list(user["items"], f"{where}['items']")
        checked.append(
            {
                "user_id": user_id,
                "history": [_checked_history(h, f"{where}['history'][{i}]") for i, h in history],
                "items": [_checked_item(item, f"{where}['items'][{i}]") for i, item in items],
            }
        )
    return checked


def _checked_history(entry, where) -> dict:
    _check_keys(entry, ("item_id", "image"), where)
    return {
        "item_id": _check_id(entry["item_id"], f"{where}['item_id']"),
        "image": _check_image(entry["image"], f"{where}['image']"),
    }


def _checked_item(item, where) -> dict:
    _check_keys(item, _ITEM_KEYS, where)
    if not isinstance(item["text"], str):
        raise ValueError(
            f"Expected {where}['text'] to be a string. Received: {_short(item['text'])}"
        )
    attributes = _check_names(item["attributes"], f"{where}['attributes']")
    verdicts = item["verdicts"]
    if not isinstance(verdicts, dict):
        raise ValueError(
            f"Expected {where}['verdicts'] to be a dict {{modality: {{attribute: class name}}}}. "
            f"Received: {_short(verdicts)}"
        )
    for modality, read in verdicts.items():
        if modality not in MODALITIES:
            raise ValueError(
                f"Expected the modalities of {where}['verdicts'] to be among {MODALITIES}. "
                f"Received: {modality!r}"
            )
        read = _check_names(read, f"{where}['verdicts'][{modality!r}]")
        unknown = sorted(set(read) - set(attributes))
        if unknown:
            raise ValueError(
                f"Expected the attributes in {where}['verdicts'][{modality!r}] to be among "
                f"the sampled ones {sorted(attributes)}. Received: {unknown}"
            )
    return {
        "image": _check_image(item["image"], f"{where}['image']"),
        "text": item["text"],
        "audio": _check_audio(item["audio"], f"{where}['audio']"),
        "attributes": attributes,
        # In MODALITIES order, so that the same judges give the same columns.
        "verdicts": {m: dict(verdicts[m]) for m in MODALITIES if m in verdicts},
    }


def _check_keys(value, keys, where) -> None:
    if not isinstance(value, dict):
        raise ValueError(
            f"Expected {where} to be a dict with keys {list(keys)}. Received: {_short(value)}"
        )
    missing = [key for key in keys if key not in value]
    if missing:
        raise ValueError(
            f"Expected {where} to have the keys {list(keys)}. Received: a dict without "
            f"{missing} (keys: {sorted(map(str, value))})"
        )


def _check_list(value, where) -> list[tuple[int, object]]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"Expected {where} to be a list. Received: {_short(value)}")
    return list(enumerate(value))


def _check_id(value, where) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"Expected {where} to be an integer >= 0. Received: {value!r}")
    return int(value)


def _check_names(value, where) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(
            f"Expected {where} to be a dict of attribute name → class name (strings). "
            f"Received: {_short(value)}"
        )
    return dict(value)


def _check_image(value, where) -> np.ndarray:
    image = np.asarray(value)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
        raise ValueError(
            f"Expected {where} to be a uint8 image of shape [H, W, 3]. "
            f"Received: dtype={image.dtype}, shape={image.shape}"
        )
    return image


def _check_audio(value, where) -> np.ndarray:
    audio = np.asarray(value)
    if not np.issubdtype(audio.dtype, np.floating) or audio.ndim != 1 or audio.size == 0:
        raise ValueError(
            f"Expected {where} to be a 1-D float waveform (mono samples). "
            f"Received: dtype={audio.dtype}, shape={audio.shape}"
        )
    if not np.all(np.isfinite(audio)) or np.abs(audio).max() > 1.0:
        raise ValueError(
            f"Expected {where} to have samples in [-1, 1]. "
            f"Received: values in [{np.min(audio):.3g}, {np.max(audio):.3g}]"
        )
    return audio.astype(np.float32)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{type(value).__name__} {text[:60]}…"


# --- Writing ------------------------------------------------------------------------------


def _check_replaceable(folder: str) -> None:
    """Refuses to replace a folder that holds more than a previous gallery."""
    if not os.path.exists(folder):
        return
    if not os.path.isdir(folder):
        raise ValueError(f"Expected folder to be a directory. Received: a file, {folder!r}")
    others = sorted(set(os.listdir(folder)) - _GALLERY_FILES)
    if others:
        raise ValueError(
            f"Expected folder to be new, empty or a previous gallery ({INDEX} and {MEDIA}/), "
            f"which it replaces. Received: {folder!r}, which also holds {others[:5]}"
        )


def _move_into_place(temporary: str, folder: str) -> None:
    """Renames the finished gallery into place (the old one, if any, is set aside first)."""
    if os.path.exists(folder):
        old = f"{folder}.old-{uuid.uuid4().hex[:8]}"
        os.rename(folder, old)
        os.rename(temporary, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(temporary, folder)


def _render(users, title, sample_rate, root) -> str:
    """The page's HTML; writes each image and sound under ``root/media`` on the way."""

    def save_png(name, image):
        write_png(os.path.join(root, MEDIA, name), image)
        return f"{MEDIA}/{name}"

    def save_wav(name, audio):
        with open(os.path.join(root, MEDIA, name), "wb") as f:
            f.write(encode_wav(audio, sample_rate))
        return f"{MEDIA}/{name}"

    sections = []
    for user in users:
        uid = user["user_id"]
        thumbs = [
            _figure(save_png(f"user{uid}_history{i}.png", h["image"]), f"item {h['item_id']}")
            for i, h in enumerate(user["history"])
        ]
        cards = [
            _card(
                item,
                k,
                save_png(f"user{uid}_item{k}.png", item["image"]),
                save_wav(f"user{uid}_item{k}.wav", item["audio"]),
            )
            for k, item in enumerate(user["items"])
        ]
        history = "\n".join(thumbs) if thumbs else '<p class="missing">no history</p>'
        sections.append(
            f'<section class="user" id="user-{uid}">\n<h2>User {uid}</h2>\n'
            f'<h3>Recent items</h3>\n<div class="history">\n{history}\n</div>\n'
            f'<h3>Generated for user {uid}</h3>\n<div class="items">\n'
            + "\n".join(cards)
            + "\n</div>\n</section>"
        )
    title = html.escape(title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="generator" content="mmrec gallery">\n'
        # An empty icon: the browser asks for no favicon.ico (which would not exist).
        '<link rel="icon" href="data:,">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n{_summary(users)}\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def _figure(src, caption) -> str:
    caption = html.escape(caption)
    return f'<figure><img src="{src}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def _card(item, k, image_src, audio_src) -> str:
    modalities = list(item["verdicts"])
    head = "".join(f"<th>{html.escape(m)} judge</th>" for m in modalities)
    rows = []
    for name, sampled in item["attributes"].items():
        cells = []
        for modality in modalities:
            read = item["verdicts"][modality].get(name)
            data = f'data-attribute="{html.escape(name)}" data-modality="{modality}"'
            if read is None:
                cells.append(f'<td class="missing" {data}>—</td>')
                continue
            agree = read == sampled
            mark, kind = (_AGREE, "agree") if agree else (_DISAGREE, "disagree")
            cells.append(
                f'<td class="{kind}" {data}>{html.escape(read)} '
                f'<span class="mark" title="{kind}s with the sampled {html.escape(name)}">'
                f"{mark}</span></td>"
            )
        rows.append(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(sampled)}</td>{''.join(cells)}</tr>"
        )
    caption = html.escape(item["text"])
    return (
        f'<article class="item">\n<h4>Item {k + 1}</h4>\n'
        f'<img src="{image_src}" alt="{caption}">\n'
        f'<p class="text">{caption}</p>\n'
        f'<audio controls preload="metadata" src="{audio_src}"></audio>\n'
        f'<table class="attributes">\n<tr><th>attribute</th><th>sampled</th>{head}</tr>\n'
        + "\n".join(rows)
        + "\n</table>\n</article>"
    )


def _summary(users) -> str:
    """Per attribute: how often each judge, and all judges at once, read the sampled class."""
    counts: dict[str, dict[str, list[int]]] = {}  # attribute → column → [agree, judged]
    columns = [m for m in MODALITIES if any(m in i["verdicts"] for u in users for i in u["items"])]
    num_items = 0
    for user in users:
        for item in user["items"]:
            num_items += 1
            for name, sampled in item["attributes"].items():
                reads = {m: v[name] for m, v in item["verdicts"].items() if name in v}
                if not reads:
                    continue
                row = counts.setdefault(name, {})
                for column, agree in [(m, r == sampled) for m, r in reads.items()] + [
                    ("all", all(r == sampled for r in reads.values()))
                ]:
                    row.setdefault(column, [0, 0])
                    row[column][0] += agree
                    row[column][1] += 1
    lead = f"<p>{len(users)} users, {num_items} generated items.</p>"
    if not counts:
        return f'<section class="summary">\n{lead}\n<p class="missing">No judges.</p>\n</section>'

    def share(pair):
        if pair is None:
            return "<td>—</td>"
        agree, judged = pair
        return f"<td>{agree}/{judged} ({100 * agree / judged:.0f}%)</td>"

    head = "".join(f"<th>{m} judge</th>" for m in columns)
    rows = [
        f'<tr data-attribute="{html.escape(name)}"><th>{html.escape(name)}</th>'
        + "".join(share(row.get(m)) for m in columns)
        + f"{share(row['all'])}</tr>"
        for name, row in counts.items()
    ]
    return (
        f'<section class="summary">\n{lead}\n'
        "<p>How often the judges read the sampled attribute in each modality, and how often "
        "all modalities agree with it:</p>\n"
        f"<table>\n<tr><th>attribute</th>{head}<th>all modalities agree</th></tr>\n"
        + "\n".join(rows)
        + "\n</table>\n</section>"
    )
