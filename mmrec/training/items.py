"""Complete items from trained runs: assemble a `MultimodalItemGenerator`, judge it, show it.

Where it sits in the data flow: after an image run (``mmrec train gan|vae``), a
text run (``mmrec train text``) and an audio run (``mmrec train audio``), each
conditioned on attributes or users. `assemble_items` puts them behind one
`MultimodalItemGenerator` (one sampled attribute set drives all three), trains
the independent judges it lacks (image, text, audio: each on real content only),
measures cross-modal consistency and personalisation on test users
(`mmrec.evaluation.items`), and writes an item folder::

    OUT/model.keras         the item generator (mmrec export / generate / serve it)
    OUT/judges/<m>.keras    the image, text and audio judges
    OUT/metrics.json        the consistency report
    OUT/gallery/index.html  a page of complete items for a few users (`item_gallery`)

`mmrec item` and the quick start call it.
"""

from __future__ import annotations

import os

import numpy as np

from mmrec.training.runs import MODEL_FILE, load_run_model, write_json

JUDGES_DIR = "judges"
GALLERY_DIR = "gallery"


def train_item_judges(data, given=None, seed=0, epochs=None) -> dict:
    """``{"image": AttributeJudge, "text": TextJudge, "audio": AudioJudge}``, each trained on
    real content only, except those ``given`` (``{modality: a trained judge, or its
    .keras file or run folder}``) which are reused.

    ``epochs``: ``{modality: epochs}`` overriding the judges' defaults.
    """
    from mmrec.evaluation.audio import train_audio_judge
    from mmrec.evaluation.generation import train_judge
    from mmrec.evaluation.text import train_text_judge

    epochs = epochs or {}
    judges = {
        modality: load_run_model(judge) if isinstance(judge, str) else judge
        for modality, judge in (given or {}).items()
        if judge is not None
    }
    trainers = {"image": train_judge, "text": train_text_judge}
    if "audio" in data.info.modalities:
        trainers["audio"] = train_audio_judge
    for modality, trainer in trainers.items():
        if modality not in judges:
            print(f"training the {modality} judge on real items", flush=True)
            result = trainer(data, seed=seed, **_epochs(epochs, modality))
            # The image and audio trainers also return the held-out accuracy.
            judges[modality] = result[0] if isinstance(result, tuple) else result
    return {m: judges[m] for m in ("image", "text", "audio") if m in judges}


def run_judges(text_run, audio_run) -> dict:
    """The judges that text and audio run folders kept (``text_judge.keras``,
    ``audio_judge.keras``), as paths by modality."""
    found = {}
    for modality, run in (("text", text_run), ("audio", audio_run)):
        path = os.path.join(run, f"{modality}_judge.keras") if isinstance(run, str) else ""
        if os.path.isfile(path):
            found[modality] = path
    return found


READABLE_ACCURACY = 0.9  # a judge reads an attribute if it gets it right on real held-out items


def readable_attributes(data, judges, threshold=READABLE_ACCURACY) -> dict[str, list[str]]:
    """The attributes each modality shows: those its judge reads on real held-out items with
    accuracy >= ``threshold`` (a sound has a pitch and pulses, not a size)."""
    from mmrec.evaluation.audio import audio_held_out_accuracy
    from mmrec.evaluation.generation import held_out_accuracy
    from mmrec.evaluation.text import text_judge_held_out_accuracy

    accuracy = {
        "image": held_out_accuracy,
        "text": text_judge_held_out_accuracy,
        "audio": audio_held_out_accuracy,
    }
    return {
        modality: [n for n, a in accuracy[modality](judge, data).items() if a >= threshold]
        for modality, judge in judges.items()
    }


def _epochs(epochs, modality) -> dict:
    return {"epochs": epochs[modality]} if modality in epochs else {}


def item_gallery(
    item_generator, data, folder, user_ids, judges=None, num=2, seed=0, readable=None
) -> str:
    """Writes the gallery page (`mmrec.training.gallery`) of ``num`` items for each user.

    Each user's recent real items (their test-time history) come first; each
    generated item shows its image, text and sound, the attributes it was made
    of and what each judge reads in its modality — only the attributes that
    modality shows (``readable``: `readable_attributes`, computed here when
    ``None``; a sound has no size). Returns the page's path.
    """
    from mmrec.training.gallery import write_gallery
    from mmrec.training.samples import user_histories

    histories = user_histories(data, user_ids)
    items = item_generator.generate_item(list(histories.values()), num=num, seed=seed)
    names = data.info.attributes
    judges = judges or {}
    if readable is None and judges:
        readable = readable_attributes(data, judges)
    verdicts = {}
    for modality, judge in judges.items():
        read = judge.predict_attributes(items[modality])
        verdicts[modality] = {n: v for n, v in read.items() if n in readable[modality]}
    images = data.catalogue().images.numpy()
    users = []
    for u, (user, history) in enumerate(histories.items()):
        rows = range(u * num, (u + 1) * num)
        users.append(
            {
                "user_id": int(user),
                "history": [{"item_id": i, "image": images[i]} for i in history[-8:]],
                "items": [_gallery_item(items, verdicts, names, row) for row in rows],
            }
        )
    return write_gallery(folder, users, sample_rate=item_generator.sample_rate)


def write_item_files(folder, items, prefixes, sample_rate) -> list[str]:
    """Writes each item as ``<prefix>.png``, ``<prefix>.txt`` and ``<prefix>.wav``; returns paths.

    ``items``: `MultimodalItemGenerator.generate_item` output (or the same keys
    decoded from a ``generate_item`` response), one prefix per row.
    """
    from mmrec.data.tfrecord import encode_wav
    from mmrec.training.callbacks import write_png

    if len(prefixes) != len(items["text"]):
        raise ValueError(
            f"Expected one name per item. Received: {len(prefixes)} names for "
            f"{len(items['text'])} items"
        )
    os.makedirs(folder, exist_ok=True)
    written = []
    for row, prefix in enumerate(prefixes):
        base = os.path.join(folder, prefix)
        write_png(f"{base}.png", items["image"][row])
        with open(f"{base}.txt", "w", encoding="utf-8") as f:
            f.write(items["text"][row] + "\n")
        with open(f"{base}.wav", "wb") as f:
            f.write(encode_wav(np.clip(items["audio"][row], -1.0, 1.0), sample_rate))
        written += [f"{base}.png", f"{base}.txt", f"{base}.wav"]
    return written


def _gallery_item(items, verdicts, names, row) -> dict:
    attributes = items["attributes"]
    return {
        "image": items["image"][row],
        "text": items["text"][row],
        "audio": np.clip(items["audio"][row], -1.0, 1.0),
        "attributes": {n: names[n][int(attributes[n][row])] for n in attributes},
        "verdicts": {
            m: {n: names[n][int(read[n][row])] for n in read if n in attributes}
            for m, read in verdicts.items()
        },
    }


def assemble_items(
    data,
    out,
    image,
    text,
    audio,
    judge=None,
    temperature=1.0,
    num_users=200,
    gallery_users=4,
    seed=0,
    judge_epochs=None,
) -> dict:
    """Assembles, judges and shows a complete-item generator; returns the report.

    Args:
        data: the dataset the runs were trained on.
        out: the item folder to write (module docstring).
        image, text, audio: run folders (or ``.keras`` files, or the models).
        judge: an image judge run folder (or model) to reuse; ``None`` trains one. The
            text and audio judges that the text and audio run folders kept
            (`run_judges`) are reused too; the others are trained here.
        temperature: the item generator's preference temperature.
        num_users: test users in the consistency report (one item each).
        gallery_users: test users shown in the gallery (two items each).
        seed: seeds the judges' training and the items.
        judge_epochs: ``{modality: epochs}`` for the judges trained here.
    """
    from mmrec.evaluation.items import evaluate_item_generation, held_out_users
    from mmrec.models.item_generation import MultimodalItemGenerator

    parts = [load_run_model(part) for part in (image, text, audio)]
    items = MultimodalItemGenerator(*parts, temperature=temperature, name="item_generator")
    os.makedirs(os.path.join(out, JUDGES_DIR), exist_ok=True)
    items.save(os.path.join(out, MODEL_FILE))
    given = {**run_judges(text, audio), "image": judge}
    judges = train_item_judges(data, given, seed=seed, epochs=judge_epochs)
    for modality, model in judges.items():
        model.save(os.path.join(out, JUDGES_DIR, f"{modality}.keras"))
    readable = readable_attributes(data, judges)
    report = evaluate_item_generation(items, data, judges, num_users, seed, readable)
    report["readable_attributes"] = readable
    user_ids, _, _ = held_out_users(data, gallery_users)
    report["gallery"] = item_gallery(
        items,
        data,
        os.path.join(out, GALLERY_DIR),
        list(user_ids),
        judges,
        seed=seed,
        readable=readable,
    )
    write_json(os.path.join(out, "metrics.json"), report)
    return report


def load_item_judges(folder) -> dict:
    """The judges an item folder holds (``{}`` when there are none)."""
    root = os.path.join(folder, JUDGES_DIR)
    if not os.path.isdir(root):
        return {}
    return {
        name[: -len(".keras")]: load_run_model(os.path.join(root, name))
        for name in sorted(os.listdir(root))
        if name.endswith(".keras")
    }
