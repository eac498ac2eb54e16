"""The `mmrec` command: a thin shell over the library.

Each subcommand parses its arguments, calls one library function and prints what
it did. Expected failures (bad data, bad arguments) print one clear line and exit
with status 2 instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

DESCRIPTION = """\
mmrec — multimodal content generation for recommender systems (Keras 3 on TensorFlow).

It turns item catalogues (images, text, audio) and user behaviour into TFRecords and
tf.data pipelines, learns multimodal item/user representations, recommends items and
generates personalised content.

Start here (about 10 minutes on 2 CPU cores; data → models → metrics → images → SavedModels):
  mmrec quickstart                              # everything below, with tiny configs

The steps one by one, on the embedded benchmark:
  mmrec data synth --out tf_records/shapes      # generate the "shapes" catalogue + users
  mmrec data inspect tf_records/shapes          # counts, schema and a contact-sheet PNG
  mmrec data validate tf_records/shapes         # check every record, list every problem
  mmrec data fashion-mnist --out tf_records/fashion   # a second benchmark with real images
  mmrec train recommender --data tf_records/shapes --out runs/rec --config tiny
  mmrec train gan --data tf_records/shapes --out runs/gan --config tiny --recommender runs/rec
  mmrec evaluate --data tf_records/shapes --model runs/rec/model.keras
  mmrec generate --run runs/gan --users 1,2,3 --out grid.png
  mmrec export --model runs/gan/model.keras --name gan && mmrec serve
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmrec", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = commands.add_parser(
        "data",
        help="create, inspect and validate datasets (TFRecords + dataset.json)",
        description="Create, inspect and validate mmrec datasets.",
    )
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = data_commands.add_parser(
        "synth",
        help="generate the 'shapes' benchmark (images, text, audio, users with ground truth)",
        description=(
            "Generate the shapes benchmark: coloured shapes on patterned backgrounds with "
            "templated descriptions and sounds, users with known favourite colours and "
            "shapes, leave-last-out splits and 10%% cold items. Deterministic for a seed "
            "(same seed → byte-identical shards); written atomically."
        ),
    )
    synth.add_argument("--out", default="tf_records/shapes", help="dataset folder to write")
    synth.add_argument("--items", type=_positive_int, default=2000, help="number of items")
    synth.add_argument("--users", type=_positive_int, default=1000, help="number of users")
    synth.add_argument("--image-size", type=int, default=32, choices=(32, 64))
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    synth.set_defaults(run=_data_synth)

    fashion = data_commands.add_parser(
        "fashion-mnist",
        help="build the Fashion-MNIST benchmark (real images, text, simulated users)",
        description=(
            "Build a catalogue from Debian's dataset-fashion-mnist files (real 28x28 "
            "images padded to 32x32, text from category and brightness, no audio) with "
            "simulated users who favour 2-3 categories; same splits and ground truth as "
            "shapes. Needs `apt-get install dataset-fashion-mnist`."
        ),
    )
    fashion.add_argument("--out", default="tf_records/fashion", help="dataset folder to write")
    fashion.add_argument("--items", type=_positive_int, default=2000, help="number of items")
    fashion.add_argument("--users", type=_positive_int, default=1000, help="number of users")
    fashion.add_argument("--seed", type=int, default=0)
    fashion.add_argument(
        "--source", default="/usr/share/datasets/fashion-mnist", help="folder of the IDX files"
    )
    fashion.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    fashion.set_defaults(run=_data_fashion_mnist)

    inspect = data_commands.add_parser(
        "inspect",
        help="print counts and schema, write a contact-sheet PNG of sample items",
        description="Print a dataset's counts and schema and write a contact sheet of items.",
    )
    inspect.add_argument("path", help="dataset folder")
    inspect.add_argument(
        "--sheet", default=None, help="contact-sheet PNG path (default: PATH/contact_sheet.png)"
    )
    inspect.add_argument("--samples", type=_positive_int, default=24, help="items on the sheet")
    inspect.set_defaults(run=_data_inspect)

    validate = data_commands.add_parser(
        "validate",
        help="check checksums and every record; list each problem with its file and index",
        description=(
            "Verify shard checksums and validate every record (schema, image/audio/text "
            "decoding, id ranges). Exit status 1 if anything is wrong."
        ),
    )
    validate.add_argument("path", help="dataset folder")
    validate.set_defaults(run=_data_validate)

    evaluate = commands.add_parser(
        "evaluate",
        help="score recommenders and baselines side by side (Recall@K, NDCG@K, cold items)",
        description=(
            "Full-catalogue ranking evaluation on a leave-last-out split: Recall@K and "
            "NDCG@K for K in {10, 20, 50}, overall and on cold-item targets, for saved "
            "recommenders (.keras) and the baselines (popularity; where the dataset has "
            "ground truth: oracle, and posterior / posterior+true_pop, the Bayes "
            "posterior over a user's favourites given the history, without and with the "
            "items' true popularity). Prints a table and writes JSON."
        ),
    )
    evaluate.add_argument("--data", required=True, help="dataset folder")
    evaluate.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="[NAME=]PATH",
        help="a saved Recommender (.keras); repeat for several",
    )
    evaluate.add_argument("--split", default="test", choices=("valid", "test"))
    evaluate.add_argument(
        "--baselines",
        default="popularity,oracle",
        help="comma-separated, among popularity, oracle, posterior, posterior+true_pop; "
        "'' for none",
    )
    evaluate.add_argument("--out", default=None, help="JSON file for the results")
    evaluate.set_defaults(run=_evaluate)

    export = commands.add_parser(
        "export",
        help="export a saved model (.keras) as a TF Serving SavedModel version",
        description=(
            "Export a saved Recommender, ConditionalGAN or ConditionalVAE (.keras) to "
            "BASE_DIR/NAME/VERSION/ with named signatures, in-graph tokenisation and warm-up "
            "requests; check it in a fresh TensorFlow + tensorflow-text process; publish it "
            "atomically and list it in BASE_DIR/models.config."
        ),
    )
    export.add_argument("--model", required=True, help="a saved model (.keras)")
    export.add_argument("--name", default=None, help="model name (default: the model's name)")
    export.add_argument("--base-dir", default="savedmodels", help="folder of served models")
    export.add_argument(
        "--version", type=_positive_int, default=None, help="default: latest version + 1"
    )
    export.add_argument(
        "--k", type=_positive_int, default=10, help="items returned by a recommender's signature"
    )
    export.add_argument(
        "--no-warmup", action="store_true", help="write no assets.extra warm-up requests"
    )
    export.add_argument(
        "--no-validate", action="store_true", help="skip the fresh-process check (not advised)"
    )
    export.set_defaults(run=_export)

    serve = commands.add_parser(
        "serve",
        help="serve exported models with TF Serving's REST and gRPC APIs (local stand-in)",
        description=(
            "A local stand-in for TF Serving: serves the latest version of every model under "
            "--model-base-path (or those in --model-config-file) with TF Serving's REST API "
            "and gRPC PredictionService, and picks up new versions without a restart. "
            "Port 0 picks a free port. Stops gracefully on SIGTERM/SIGINT. For production, "
            "serve the same folder with tensorflow/serving (docs/serving.md)."
        ),
    )
    serve.add_argument("--model-base-path", default="savedmodels", help="folder of models")
    serve.add_argument("--model-config-file", default=None, help="a TF Serving models.config")
    serve.add_argument("--rest-port", type=_port, default=8501)
    serve.add_argument("--grpc-port", type=_port, default=8500)
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: all)")
    serve.add_argument(
        "--max-batch-size", type=_positive_int, default=256, help="largest batch per request"
    )
    serve.add_argument(
        "--max-body-bytes",
        type=_positive_int,
        default=16 << 20,
        help="largest REST body / gRPC message (bytes)",
    )
    serve.add_argument(
        "--poll-seconds", type=float, default=1.0, help="how often to look for new versions"
    )
    serve.set_defaults(run=_serve)

    predict = commands.add_parser(
        "predict",
        help="ask a TF Serving (or mmrec serve) server for recommendations or images",
        description=(
            "Call a served model: a recommender prints the items recommended for --history; "
            "a generator writes the images for --history, --text or --attributes to --png."
        ),
    )
    predict.add_argument("--server", default="localhost:8501", help="host:port")
    predict.add_argument("--model", required=True, help="the served model's name")
    predict.add_argument("--protocol", default="rest", choices=("rest", "grpc"))
    predict.add_argument("--version", type=_positive_int, default=None)
    predict.add_argument("--history", default=None, help="item ids, e.g. 3,17,42")
    predict.add_argument("--text", default=None, help="a description (text-conditioned models)")
    predict.add_argument(
        "--attributes", default=None, help="attribute ids, e.g. shape=3,colour=1,pattern=0,size=2"
    )
    predict.add_argument(
        "--k", type=_positive_int, default=None, help="show the top k (at most the exported k)"
    )
    predict.add_argument("--seed", type=int, default=0, help="seed of the first image")
    predict.add_argument("--count", type=_positive_int, default=1, help="images to generate")
    predict.add_argument("--png", default=None, help="write generated images to this PNG")
    predict.set_defaults(run=_predict)

    _add_train_parser(commands)
    _add_generate_parser(commands)
    _add_quickstart_parser(commands)
    return parser


def _add_train_parser(commands) -> None:
    train = commands.add_parser(
        "train",
        help="train a recommender, a generator (gan, vae) or the judge; write a run folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=textwrap.dedent(
            """\
            Train with model.fit (progress bars, TensorBoard scalars and sample grids,
            ModelCheckpoint, BackupAndRestore, TerminateOnNaN, a CSV log), evaluate, and
            write everything to the run folder --out:
              config.json  model.keras  metrics.json  training.csv  logs/  checkpoints/
              samples/ (generators)  judge/ (generators, unless --judge)
            Metrics: recommender — Recall/NDCG@K on the test split next to popularity,
            ID-only and oracle baselines; gan/vae — the judge's conditional accuracy,
            personalisation hit-rate, FCD/KCD, diversity (vae also -ELBO); judge — its
            held-out accuracy.

            Interrupted (crash, kill, preemption)? Run the same command again: it resumes
            after the last completed epoch. --config takes 'tiny' (the quick start's), 'base'
            or a JSON file with any of the kind's keys plus an optional "preset"
            (docs/training.md lists them).

            Several devices: --strategy mirrored (every GPU of this machine; without GPUs,
            --cpu-devices N splits the CPU for a try-out); several machines: --strategy
            multiworker with TF_CONFIG set on each (docs/training.md). --batch-size is the
            global batch."""
        ),
    )
    train.add_argument("kind", choices=("recommender", "gan", "vae", "judge"))
    train.add_argument("--data", required=True, help="dataset folder (mmrec data synth)")
    train.add_argument("--out", required=True, help="run folder, e.g. runs/rec")
    train.add_argument("--config", default="base", help="tiny | base | a JSON file (default: base)")
    train.add_argument("--epochs", type=_positive_int, default=None, help="overrides the config")
    train.add_argument(
        "--batch-size", type=_positive_int, default=None, help="global batch; overrides the config"
    )
    train.add_argument(
        "--mixed-precision",
        choices=("off", "float16", "bfloat16"),
        default="off",
        help="float16 (GPUs; loss scaling) or bfloat16 (TPUs, recent CPUs/GPUs) compute",
    )
    train.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multiworker"),
        default="default",
        help="one device; every GPU of this machine; the machines TF_CONFIG lists",
    )
    train.add_argument(
        "--cpu-devices",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --strategy mirrored and no GPU: split the CPU into N devices (no speed-up)",
    )
    train.add_argument("--jit", action="store_true", help="compile the training step with XLA")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--recommender",
        default=None,
        metavar="RUN",
        help="gan/vae conditioned on users: a recommender run folder (or .keras)",
    )
    train.add_argument(
        "--judge",
        default=None,
        metavar="RUN",
        help="gan/vae: a judge run folder (or .keras) to reuse; default: train one into OUT/judge",
    )
    train.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    train.set_defaults(run=_train)


def _add_generate_parser(commands) -> None:
    generate = commands.add_parser(
        "generate",
        help="write a PNG grid of generated images for users, prompts or attributes",
        description=(
            "Generate images with a trained ConditionalGAN / ConditionalVAE (--run, a run "
            "folder of `mmrec train gan|vae`) or an exported one (--export savedmodels/NAME, "
            "its latest version, through the same generate_image signature TF Serving "
            "serves). One row per user, prompt or attribute set; --num images per row."
        ),
    )
    source = generate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--run", dest="run_folder", default=None, help="a gan/vae run folder (or its .keras)"
    )
    source.add_argument("--export", default=None, help="an exported generator, savedmodels/NAME")
    condition = generate.add_mutually_exclusive_group(required=True)
    condition.add_argument(
        "--users", default=None, help="user ids, e.g. 1,2,3 (user-conditioned models)"
    )
    condition.add_argument(
        "--text", nargs="+", default=None, help='prompts, e.g. "a red star" (text-conditioned)'
    )
    condition.add_argument(
        "--attributes",
        default=None,
        help="e.g. shape=star,colour=red,pattern=plain,size=large (any model)",
    )
    generate.add_argument(
        "--data", default=None, help="dataset for --users (default: the run's dataset)"
    )
    generate.add_argument("--num", type=_positive_int, default=8, help="images per row")
    generate.add_argument("--seed", type=int, default=0, help="noise seed")
    generate.add_argument("--out", required=True, help="the PNG file to write")
    generate.set_defaults(run=_generate)


def _add_quickstart_parser(commands) -> None:
    quickstart = commands.add_parser(
        "quickstart",
        help="the whole pipeline in at most 10 minutes on 2 CPU cores (start here)",
        description=(
            "Synthesise the shapes benchmark (if --data has none), train the recommender, "
            "the user-conditioned cGAN and the VAE with the tiny configs, evaluate them "
            "(ranking table with baselines; the judge's verdict on generated images), write "
            "a sample grid per user, export SavedModels for TF Serving to --export-dir "
            "(validated in a fresh TensorFlow process) and print a summary. At most 10 "
            "minutes on 2 CPU cores. Run again to reuse what is finished (and resume what "
            "was interrupted)."
        ),
    )
    quickstart.add_argument("--out", default="runs/quickstart", help="folder of the runs")
    quickstart.add_argument(
        "--data", default="tf_records/shapes", help="dataset folder (synthesised if absent)"
    )
    quickstart.add_argument("--export-dir", default="savedmodels", help="where models are exported")
    quickstart.add_argument("--seed", type=int, default=0)
    quickstart.add_argument(
        "--smoke",
        action="store_true",
        help="two steps per model: checks that everything runs (numbers mean nothing)",
    )
    quickstart.set_defaults(run=_quickstart)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in [0, 65535], received {text}")
    return value


def _version() -> str:
    from mmrec import __version__

    return f"mmrec {__version__}"


def _data_synth(args) -> int:
    from mmrec.data import ShapesConfig, write_shapes

    config = ShapesConfig(
        num_items=args.items, num_users=args.users, image_size=args.image_size, seed=args.seed
    )
    info = write_shapes(args.out, config, overwrite=args.overwrite)
    print(
        f"wrote {args.out}: {info.num_items} items, {info.num_users} users, "
        f"interactions {info.splits}, {len(info.cold_items)} cold items"
    )
    return 0


def _data_fashion_mnist(args) -> int:
    from mmrec.data.fashion_mnist import FashionMnistConfig, write_fashion_mnist

    config = FashionMnistConfig(
        num_items=args.items, num_users=args.users, seed=args.seed, source=args.source
    )
    info = write_fashion_mnist(args.out, config, overwrite=args.overwrite)
    print(
        f"wrote {args.out}: {info.num_items} items, {info.num_users} users, "
        f"interactions {info.splits}, {len(info.cold_items)} cold items"
    )
    return 0


def _data_inspect(args) -> int:
    from mmrec.data import load
    from mmrec.data.inspect import summary, write_contact_sheet

    data = load(args.path)
    print(summary(data))
    sheet = args.sheet or os.path.join(args.path, "contact_sheet.png")
    write_contact_sheet(data, sheet, samples=args.samples)
    print(f"contact sheet: {sheet}")
    return 0


def _data_validate(args) -> int:
    from mmrec.data import ChecksumError, load, verify_checksums

    data = load(args.path, on_error="skip", verify="none")
    failures = 0
    try:
        verify_checksums(data.path, data.info)
        print("checksums: ok")
    except ChecksumError as e:
        print(f"checksums: {e}")
        failures += 1
    for kind in sorted(data.info.shards):
        problems = data.problems(kind)
        print(f"{kind}: {'ok' if not problems else f'{len(problems)} problem(s)'}")
        for problem in problems:
            print(textwrap.indent(problem, "  "))
        failures += len(problems)
    print(json.dumps({"problems": failures}))
    return 1 if failures else 0


def _evaluate(args) -> int:
    from mmrec.data import load
    from mmrec.evaluation.ranking import (
        OracleBaseline,
        PopularityBaseline,
        PosteriorBaseline,
        evaluate_ranking,
        ranking_table,
    )

    data = load(args.data)
    baselines = {
        "popularity": PopularityBaseline,
        "oracle": OracleBaseline,
        "posterior": PosteriorBaseline,
        "posterior+true_pop": lambda d: PosteriorBaseline(d, popularity="true"),
    }
    scorers = {}
    for name in filter(None, args.baselines.split(",")):
        if name not in baselines:
            raise ValueError(f"Expected baselines among {sorted(baselines)}. Received: {name!r}")
        if name != "popularity" and not data.info.affinity:
            continue
        scorers[name] = baselines[name](data)
    for spec in args.model:
        name, _, path = spec.rpartition("=")
        if not os.path.exists(path):
            raise FileNotFoundError(f"No saved model at '{path}' (expected a .keras file).")
        import keras

        import mmrec.models  # noqa: F401  (registers the classes for loading)

        scorers[name or os.path.basename(path)] = keras.saving.load_model(path)
    if not scorers:
        raise ValueError("Nothing to evaluate: give --model or --baselines.")
    results = {name: evaluate_ranking(s, data, args.split) for name, s in scorers.items()}
    print(f"{data.info.name} ({args.split} split)")
    print(ranking_table(results))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.out}")
    return 0


def _export(args) -> int:
    if not os.path.exists(args.model):
        raise FileNotFoundError(f"No saved model at '{args.model}' (expected a .keras file).")
    import keras

    import mmrec.models  # noqa: F401  (registers the classes for loading)
    from mmrec.export import export_saved_model

    model = keras.saving.load_model(args.model)
    path = export_saved_model(
        model,
        base_dir=args.base_dir,
        name=args.name,
        version=args.version,
        warmup=not args.no_warmup,
        validate=not args.no_validate,
        k=args.k,
    )
    checked = "not validated" if args.no_validate else "validated in a fresh TF process"
    print(f"exported {path} ({checked}); {os.path.join(args.base_dir, 'models.config')} updated")
    return 0


def _serve(args) -> int:
    from mmrec.serving import ModelServer

    try:
        server = ModelServer(
            args.model_base_path,
            model_config_file=args.model_config_file,
            rest_port=args.rest_port,
            grpc_port=args.grpc_port,
            host=args.host,
            max_batch_size=args.max_batch_size,
            max_body_bytes=args.max_body_bytes,
            poll_seconds=args.poll_seconds,
        )
        return server.serve_forever()
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        print(f"mmrec: error: could not start the server: {e}", file=sys.stderr)
        return 2


def _ids(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"Expected {what} as comma-separated ints, e.g. 3,17,42. Received: {text!r}"
        ) from None


def _predict(args) -> int:
    from mmrec.serving import Client, ServingError

    client = Client(args.server, protocol=args.protocol)
    try:
        metadata = client.metadata(args.model, args.version)
        signatures = metadata["metadata"]["signature_def"]["signature_def"]
        if "recommend" in signatures and args.png is None:
            return _predict_recommend(client, args)
        if "generate_image" in signatures:
            return _predict_images(client, args, set(signatures["generate_image"]["inputs"]))
        raise ValueError(
            f"Model '{args.model}' has neither a 'recommend' nor a 'generate_image' signature "
            f"(it has {sorted(signatures)}); --png needs a generator."
        )
    except ServingError as e:
        print(f"mmrec: error: {args.server} answered {e.code}: {e.message}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"mmrec: error: could not reach {args.server}: {e}", file=sys.stderr)
        return 2
    finally:
        client.close()


def _predict_recommend(client, args) -> int:
    if args.history is None:
        raise ValueError("Expected --history (item ids, e.g. 3,17,42) for a recommender.")
    history = [_ids(args.history, "--history")]
    out = client.predict(args.model, {"history": history}, "recommend", args.version)
    ids, scores = out["item_ids"][0], out["scores"][0]
    if args.k is not None:
        if args.k > len(ids):
            raise ValueError(f"Expected --k <= {len(ids)} (the exported k). Received: {args.k}")
        ids, scores = ids[: args.k], scores[: args.k]
    print("rank  item_id  score")
    for rank, (item, score) in enumerate(zip(ids, scores), start=1):
        print(f"{rank:<5} {int(item):<8} {float(score):.4f}")
    return 0


def _predict_images(client, args, input_names) -> int:
    import numpy as np

    if args.png is None:
        raise ValueError(f"Model '{args.model}' generates images: give --png PATH.")
    rows = args.count
    inputs = {"seed": np.arange(args.seed, args.seed + rows)}
    if "history" in input_names:
        if args.history is None:
            raise ValueError("Expected --history (item ids) for a user-conditioned generator.")
        inputs["history"] = [_ids(args.history, "--history")] * rows
    if "text" in input_names:
        if args.text is None:
            raise ValueError("Expected --text (a description) for a text-conditioned generator.")
        inputs["text"] = [args.text] * rows
    labels = sorted(n for n in input_names if n.startswith("label_"))
    if labels:
        given = {}
        for part in filter(None, (args.attributes or "").split(",")):
            key, _, value = part.partition("=")
            key = key.strip() if key.strip().startswith("label_") else f"label_{key.strip()}"
            given[key] = _ids(value, f"attribute {key}")[0]
        if sorted(given) != labels:
            names = ",".join(f"{n[len('label_') :]}=ID" for n in labels)
            raise ValueError(f"Expected --attributes {names}. Received: {args.attributes!r}")
        inputs.update({k: [v] * rows for k, v in given.items()})
    out = client.predict(args.model, inputs, "generate_image", args.version)
    _write_png_strip(out["images_png_bytes"], args.png)
    for name in sorted(n for n in out if n.startswith("label_")):  # a user's sampled attributes
        print(f"{name[len('label_') :]}: {out[name].tolist()}")
    print(f"wrote {args.png} ({rows} image(s) from '{args.model}', seeds {args.seed}..)")
    return 0


def _write_png_strip(pngs, path: str) -> None:
    """PNG bytes → one PNG, the images side by side."""
    import tensorflow as tf

    if len(pngs) == 1:
        data = bytes(pngs[0])
    else:
        images = [tf.io.decode_png(p, channels=3) for p in pngs]
        data = tf.io.encode_png(tf.concat(images, axis=1)).numpy()
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _train(args) -> int:
    if args.cpu_devices is not None:
        if args.strategy != "mirrored":
            raise ValueError(
                "--cpu-devices splits the CPU into devices for --strategy mirrored. "
                f"Received: --strategy {args.strategy}"
            )
        from mmrec.training.distribute import configure_cpu_devices

        configure_cpu_devices(args.cpu_devices)  # before TensorFlow starts
    from mmrec.training.configs import resolve_config
    from mmrec.training.runner import train

    config = resolve_config(
        args.kind, args.config, {"epochs": args.epochs, "batch_size": args.batch_size}
    )
    try:
        result = train(
            args.kind,
            args.data,
            args.out,
            config,
            recommender=args.recommender,
            judge=args.judge,
            strategy=args.strategy,
            mixed_precision=args.mixed_precision,
            jit_compile=args.jit,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except FloatingPointError as e:
        print(f"mmrec: error: {e}", file=sys.stderr)
        return 2
    if not result.metrics:  # a non-chief worker of a multi-worker run
        print(f"trained; the chief worker writes the run folder {args.out}")
        return 0
    print(f"run folder: {result.path} (model.keras, metrics.json, training.csv, logs/)")
    return 0


def _generate(args) -> int:
    from mmrec.training import samples

    data = None
    if args.users is not None or (args.attributes and args.export):
        data = _generate_data(args)
    if args.run_folder:
        model = _load_generator(args.run_folder)
        if args.users is not None:
            if model.condition != "user":
                raise ValueError(
                    f"'{args.run_folder}' is conditioned on {model.condition}, not users: use "
                    + ("--text." if model.condition == "text" else "--attributes.")
                )
            conditions = list(samples.user_histories(data, _ids(args.users, "--users")).values())
        elif args.text is not None:
            if model.condition != "text":
                raise ValueError(
                    f"'{args.run_folder}' is conditioned on {model.condition}, not text: use "
                    + ("--users or " if model.condition == "user" else "")
                    + "--attributes."
                )
            conditions = list(args.text)
        else:
            conditions = samples.parse_attributes(args.attributes)
        grid = samples.generate_grid(model, conditions, num=args.num, seed=args.seed)
    else:
        if args.users is not None:
            conditions = list(samples.user_histories(data, _ids(args.users, "--users")).values())
        elif args.text is not None:
            conditions = list(args.text)
        else:
            conditions = _attribute_ids(samples.parse_attributes(args.attributes), data)
        grid = samples.generate_grid_from_export(
            args.export, conditions, num=args.num, seed=args.seed
        )
    samples.write_grid(args.out, grid)
    rows = len(conditions) if not isinstance(conditions, dict) else 1
    print(f"wrote {args.out} ({rows} row(s) × {args.num} images)")
    return 0


def _generate_data(args):
    from mmrec.data import load

    path = args.data
    if path is None and args.run_folder:
        config = os.path.join(
            args.run_folder if os.path.isdir(args.run_folder) else "", "config.json"
        )
        if os.path.exists(config):
            with open(config) as f:
                path = json.load(f)["data"]
    if path is None:
        raise ValueError("Give --data DIR: the dataset whose users (or attribute names) to use.")
    return load(path)


def _attribute_ids(attributes, data):
    """Attribute names → class ids with the dataset's class names (an export has none)."""
    out = {}
    for name, values in attributes.items():
        classes = list((data.info.attributes or {}).get(name, []))
        ids = []
        for value in values:
            if isinstance(value, str):
                if value not in classes:
                    raise ValueError(f"Expected {name} to be one of {classes}. Received: {value!r}")
                value = classes.index(value)
            ids.append(value)
        out[name] = ids
    return out


def _load_generator(path):
    import keras

    import mmrec.models  # noqa: F401  (registers the classes for loading)
    from mmrec.models.generator import ConditionalImageModel

    model_path = os.path.join(path, "model.keras") if os.path.isdir(path) else path
    if not os.path.exists(model_path):
        raise FileNotFoundError(
            f"No trained generator at '{model_path}' (expected a run folder of "
            "`mmrec train gan|vae` or a .keras file)."
        )
    model = keras.saving.load_model(model_path, compile=False)
    if not isinstance(model, ConditionalImageModel):
        raise ValueError(
            f"Expected '{model_path}' to hold a ConditionalGAN or ConditionalVAE. "
            f"Received: {type(model).__name__}"
        )
    return model


def _quickstart(args) -> int:
    from mmrec.training.quickstart import quickstart

    quickstart(
        out=args.out, data=args.data, export_dir=args.export_dir, seed=args.seed, smoke=args.smoke
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mmrec.data import DataError

    try:
        return args.run(args)
    except (DataError, FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"mmrec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
