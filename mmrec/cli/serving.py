"""`mmrec export`, `mmrec serve` and `mmrec predict`: SavedModels, the local server, a client."""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import ssl
import sys

from mmrec.cli.generation import (
    attribute_inputs,
    attribute_names,
    check_option,
    condition_options,
)
from mmrec.cli.options import id_list, model_limit, port, positive_int
from mmrec.cli.runs import load_model
from mmrec.errors import UsageError, usage_errors
from mmrec.models.attributes import label_key

# A server that is down, unknown or hangs up (gRPC reports these as a ServingError).
# A TLS handshake that fails (an untrusted certificate, a plain-text server) is an ssl.SSLError.
_NETWORK_ERRORS = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    ssl.SSLError,
    http.client.HTTPException,
)


def add_commands(commands) -> None:
    _add_export(commands)
    _add_serve(commands)
    _add_predict(commands)


def _add_export(commands) -> None:
    export = commands.add_parser(
        "export",
        help="export a saved model (.keras) as a TF Serving SavedModel version",
        description=(
            "Export a saved Recommender, ConditionalGAN, ConditionalVAE, "
            "ConditionalTextGenerator, ConditionalAudioGenerator or MultimodalItemGenerator "
            "(.keras, run folder or item folder) to BASE_DIR/NAME/VERSION/ with named "
            "signatures, in-graph tokenisation and warm-up requests; check it in a fresh "
            "TensorFlow + tensorflow-text process; "
            "publish it atomically and list it in BASE_DIR/models.config."
        ),
    )
    export.add_argument("--model", required=True, help="a saved model (.keras or run folder)")
    export.add_argument("--name", default=None, help="model name (default: the model's name)")
    export.add_argument("--base-dir", default="savedmodels", help="folder of served models")
    export.add_argument(
        "--version", type=positive_int, default=None, help="default: latest version + 1"
    )
    export.add_argument(
        "--k", type=positive_int, default=10, help="items returned by a recommender's signature"
    )
    export.add_argument(
        "--no-warmup", action="store_true", help="write no assets.extra warm-up requests"
    )
    export.add_argument(
        "--no-validate", action="store_true", help="skip the fresh-process check (not advised)"
    )
    export.set_defaults(run=export_model)


def _add_serve(commands) -> None:
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
    serve.add_argument("--rest-port", type=port, default=8501)
    serve.add_argument("--grpc-port", type=port, default=8500)
    serve.add_argument(
        "--host",
        "--bind-address",
        default="127.0.0.1",
        help="interface to listen on (0.0.0.0: all)",
    )
    serve.add_argument(
        "--max-batch-size",
        type=model_limit,
        action="append",
        default=None,
        metavar="[MODEL=]N",
        help="largest batch per request (default 256); MODEL=N, repeated, sets one "
        "model's own limit, e.g. --max-batch-size 64 --max-batch-size generator=4",
    )
    serve.add_argument(
        "--max-body-bytes",
        "--max-message-size",
        type=positive_int,
        default=16 << 20,
        help="largest REST body / gRPC message, and largest decoded input (bytes)",
    )
    serve.add_argument(
        "--poll-seconds", type=float, default=1.0, help="how often to look for new versions"
    )
    # TF Serving's own names (tensorflow_model_server --help), with dashes.
    serve.add_argument(
        "--rest-api-num-threads",
        type=positive_int,
        default=None,
        help="REST handler threads; more connections wait their turn (default: 4 per CPU)",
    )
    serve.add_argument(
        "--rest-api-timeout-ms",
        type=positive_int,
        default=30_000,
        help="longest wait for a REST request's head, then its body, or an idle client's next "
        "request (408 / connection closed)",
    )
    serve.add_argument(
        "--grpc-max-threads",
        type=positive_int,
        default=None,
        help="gRPC threads; more calls wait their turn (default: 4 per CPU)",
    )
    serve.add_argument(
        "--ssl-config-file",
        default=None,
        help="TF Serving's SSLConfig text proto: serve gRPC and REST over TLS",
    )
    serve.set_defaults(run=serve_models)


def _add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict",
        help="ask a TF Serving (or mmrec serve) server for recommendations or images",
        description=(
            "Call a served model: a recommender prints the items recommended for --history "
            "(item ids) or --history-keys (the catalogue's own keys, for a model trained on "
            "a dataset with id maps, e.g. from `mmrec data import`): rank, item id, the item's "
            "key when the model has keys, and score; with --data DATASET also each item's "
            "text (e.g. a MovieLens title). A generator writes the images for --history, "
            "--text or --attributes (whichever its generate_image signature takes) to --png; "
            "a text generator prints --count descriptions (its generate_text signature), one "
            "per line. A complete-item generator (generate_item) writes, per item, its PNG, "
            "TXT and WAV into --out DIR and prints the sampled attributes and the text; an "
            "audio generator (generate_audio) writes WAVs there. A served model knows "
            "attribute ids only: --data DATASET resolves "
            "class names."
        ),
    )
    predict.add_argument("--server", default="localhost:8501", help="host:port")
    predict.add_argument("--model", required=True, help="the served model's name")
    predict.add_argument("--protocol", default="rest", choices=("rest", "grpc"))
    predict.add_argument(
        "--ssl-ca",
        default=None,
        metavar="FILE",
        help="TLS: the PEM certificate of the CA that signed the server's (e.g. a private CA); "
        "a server address https://HOST:PORT uses the system's CAs instead",
    )
    predict.add_argument(
        "--ssl-cert", default=None, metavar="FILE", help="TLS: a PEM client certificate"
    )
    predict.add_argument(
        "--ssl-key", default=None, metavar="FILE", help="TLS: the PEM key of --ssl-cert"
    )
    predict.add_argument("--version", type=positive_int, default=None)
    predict.add_argument(
        "--history", type=id_list, default=None, metavar="IDS", help="item ids, e.g. 3,17,42"
    )
    predict.add_argument(
        "--history-keys",
        type=key_list,
        default=None,
        metavar="KEYS",
        help="instead of --history: the items' external keys, comma-separated, e.g. "
        "1,296,593 (MovieLens movieIds); the model must have item keys",
    )
    predict.add_argument("--text", default=None, help="a description (text-conditioned models)")
    predict.add_argument(
        "--attributes",
        default=None,
        metavar="NAME=VALUE,...",
        help="class names or ids, e.g. shape=star,colour=1,pattern=0,size=2 (names need --data)",
    )
    predict.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="the dataset: item texts to print next to recommendations, class names "
        "for --attributes",
    )
    predict.add_argument(
        "--k", type=positive_int, default=None, help="show the top k (at most the exported k)"
    )
    predict.add_argument(
        "--seed", type=int, default=0, help="seed of the first image (or description)"
    )
    predict.add_argument(
        "--count", type=positive_int, default=1, help="images (or descriptions) to generate"
    )
    predict.add_argument("--png", default=None, help="write generated images to this PNG")
    predict.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="item (and audio) generators: write seed<N>.png, .txt and .wav per item here",
    )
    predict.set_defaults(run=predict_remote)


def export_model(args) -> int:
    from mmrec.export import export_saved_model
    from mmrec.models import ConditionalGAN, ConditionalVAE, Recommender
    from mmrec.models.audio_generation import ConditionalAudioGenerator
    from mmrec.models.item_generation import MultimodalItemGenerator
    from mmrec.models.text_generation import ConditionalTextGenerator

    exportable = (
        Recommender,
        ConditionalGAN,
        ConditionalVAE,
        ConditionalTextGenerator,
        ConditionalAudioGenerator,
        MultimodalItemGenerator,
    )
    model = load_model(args.model, exportable)
    with usage_errors():  # a taken version, an op TF Serving lacks, outputs that differ
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


def serve_models(args) -> int:
    from mmrec.serving import ModelServer

    try:
        with usage_errors():
            server = ModelServer(
                args.model_base_path,
                model_config_file=args.model_config_file,
                rest_port=args.rest_port,
                grpc_port=args.grpc_port,
                host=args.host,
                options=server_options(args),
            )
        return server.serve_forever()
    except FileNotFoundError:
        raise
    except OSError as e:  # a port in use, an interface that does not exist
        raise UsageError(f"could not start the server: {e}") from e


def server_options(args):
    """`mmrec serve`'s flat flags → a `ServerOptions`."""
    from mmrec.serving import ServerOptions

    limits = dict(args.max_batch_size or ())  # the last one given wins, as for any flag
    default = limits.pop(None, ServerOptions.max_batch_size)
    return ServerOptions(
        max_batch_size=default,
        model_max_batch_size=limits,
        max_body_bytes=args.max_body_bytes,
        poll_seconds=args.poll_seconds,
        rest_api_num_threads=args.rest_api_num_threads,
        rest_api_timeout_ms=args.rest_api_timeout_ms,
        grpc_max_threads=args.grpc_max_threads,
        ssl_config_file=args.ssl_config_file,
    )


def predict_remote(args) -> int:
    from mmrec.serving import Client, ServingError

    with usage_errors():
        client = Client(
            args.server,
            protocol=args.protocol,
            ssl_ca=args.ssl_ca,
            ssl_cert=args.ssl_cert,
            ssl_key=args.ssl_key,
        )
    try:
        metadata = client.metadata(args.model, args.version)
        signatures = metadata["metadata"]["signature_def"]["signature_def"]
        if "recommend" in signatures and args.png is None:
            return _recommend(client, args, signatures)
        if "generate_image" in signatures:
            inputs = set(signatures["generate_image"].get("inputs", {})) - {"seed"}
            return _generate(client, args, inputs)
        if "generate_text" in signatures:
            inputs = set(signatures["generate_text"].get("inputs", {})) - {"seed"}
            return _generate_text(client, args, inputs)
        for name in ("generate_item", "generate_audio"):
            if name in signatures:
                inputs = set(signatures[name].get("inputs", {})) - {"seed"}
                return _generate_files(client, args, inputs, name)
        raise UsageError(
            f"Model '{args.model}' has no 'recommend', 'generate_image', 'generate_text', "
            f"'generate_audio' or 'generate_item' signature (it has {sorted(signatures)}); "
            "--png needs an image generator."
        )
    except ServingError as e:
        hint = _tls_hint(client) if e.code == "UNAVAILABLE" else ""
        raise UsageError(f"{args.server} answered {e.code}: {e.message}{hint}") from e
    except _NETWORK_ERRORS as e:
        message = f"could not reach {args.server}: {str(e) or type(e).__name__}"
        raise UsageError(message + _tls_hint(client)) from e
    finally:
        client.close()


def _tls_hint(client) -> str:
    # A TLS server hangs up on plain text, which reads like a server that is down.
    if client.tls:
        return ""
    return " (if the server uses TLS, give --ssl-ca FILE, or an https:// address)"


def key_list(text: str) -> list[str]:
    """``--history-keys 1,296,593``: comma-separated external item keys."""
    keys = [v.strip() for v in text.split(",") if v.strip()]
    if not keys:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated item keys, e.g. 1,296,593, received {text!r}"
        )
    return keys


def _recommend(client, args, signatures) -> int:
    if (args.history is None) == (args.history_keys is None):
        raise UsageError(
            "Expected either --history (item ids, e.g. 3,17,42) or --history-keys (item keys, "
            "e.g. 1,296,593) for a recommender."
        )
    history = args.history
    if args.history_keys is not None:
        if "lookup_item_ids" not in signatures:
            raise UsageError(
                f"Model '{args.model}' has no item keys (its dataset had no id maps): give "
                "--history with item ids."
            )
        request = {"item_keys": [args.history_keys]}
        out = client.predict(args.model, request, "lookup_item_ids", args.version)
        history = out["item_ids"][0].tolist()
    out = client.predict(args.model, {"history": [history]}, "recommend", args.version)
    ids, scores = out["item_ids"][0], out["scores"][0]
    keys = out["item_keys"][0] if "item_keys" in out else None
    if args.k is not None:
        if args.k > len(ids):
            raise UsageError(f"Expected --k <= {len(ids)} (the exported k). Received: {args.k}")
        ids, scores = ids[: args.k], scores[: args.k]
    texts = None
    if args.data is not None:
        dataset_keys, texts = _catalogue_descriptions(args.data, ids)
        keys = dataset_keys if keys is None else keys
    print(recommendation_table(ids, scores, keys, texts))
    return 0


def _catalogue_descriptions(path, ids):
    """The dataset's keys and texts of items ``ids`` (each None if the dataset has none)."""
    from mmrec.data import load

    with usage_errors():
        data = load(path, verify="none")
    if ids.size and int(ids.max()) >= data.info.num_items:
        raise UsageError(
            f"--data {path} has {data.info.num_items} items, but the model returned item "
            f"{int(ids.max())}: give the dataset the model was trained on."
        )
    keys = data.item_keys()  # None without id maps (the benchmarks)
    texts = data.catalogue().texts.numpy() if "text" in data.info.modalities else None
    return (
        None if keys is None else [keys[int(i)] for i in ids],
        None if texts is None else [texts[int(i)] for i in ids],
    )


def recommendation_table(ids, scores, keys=None, texts=None, width=60) -> str:
    """The lines ``mmrec predict`` prints: rank, item id, [item key,] score[, text].

    Args:
        ids, scores: one user's recommendations, best first.
        keys: the recommended items' external keys (str or bytes), or None.
        texts: the recommended items' texts (str or bytes), or None; longer
            than ``width`` characters, they are cut with "…".
    """

    def text(value):
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)

    columns = [("rank", [str(r) for r in range(1, len(ids) + 1)])]
    columns.append(("item_id", [str(int(i)) for i in ids]))
    if keys is not None:
        columns.append(("item_key", [text(k) for k in keys]))
    columns.append(("score", [f"{float(s):.4f}" for s in scores]))
    if texts is not None:
        cut = [text(t) for t in texts]
        columns.append(("text", [t if len(t) <= width else t[: width - 1] + "…" for t in cut]))
    widths = [max(len(name), *(len(v) for v in values)) for name, values in columns]
    rows = [[name for name, _ in columns]] + [list(row) for row in zip(*(v for _, v in columns))]
    return "\n".join(
        "  ".join(value.ljust(w) for value, w in zip(row, widths)).rstrip() for row in rows
    )


def generate_image_request(
    input_names, history=None, text=None, attributes=None, classes=None, seed=0, count=1
) -> dict:
    """The inputs of a ``generate_image`` (or ``generate_text``) request: ``count`` images
    (descriptions), seeds ``seed``, ``seed+1``, … (the client casts them to the signature's
    dtype).

    Args:
        input_names: the signature's inputs, less ``seed``.
        history, text, attributes: the options given (``attributes`` as typed:
            ``"shape=star,colour=3"``, names or ids).
        classes: ``{attribute: [class names]}`` to resolve attribute names (from
            ``--data``); None accepts ids only.
    """
    import numpy as np

    accepted = condition_options(input_names, history_option="--history", item_option=None)
    options = {"--history": history, "--text": text, "--attributes": attributes}
    given = [option for option, value in options.items() if value is not None]
    for option in given:
        check_option(option, accepted, f"This generator takes {sorted(input_names)}")
    missing = [option for option in accepted if option not in given]
    if missing:
        raise UsageError(
            f"Expected {' and '.join(missing)} for this generator "
            f"(it takes {sorted(input_names)}). Received: {', '.join(given) or 'none'}"
        )
    inputs = {"seed": np.arange(seed, seed + count, dtype=np.int64)}
    if history is not None:
        inputs["history"] = [list(history)] * count
    if text is not None:
        inputs["text"] = [text] * count
    if attributes is not None:
        labels = attribute_inputs(attributes, classes, attribute_names(input_names))
        if any(len(ids) != 1 for ids in labels.values()):
            raise UsageError(f"Expected one value per attribute. Received: {attributes!r}")
        inputs.update({key: np.repeat(ids, count) for key, ids in labels.items()})
    return inputs


def _generator_request(args, input_names) -> dict:
    """A generator signature's inputs from the options (class names resolved with --data)."""
    if args.history_keys is not None:
        raise UsageError("--history-keys is for recommenders; a generator takes --history (ids).")
    classes = None
    if args.data is not None:
        from mmrec.data import DatasetInfo

        classes = DatasetInfo.read(args.data).attributes
    return generate_image_request(
        input_names, args.history, args.text, args.attributes, classes, args.seed, args.count
    )


def _generate(client, args, input_names) -> int:
    if args.png is None:
        raise UsageError(f"Model '{args.model}' generates images: give --png PATH.")
    inputs = _generator_request(args, input_names)
    out = client.predict(args.model, inputs, "generate_image", args.version)
    _write_png_strip(out["images_png_bytes"], args.png)
    for name in attribute_names(out):  # what a user-conditioned model sampled
        print(f"{name}: {out[label_key(name)].tolist()}")
    print(f"wrote {args.png} ({args.count} image(s) from '{args.model}', seeds {args.seed}..)")
    return 0


def _generate_text(client, args, input_names) -> int:
    if args.png is not None:
        raise UsageError(f"Model '{args.model}' generates descriptions, not images: drop --png.")
    inputs = _generator_request(args, input_names)
    out = client.predict(args.model, inputs, "generate_text", args.version)
    for name in attribute_names(out):  # what a user-conditioned model sampled
        print(f"{name}: {out[label_key(name)].tolist()}", file=sys.stderr)
    for text in out["text"]:
        print(text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text))
    return 0


# What generate_item and generate_audio answer, written as files: output → extension.
MEDIA_OUTPUTS = {"image_png_bytes": "png", "text": "txt", "audio_wav_bytes": "wav"}


def _generate_files(client, args, input_names, signature) -> int:
    """``generate_item`` (PNG, TXT and WAV per item) or ``generate_audio`` (WAV) → ``--out``."""
    what = "items" if signature == "generate_item" else "sounds"
    if args.out is None or args.png is not None:
        raise UsageError(f"Model '{args.model}' generates {what}: give --out DIR (not --png).")
    inputs = _generator_request(args, input_names)
    out = client.predict(args.model, inputs, signature, args.version)
    written = write_media_files(args.out, out, [f"seed{s}" for s in inputs["seed"]])
    names = attribute_names(out)
    for row, seed in enumerate(inputs["seed"]):
        sampled = ", ".join(f"{n}={int(out[label_key(n)][row])}" for n in names)
        text = out.get("text")
        line = "" if text is None else _decoded(text[row])
        print(f"seed {seed}: {sampled}  {line}".rstrip())
    print(f"wrote {len(written)} files to {args.out}")
    return 0


def write_media_files(folder, outputs, prefixes) -> list[str]:
    """A generate_item/generate_audio response → ``<prefix>.png|.txt|.wav`` in ``folder``."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for output, extension in MEDIA_OUTPUTS.items():
        if output not in outputs:
            continue
        for prefix, value in zip(prefixes, outputs[output]):
            path = os.path.join(folder, f"{prefix}.{extension}")
            if extension == "txt":
                with open(path, "w", encoding="utf-8") as f:
                    f.write(_decoded(value) + "\n")
            else:
                with open(path, "wb") as f:
                    f.write(bytes(value))
            written.append(path)
    return written


def _decoded(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _write_png_strip(pngs, path: str) -> None:
    """PNG bytes → one PNG, the images side by side."""
    import tensorflow as tf

    if len(pngs) == 1:
        data = bytes(pngs[0])
    else:
        images = [tf.io.decode_png(p, channels=3) for p in pngs]
        data = tf.io.encode_png(tf.concat(images, axis=1)).numpy()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
