"""Complete personalised items (image + text + sound): do the three agree, do they fit the user?

    nice python benchmarks/item_generation.py --data tf_records/shapes
    nice python benchmarks/item_generation.py --data tf_records/shapes \
        --image runs/quickstart/gan --text runs/quickstart/text --audio runs/quickstart/audio

Assembles a `MultimodalItemGenerator` from an image run (a user-conditioned
cGAN: its preference head samples each user's attribute set), a text run and an
audio run (`mmrec.training.items.assemble_items`, as ``mmrec item`` does), then
generates ONE item for each of ``--users`` test users and reads every modality
with its own independent judge, trained on real content only (image CNN, text
classifier, audio CNN on log-mel spectrograms; a judge speaks for an attribute
only if it reads it on real held-out items with accuracy >= 0.9):

* colour consistency across image, text and sound; shape consistency across
  text and sound (and across all three);
* the share of items on which every judge reads the sampled value of every
  attribute all three show (``all agree``);
* the personalisation hit-rate of the items (read from their images) next to
  the users' own held-out items' and random items'.

Runs not given are trained (or reused, when finished with the same settings)
under ``<out-dir>/item_generation/`` with the run kinds' presets and the
``--*-config`` JSON on top: by default a tiny recommender and image judge (the
quick start's), and the image, text and audio generators at the settings below
(``DEFAULT_CONFIGS``; ``--recommender`` and ``--judge`` reuse runs, e.g. the
quick start's). Items sample the user's attributes at ``--temperature`` 0.5 by
default (the preference head on a tiny recommender is flat: at 1 its samples
hit the user's favourites less often than the user's own next items do).
Quality numbers do not depend on the machine's load
(steps, not minutes). Writes ``<out-dir>/item_generation.json`` and the item
folder (model, judges, metrics, gallery page).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _common import print_table, write_json  # noqa: E402

import mmrec  # noqa: E402
from mmrec.models.conditioning import get_conditioning  # noqa: E402
from mmrec.training import resolve_config, train_or_reuse  # noqa: E402
from mmrec.training.items import assemble_items  # noqa: E402
from mmrec.training.reports import item_table  # noqa: E402

# The parts trained when no run is given: the quick start's recommender and image
# judge; a user-conditioned cGAN (the quick start's recipe, longer), attribute-
# conditioned text and audio generators (audio: the base networks at the model's
# learning rate, which settle where the tiny preset's fast rate does not; see
# docs/items.md).
DEFAULT_CONFIGS = {
    "recommender": {"preset": "tiny", "id_only_baseline": False},
    "judge": {"preset": "tiny"},
    "gan": {"preset": "tiny", "condition": "user", "epochs": 20},
    "text": {"preset": "tiny", "condition": "attributes", "epochs": 10, "judge_epochs": 6},
    "audio": {"preset": "base", "epochs": 40, "judge_epochs": 8},
}
# The targets for complete items (200 test users).
TARGETS = {
    "consistency_colour": 0.9,  # image, text and sound
    "consistency_shape_text_audio": 0.9,
    # every judge reads the sampled colour and shape (the sound carries those two:
    # pitch and pulses; all_agree_with_sampled adds pattern, the sound's harmonics)
    "all_agree_on_preferred": 0.85,
}
HIT_RATE_FRACTION = 0.7  # hit-rate >= 0.7 × the users' own held-out items'


def parts(args, data, folder) -> dict:
    """Run folders of the image, text and audio generators and the image judge: given, or
    trained (reused when finished) with ``DEFAULT_CONFIGS`` and the ``--*-config`` JSON."""
    given = {
        "gan": args.image,
        "text": args.text,
        "audio": args.audio,
        "judge": args.judge,
        "recommender": args.recommender,
    }
    configs = {
        kind: {**defaults, **json.loads(getattr(args, f"{kind}_config"))}
        for kind, defaults in DEFAULT_CONFIGS.items()
    }
    runs, seconds = {}, {}

    def run(kind, **extra):
        if given.get(kind):
            return given[kind]
        start = time.perf_counter()
        folder_ = os.path.join(folder, kind)
        path = train_or_reuse(kind, data, folder_, configs[kind], args.seed, **extra).path
        seconds[kind] = round(time.perf_counter() - start, 1)
        return path

    def users(kind):  # a recommender for the conditionings that read a user tower
        condition = resolve_config(kind, configs[kind])["condition"]
        if not get_conditioning(condition).requires_user_encoder:
            return {}
        if "recommender" not in runs:
            runs["recommender"] = run("recommender")
        return {"recommender": runs["recommender"]}

    runs["judge"] = run("judge")
    runs["gan"] = run("gan", judge=runs["judge"], **users("gan"))
    runs["text"] = run("text", **users("text"))
    runs["audio"] = run("audio", **users("audio"))
    return {"runs": runs, "configs": configs, "train_seconds": seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--image", default=None, help="a user-conditioned gan/vae run folder")
    parser.add_argument("--text", default=None, help="a text run folder")
    parser.add_argument("--audio", default=None, help="an audio run folder")
    parser.add_argument("--judge", default=None, help="an image judge run folder")
    parser.add_argument(
        "--recommender", default=None, help="a recommender run folder (user-conditioned parts)"
    )
    for kind in DEFAULT_CONFIGS:
        parser.add_argument(
            f"--{kind}-config", default="{}", help=f"JSON settings on top of the {kind} defaults"
        )
    parser.add_argument("--users", type=int, default=200, help="test users, one item each")
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.5,
        help="the preference temperature (below 1: each user's favourites)",
    )
    parser.add_argument("--out-dir", default="benchmarks/results")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.data, "dataset.json")):
        mmrec.data.write_shapes(args.data)
    data = mmrec.data.load(args.data)
    folder = os.path.join(args.out_dir, "item_generation")
    trained = parts(args, data, folder)
    runs = trained["runs"]
    start = time.perf_counter()
    report = assemble_items(
        data,
        os.path.join(folder, "item"),
        runs["gan"],
        runs["text"],
        runs["audio"],
        judge=runs["judge"],
        temperature=args.temperature,
        num_users=args.users,
        seed=args.seed,
    )
    seconds = round(time.perf_counter() - start, 1)
    print()
    print(item_table(report))
    own = report.get("hit_rate_held_out_items")
    checks = {key: (report.get(key), target) for key, target in TARGETS.items()}
    hit_rate = report.get("hit_rate_image")
    checks["hit_rate_image / own"] = (
        None if not own or hit_rate is None else hit_rate / own,
        HIT_RATE_FRACTION,
    )
    rows = [
        {
            "measure": key,
            "value": "-" if value is None else f"{value:.3f}",
            "target": f">= {target}",
            "met": "-" if value is None else ("yes" if value >= target else "no"),
        }
        for key, (value, target) in checks.items()
    ]
    print()
    print_table(rows, ["measure", "value", "target", "met"])
    write_json(
        os.path.join(args.out_dir, "item_generation.json"),
        {
            "benchmark": "item_generation",
            "command": " ".join(["python benchmarks/item_generation.py", *(argv or sys.argv[1:])]),
            "data": args.data,
            "users": args.users,
            "temperature": args.temperature,
            **trained,
            "assemble_seconds": seconds,
            "report": report,
            "targets": {k: {"value": v, "target": t} for k, (v, t) in checks.items()},
        },
    )


if __name__ == "__main__":
    main()
