"""`mmrec generate`, and what it shares with `mmrec predict`: which option feeds which input.

A generator's conditioning says what it takes (`Conditioning.serving_inputs`,
`Conditioning.takes_labels`; a served model, its signature's inputs); each
option fills one kind of input, so the command can say which options a model
accepts without knowing its kind of condition.
"""

from __future__ import annotations

import os
import sys

from mmrec.cli.options import id_list, positive_int
from mmrec.cli.runs import load_model, run_dataset
from mmrec.errors import UsageError, usage_errors
from mmrec.models.attributes import attribute_ids, label_key

_LABEL_PREFIX = label_key("")
# Inputs that are an item's content, which ``--items`` fills from the catalogue.
_CONTENT_INPUTS = ("image", "audio")

# Stands for "any id" where the class count is unknown (a served model checks the range).
_UNKNOWN_COUNT = 2**31 - 1


def add_commands(commands) -> None:
    generate = commands.add_parser(
        "generate",
        help="write a PNG grid of generated images (or print descriptions) for users, prompts "
        "or attributes",
        description=(
            "Generate images with a trained ConditionalGAN / ConditionalVAE (--run, a run "
            "folder of `mmrec train gan|vae`) or an exported one (--export savedmodels/NAME, "
            "its latest version, through the same generate_image signature TF Serving "
            "serves). One row per user, prompt or attribute set; --num images per row. "
            "A ConditionalTextGenerator (--run, a run folder of `mmrec train text`) prints "
            "--num descriptions per user or attribute set instead, one per line (--out: "
            "also write them to that text file). A complete-item generator (--run, an "
            "item folder of `mmrec item` or the quick start's runs/quickstart/item) writes "
            "--num items per user or attribute set, each as PNG, TXT and WAV, into the "
            "folder --out, or a gallery page with --html DIR (per user: their history, "
            "then the items with an audio player and the judges' verdicts). Which of "
            "--users, --text and --attributes a model takes depends on what it is "
            "conditioned on; attribute values are class names or ids."
        ),
    )
    source = generate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--run",
        dest="run_folder",
        default=None,
        metavar="RUN",
        help="a gan/vae/text run folder, or an item folder (or their .keras)",
    )
    source.add_argument(
        "--export", default=None, metavar="DIR", help="an exported generator, savedmodels/NAME"
    )
    condition = generate.add_mutually_exclusive_group()
    condition.add_argument(
        "--users",
        type=id_list,
        default=None,
        metavar="IDS",
        help="user ids, e.g. 1,2,3 (user-conditioned)",
    )
    condition.add_argument(
        "--text", nargs="+", default=None, help='prompts, e.g. "a red star" (text-conditioned)'
    )
    condition.add_argument(
        "--attributes",
        default=None,
        metavar="NAME=VALUE,...",
        help="class names or ids, e.g. shape=star,colour=3,pattern=plain,size=large "
        "(attribute- and user-conditioned; with --export, names need --data)",
    )
    generate.add_argument(
        "--items",
        type=id_list,
        default=None,
        metavar="IDS",
        help="item ids, e.g. 3,17: describe these items (text models conditioned on an item's "
        "content); with --users, explain them to the user(s) (explanation models)",
    )
    generate.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="dataset for --users and class names (default: the run's dataset)",
    )
    generate.add_argument(
        "--num", type=positive_int, default=8, help="images per row (texts per condition)"
    )
    generate.add_argument("--seed", type=int, default=0, help="noise seed")
    generate.add_argument(
        "--out",
        default=None,
        help="the PNG file to write (text models: an optional .txt; item generators: a folder)",
    )
    generate.add_argument(
        "--html",
        default=None,
        metavar="DIR",
        help="item generators: write a gallery page DIR/index.html for --users (open it in a "
        "browser; no server needed)",
    )
    generate.set_defaults(run=generate_images)

    item = commands.add_parser(
        "item",
        help="assemble a complete-item generator (image + text + sound) from three runs, "
        "judge it, write its gallery",
        description=(
            "Put an image run (mmrec train gan|vae), a text run (mmrec train text) and an "
            "audio run (mmrec train audio) behind one MultimodalItemGenerator: for a user it "
            "samples ONE attribute set from the user's predicted preferences (a "
            "user-conditioned run's preference head) and drives all three with it. Trains "
            "the text and audio judges (and the image judge unless --judge), measures "
            "cross-modal consistency and personalisation on --users test users, and writes "
            "OUT/model.keras, OUT/judges/, OUT/metrics.json and OUT/gallery/index.html. "
            "Then: mmrec generate --run OUT --users 1,2 --html DIR; mmrec export --model OUT."
        ),
    )
    item.add_argument("--image", required=True, metavar="RUN", help="a gan/vae run folder")
    item.add_argument("--text", required=True, metavar="RUN", help="a text run folder")
    item.add_argument("--audio", required=True, metavar="RUN", help="an audio run folder")
    item.add_argument("--out", required=True, metavar="DIR", help="the item folder to write")
    item.add_argument("--data", default=None, help="the dataset (default: the image run's)")
    item.add_argument(
        "--judge", default=None, metavar="RUN", help="an image judge run to reuse (else trained)"
    )
    item.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="divides the preference logits before sampling (below 1: each user's favourites)",
    )
    item.add_argument(
        "--users", type=positive_int, default=200, help="test users in the consistency report"
    )
    item.add_argument("--seed", type=int, default=0)
    item.set_defaults(run=assemble_item_command)


def condition_options(
    input_names, takes_labels=False, history_option="--users", item_option="--items"
) -> list[str]:
    """The options that can condition a model with these inputs, e.g. ``--users, --attributes``.

    Args:
        input_names: the conditioning's served inputs (a signature's, less ``seed``):
            ``history`` is filled by ``history_option`` (``--users`` here, ``--history``
            for `mmrec predict`), ``text`` by ``--text``, ``label_<attribute>`` by
            ``--attributes``, ``item_id`` and an item's ``image``/``audio`` by
            ``item_option`` (``--items`` here; ``None``: no option fills them).
        takes_labels: its ``generate`` also accepts a dict of attributes.
    """
    options = [history_option] if "history" in input_names else []
    if item_option and ("item_id" in input_names or set(input_names) & set(_CONTENT_INPUTS)):
        options.append(item_option)
    if "text" in input_names:
        options.append("--text")
    if takes_labels or attribute_names(input_names):
        options.append("--attributes")
    return options


def attribute_names(input_names) -> list[str]:
    """The attributes whose ``label_<attribute>`` is among ``input_names`` (sorted)."""
    prefix = _LABEL_PREFIX
    return [name[len(prefix) :] for name in sorted(input_names) if name.startswith(prefix)]


def check_option(option, accepted, model) -> None:
    """A `UsageError` naming the ``accepted`` options when ``option`` is not one of them.

    ``model`` opens the message, e.g. ``"'runs/gan' is conditioned on user"``.
    """
    if option not in accepted:
        asked = {"--users": "users", "--history": "users", "--text": "text", "--items": "items"}
        asked = asked.get(option)
        use = " or ".join(accepted) or "none of --users, --text and --attributes"
        raise UsageError(f"{model}, not {asked or 'attributes'}: use {use}.")


def attribute_inputs(text, classes=None, names=None) -> dict:
    """``--attributes`` text → ``{label_<attribute>: int32 [N]}``, class names or ids alike.

    Args:
        text: e.g. ``"shape=star,colour=3"`` (`mmrec.training.samples.parse_attributes`).
        classes: ``{attribute: [class names]}`` (a dataset's) to resolve names with;
            None accepts ids only (a served model knows no class names).
        names: the attributes the model takes, when known (a served signature's).

    Example:

    >>> attribute_inputs("shape=star,colour=1", {"shape": ["circle", "star"], "colour": 2})
    {'label_shape': array([1], dtype=int32), 'label_colour': array([1], dtype=int32)}
    """
    from mmrec.training.samples import parse_attributes

    with usage_errors():
        values = parse_attributes(text)
    if classes is None:
        named = [f"{k}={v}" for k, given in values.items() for v in given if isinstance(v, str)]
        if named:
            raise UsageError(
                f"Class names ({', '.join(named)}) need the dataset's names: give --data DIR "
                "(a served or exported model knows only ids), or give ids, e.g. shape=3."
            )
        classes = {name: _UNKNOWN_COUNT for name in (names or values)}
    elif names is not None:
        missing = [name for name in names if name not in classes]
        if missing:
            raise UsageError(
                f"Expected a dataset with the attributes this model takes, {list(names)}. "
                f"Received: --data with attributes {list(classes)}"
            )
        classes = {name: classes[name] for name in names}
    with usage_errors():
        return attribute_ids(classes, values)[0]


def generate_images(args) -> int:
    from mmrec.models import ConditionalGAN, ConditionalVAE
    from mmrec.models.item_generation import MultimodalItemGenerator
    from mmrec.models.text_generation import ConditionalTextGenerator
    from mmrec.training import samples

    if args.html is not None and not args.run_folder:
        raise UsageError("--html writes the gallery of an item generator: give --run ITEM.")
    if args.run_folder:
        model = load_model(
            args.run_folder,
            (ConditionalGAN, ConditionalVAE, ConditionalTextGenerator, MultimodalItemGenerator),
        )
        if isinstance(model, MultimodalItemGenerator):
            return _generate_items(model, args)
        if args.html is not None:
            raise UsageError(
                f"--html writes the gallery of an item generator; '{args.run_folder}' holds a "
                f"{type(model).__name__}: use --out."
            )
        conditioning = model.conditioning
        accepted = condition_options(conditioning.serving_inputs(), conditioning.takes_labels)
        where = f"'{args.run_folder}' is conditioned on {model.condition}"
        check_option(_given_option(args), accepted, where)
        if args.items is not None:
            conditions = _item_conditions(args, conditioning.serving_inputs())
        elif args.attributes is not None:  # the model resolves class names itself
            with usage_errors():
                conditions = samples.parse_attributes(args.attributes)
        else:
            conditions = _histories_or_prompts(args)
        if isinstance(model, ConditionalTextGenerator):
            return _print_texts(model, conditions, args)
        if args.out is None:
            raise UsageError("Give --out PATH: the PNG file to write the images to.")
        with usage_errors():
            grid = samples.generate_grid(model, conditions, num=args.num, seed=args.seed)
    else:
        if args.out is None:
            raise UsageError("Give --out PATH: the PNG file to write the images to.")
        if _given_option(args) == "--items":
            raise UsageError(
                "--items conditions text models from a run folder (--run); an exported "
                "generator is queried with `mmrec predict`."
            )
        if args.attributes is not None:
            classes = _dataset_info(args.data).attributes if args.data else None
            conditions = attribute_inputs(args.attributes, classes)
        else:
            conditions = _histories_or_prompts(args)
        with usage_errors():
            grid = samples.generate_grid_from_export(
                args.export, conditions, num=args.num, seed=args.seed
            )
    samples.write_grid(args.out, grid)
    rows = len(next(iter(conditions.values()))) if isinstance(conditions, dict) else len(conditions)
    print(f"wrote {args.out} ({rows} row(s) × {args.num} images)")
    return 0


def _generate_items(model, args) -> int:
    """``--html DIR``: the gallery of ``--users``; ``--out DIR``: PNG, TXT and WAV per item."""
    from mmrec.data import load
    from mmrec.training.items import item_gallery, load_item_judges, write_item_files

    option = _given_option(args)
    accepted = (["--users"] if model.takes_users else []) + ["--attributes"]
    where = "A complete-item generator takes users or attributes"
    check_option(option, accepted, where)
    if args.html is not None:
        if args.users is None:
            raise UsageError("--html shows users: give --users IDS.")
        data = load(_dataset_path(args))
        judges = load_item_judges(args.run_folder) if os.path.isdir(args.run_folder) else {}
        with usage_errors():
            page = item_gallery(model, data, args.html, args.users, judges, args.num, args.seed)
        print(f"wrote {page} ({len(args.users)} user(s) × {args.num} items)")
        return 0
    if args.out is None:
        raise UsageError("Give --out DIR (a PNG, TXT and WAV per item) or --html DIR.")
    if args.users is not None:
        conditions, names = _histories_or_prompts(args), [f"user{u}" for u in args.users]
    else:
        from mmrec.training import samples

        with usage_errors():
            conditions = samples.parse_attributes(args.attributes)
        names = None
    with usage_errors():
        items = model.generate_item(conditions, num=args.num, seed=args.seed)
    count = len(items["text"]) // args.num
    names = names or [f"attributes{c}" for c in range(count)]
    prefixes = [f"{name}_{j}" for name in names for j in range(args.num)]
    written = write_item_files(args.out, items, prefixes, model.sample_rate)
    print(f"wrote {len(written)} files to {args.out} ({len(prefixes)} items: PNG, TXT, WAV)")
    return 0


def assemble_item_command(args) -> int:
    from mmrec.data import load
    from mmrec.training.items import assemble_items
    from mmrec.training.reports import item_table

    data = load(args.data or run_dataset(args.image) or _missing_data())
    with usage_errors():
        report = assemble_items(
            data,
            args.out,
            args.image,
            args.text,
            args.audio,
            judge=args.judge,
            temperature=args.temperature,
            num_users=args.users,
            seed=args.seed,
        )
    print(item_table(report))
    print(f"\nwrote {args.out}/ (model.keras, judges/, metrics.json); gallery: {report['gallery']}")
    return 0


def _missing_data():
    raise UsageError("Give --data DIR: the dataset the runs were trained on.")


def _print_texts(model, conditions, args) -> int:
    """Prints ``--num`` descriptions per condition, one per line, condition after condition
    (and writes them to --out)."""
    with usage_errors():
        texts = model.generate(conditions, num=args.num, seed=args.seed)
    groups = [texts] if texts and isinstance(texts[0], str) else texts
    lines = [text for group in groups for text in group]
    print("\n".join(lines))
    if args.out is not None:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("".join(f"{line}\n" for line in lines))
        message = f"wrote {args.out} ({len(groups)} condition(s) × {args.num} descriptions)"
        print(message, file=sys.stderr)
    return 0


def _given_option(args) -> str:
    given = [
        option
        for option, value in (
            ("--items", args.items),
            ("--users", args.users),
            ("--text", args.text),
            ("--attributes", args.attributes),
        )
        if value is not None
    ]
    if not given:
        raise UsageError("Give what to generate for: --users, --text, --attributes or --items.")
    return given[0]


def _item_conditions(args, input_names):
    """``--items`` (and ``--users``, for a model that explains) → what ``generate`` takes."""
    import numpy as np

    from mmrec.data import load
    from mmrec.training.samples import user_histories

    data = load(_dataset_path(args))
    count = data.info.num_items
    outside = [i for i in args.items if not 0 <= i < count]
    if outside:
        raise UsageError(f"Expected item ids in [0, {count}). Received: {outside[:10]}")
    if "item_id" in input_names:  # an explanation: a user's history and an item
        if args.users is None:
            raise UsageError("This model explains an item to a user: give --users and --items.")
        with usage_errors():
            histories = list(user_histories(data, args.users).values())
        if len(histories) == 1:
            histories = histories * len(args.items)
        if len(histories) != len(args.items):
            raise UsageError(
                "Expected one user, or as many users as items (paired in order). Received: "
                f"{len(args.users)} users, {len(args.items)} items"
            )
        return list(zip(histories, args.items))
    if args.users is not None:
        raise UsageError("--users does not condition a model that describes items: drop it.")
    features = data.catalogue().features()
    wanted = [name for name in _CONTENT_INPUTS if name in input_names]
    return {name: np.asarray(features[name])[np.asarray(args.items)] for name in wanted}


def _histories_or_prompts(args) -> list:
    """``--users`` → their test-time histories (from the dataset); ``--text`` → the prompts."""
    if args.users is None:
        return list(args.text)
    from mmrec.data import load
    from mmrec.training.samples import user_histories

    data = load(_dataset_path(args))
    with usage_errors():
        return list(user_histories(data, args.users).values())


def _dataset_path(args) -> str:
    path = args.data or (run_dataset(args.run_folder) if args.run_folder else None)
    if path is None:
        raise UsageError("Give --data DIR: the dataset whose users or items to generate for.")
    return path


def _dataset_info(path):
    from mmrec.data import DatasetInfo

    return DatasetInfo.read(path)
