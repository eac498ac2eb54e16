"""`quickstart`: the whole pipeline, end to end, in at most 10 minutes on 2 CPU cores.

data (the shapes benchmark) → recommender → judge → user-conditioned cGAN and
text generator (conditioned on the recommender's frozen user tower) → an
attribute-conditioned audio generator → complete items (one attribute set
sampled from a user's predicted preferences drives the picture, the
description and the sound; judged for consistency, shown in a gallery page) →
a sample grid and a description per user → SavedModels for TF Serving → a
summary. Every model trains with its ``"tiny"`` config through
`mmrec.training.train`, so each step leaves a run folder like `mmrec train`
does; run again, finished steps are reused and an interrupted one resumes.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from mmrec.data.schema import preference_key
from mmrec.training.callbacks import image_grid, write_png
from mmrec.training.reports import generation_table, text_generation_table
from mmrec.training.runner import RunResult, train_or_reuse
from mmrec.training.runs import load_run_model, read_json

BUDGET_MINUTES = 10
STEPS = ("data", "recommender", "judge", "gan", "text", "audio", "item", "samples", "export")
EXPORT_NAMES = {
    "recommender": "quickstart_rec",
    "gan": "quickstart_cgan",
    "text": "quickstart_text",
    "item": "quickstart_item",
}
# What the quick start sets on top of the "tiny" presets: descriptions for users; no
# ID-only baseline beside the recommender, and no separate judged evaluation of the
# audio run (the complete items' step judges the sounds): their time goes to the
# generators.
OVERRIDES = {
    "text": {"condition": "user"},
    "recommender": {"id_only_baseline": False},
    "audio": {"judge_epochs": None},
}
# Epochs of the judges the complete items' step trains (the image judge and the text
# run's are reused): the audio judge reads real sounds perfectly after 8.
ITEM_JUDGE_EPOCHS = {"audio": 8, "text": 3}
# A few steps per model: checks that everything runs, in a minute or two.
SMOKE = {
    "recommender": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 32},
    "judge": {"epochs": 1},
    "gan": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 16, "judge_epochs": 1},
    "text": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 16, "judge_epochs": 1},
    "audio": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 16, "judge_epochs": 1},
}
SAMPLE_USERS = 4
ITEM_USERS = 200  # test users whose complete items are judged for consistency
# The complete items' preference temperature: the quick start's preference head (on a
# tiny recommender's user tower) is flat; at 0.5 its samples hit the users' favourites
# about as often as their own next items do (docs/items.md).
ITEM_TEMPERATURE = 0.5


def quickstart(
    out="runs/quickstart", data="tf_records/shapes", export_dir="savedmodels", seed=0, smoke=False
) -> dict:
    """Runs the quick start and returns its summary (also written to ``out/summary.json``).

    Args:
        out: the folder of the runs (``recommender/``, ``judge/``, ``gan/``, ``vae/``,
            ``text/``, ``samples/``).
        data: the dataset folder; the shapes benchmark is synthesised there if absent.
        export_dir: where the SavedModels go (TF Serving layout, ``models.config``).
        seed: seeds data order, weights and noise.
        smoke: two steps per model (checks that everything runs; numbers mean nothing).

    Example:

    ```python
    summary = quickstart()   # or: mmrec quickstart
    summary["ranking"]["recommender"]["overall"]["recall@20"]
    ```
    """
    import mmrec

    start = time.perf_counter()
    progress = _Progress(start)
    print(
        f"mmrec quickstart: data → recommender → judge → user-conditioned cGAN and text "
        f"generator → audio generator → complete items for users (image + text + sound), "
        f"judged and shown in a gallery → sample grids and descriptions → SavedModels.\n"
        f"It takes at most {BUDGET_MINUTES} minutes on 2 CPU cores"
        f"{' (smoke run: a few steps per model)' if smoke else ''}. "
        f"Runs: {out}/  exports: {export_dir}/\n",
        flush=True,
    )
    os.makedirs(out, exist_ok=True)

    progress.step("data", f"the shapes benchmark in {data}")
    if os.path.exists(os.path.join(data, "dataset.json")):
        print(f"using the dataset in {data}")
    else:
        info = mmrec.data.write_shapes(data)
        print(f"wrote {data}: {info.num_items} items, {info.num_users} users, {info.splits}")
    dataset = mmrec.data.load(data)

    def run(kind, message, **kwargs):
        progress.step(kind, message)
        config = {"preset": "tiny", **OVERRIDES.get(kind, {}), **(SMOKE[kind] if smoke else {})}
        return train_or_reuse(kind, dataset, os.path.join(out, kind), config, seed, **kwargs)

    rec = run("recommender", "the multimodal two-tower recommender (image + text)")
    judge = run("judge", "the judge of generated images (a CNN on real items)")
    gan = run(
        "gan",
        "the cGAN, conditioned on the recommender's user tower",
        recommender=rec.path,
        judge=judge.path,
    )
    text = run(
        "text",
        "the text generator, descriptions for users, same conditioning",
        recommender=rec.path,
    )
    audio = run("audio", "the audio generator (a conditional VAE on spectrograms)")

    progress.step("item", "complete items: one sampled attribute set → picture, text, sound")
    item = _items(dataset, os.path.join(out, "item"), gan, text, audio, judge, seed, smoke)

    progress.step("samples", "a sample grid and a description per user")
    grids = _user_grids(dataset, gan.model, text.model, os.path.join(out, "samples"), seed)

    progress.step("export", f"SavedModels for TF Serving in {export_dir}")
    exports = _export(out, export_dir, {"recommender": rec, "gan": gan, "text": text, "item": item})
    progress.finish()

    runs = {"recommender": rec, "judge": judge, "gan": gan, "text": text, "audio": audio}
    summary = {
        "seconds": round(time.perf_counter() - start, 1),
        "smoke": smoke,
        "data": dataset.path,
        "runs": {**{k: r.path for k, r in runs.items()}, "item": item.path},
        "ranking": rec.metrics["test"],
        "judge": judge.metrics["held_out_accuracy"],
        "gan": {k: gan.metrics[k] for k in ("generation", "judge")},
        "text": {k: text.metrics[k] for k in ("valid", "generation", "judge") if k in text.metrics},
        "item": {k: v for k, v in item.metrics.items() if k != "gallery"},
        "gallery": item.metrics["gallery"],
        "sample_grids": grids,
        "exports": exports,
        "step_seconds": progress.seconds,
    }
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=float)
    print(_summary_text(summary, rec, gan, text, item, export_dir), flush=True)
    return summary


class _Progress:
    def __init__(self, start):
        self.start, self.seconds, self._current, self._began = start, {}, None, None

    def finish(self):
        if self._current is not None:
            self.seconds[self._current] = round(time.perf_counter() - self._began, 1)
        self._current = None

    def step(self, name, message):
        self.finish()
        now = time.perf_counter()
        self._current, self._began = name, now
        number = STEPS.index(name) + 1
        elapsed = now - self.start
        print(f"\n[{number}/{len(STEPS)}] {message}  ({elapsed / 60:.1f} min elapsed)", flush=True)


def _items(data, folder, gan, text, audio, judge, seed, smoke) -> RunResult:
    """The complete-item generator of the three runs, judged and shown (`assemble_items`);
    reused while its parts are unchanged."""
    from mmrec.training.items import assemble_items
    from mmrec.training.reports import item_table

    parts = {"image": gan.path, "text": text.path, "audio": audio.path}
    stamp = {k: os.path.getmtime(os.path.join(p, "model.keras")) for k, p in parts.items()}
    metrics = read_json(os.path.join(folder, "metrics.json"))
    if metrics is not None and metrics.get("parts") == stamp:
        print(f"reusing the complete-item generator in {folder}")
    else:
        metrics = assemble_items(
            data,
            folder,
            *parts.values(),
            judge=judge.path,
            temperature=ITEM_TEMPERATURE,
            num_users=16 if smoke else ITEM_USERS,
            seed=seed,
            judge_epochs=dict.fromkeys(("image", "text", "audio"), 1)
            if smoke
            else ITEM_JUDGE_EPOCHS,
        )
        metrics["parts"] = stamp
        with open(os.path.join(folder, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2, default=float)
        print(item_table(metrics))
    print(f"gallery: {metrics['gallery']}  (open it in a browser: pictures, texts, sounds)")
    return RunResult(folder, load_run_model(folder), metrics, {})


def _user_grids(data, gan, text, folder, seed) -> dict:
    """One PNG per test user (their recent real items, then cGAN samples) and one
    description by the text generator (all in ``descriptions.txt``)."""
    batch = next(iter(data.interactions("test", batch_size=SAMPLE_USERS, shuffle=False)))
    users = data.users()
    images = data.catalogue().images.numpy()
    names = data.info.attributes
    grids = {}
    for user, row in zip(batch["user_id"].numpy(), batch["history"].numpy()):
        history = [int(i) for i in row if i >= 0]
        real = images[history[-8:]]
        real = np.concatenate([real, np.full((8 - len(real),) + real.shape[1:], 255, np.uint8)])
        generated = gan.generate(history, num=8, seed=seed, dtype="uint8")
        path = os.path.join(folder, f"user_{int(user)}.png")
        write_png(path, image_grid(np.stack([real, generated])))
        index = int(np.searchsorted(users["user_id"], user))
        likes = {
            a: [names[a][int(v)] for v in users[preference_key(a)][index] if v >= 0]
            for a in data.info.strong_preferences
        }
        description = text.generate(history, num=1, seed=seed)[0]
        grids[int(user)] = {"path": path, "likes": likes, "description": description}
        liked = " ".join("/".join(v) for v in likes.values())
        print(f"user {int(user)} (likes {liked}): {path}  rows: recent items, cGAN")
        print(f"  described: {description}")
    with open(os.path.join(folder, "descriptions.txt"), "w", encoding="utf-8") as f:
        f.writelines(f"user {user}: {grid['description']}\n" for user, grid in grids.items())
    return grids


def _export(out, export_dir, runs) -> dict:
    """Exports each model once (a rerun reuses ``out/exports.json`` unless it retrained)."""
    from mmrec.export import export_saved_model

    record = os.path.join(out, "exports.json")
    done = read_json(record) or {}
    for kind, run in runs.items():
        trained = os.path.getmtime(os.path.join(run.path, "model.keras"))
        previous = done.get(kind, {})
        if previous.get("model_mtime") == trained and os.path.exists(previous.get("path", "")):
            print(f"{kind}: already exported to {previous['path']}")
            continue
        path = export_saved_model(run.model, export_dir, name=EXPORT_NAMES[kind])
        print(f"{kind}: exported {path} (validated in a fresh TensorFlow process)")
        done[kind] = {"path": path, "model_mtime": trained}
        with open(record, "w") as f:
            json.dump(done, f, indent=2)
    return {kind: entry["path"] for kind, entry in done.items()}


def _summary_text(summary, rec, gan, text, item, export_dir) -> str:
    from mmrec.training.reports import item_table

    lines = ["", "=" * 100, f"mmrec quickstart finished in {summary['seconds'] / 60:.1f} min", ""]
    lines.append("Recommendation (full-catalogue ranking, test split):")
    lines.append(rec.metrics["table"])
    lines += ["", "Personalised generation, cGAN (judged by an independent classifier):"]
    lines.append(generation_table(gan.metrics))
    lines += [
        "",
        "Descriptions for users, text generator (judged by an independent text classifier):",
    ]
    lines.append(text_generation_table(text.metrics))
    lines += ["", "Complete items for users (image + text + sound), judged per modality:"]
    lines.append(item_table(item.metrics))
    lines += ["", "Where everything is:"]
    for kind, path in summary["runs"].items():
        lines.append(f"  {kind:<12} {path}/  (model.keras, metrics.json, training.csv, logs/)")
    lines.append(f"  gallery      {summary['gallery']}  (open it in a browser)")
    for user, grid in summary["sample_grids"].items():
        lines.append(f'  user {user:<7} {grid["path"]}  "{grid["description"]}"')
    for path in summary["exports"].values():
        lines.append(f"  export       {path}")
    first_user = next(iter(summary["sample_grids"]), 0)
    item_run = summary["runs"]["item"]
    lines += [
        "",
        "Next:",
        f"  tensorboard --logdir {os.path.dirname(summary['runs']['gan'])}   "
        "(pip install tensorboard)",
        f"  mmrec generate --run {summary['runs']['gan']} --users {first_user},1,2 --out grid.png",
        f"  mmrec generate --run {summary['runs']['text']} --users {first_user} --num 3",
        f"  mmrec generate --run {item_run} --users {first_user},1,2 --html gallery/",
        f"  mmrec serve --model-base-path {export_dir}",
        f"  mmrec predict --model {EXPORT_NAMES['recommender']} --history 3,17,42 --k 5",
        f"  mmrec predict --model {EXPORT_NAMES['gan']} --history 3,17,42 --count 4 --png g.png",
        f"  mmrec predict --model {EXPORT_NAMES['text']} --history 3,17,42 --count 3",
        f"  mmrec predict --model {EXPORT_NAMES['item']} --history 3,17,42 --count 2 --out items/",
        "=" * 100,
    ]
    return "\n".join(lines)
