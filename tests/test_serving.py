"""`mmrec serve` as a real subprocess: TF Serving's REST and gRPC APIs, errors, hot reload, CLI.

One server serves a tiny recommender ("rec"), one with external item keys
("rec_keys") and a tiny text-conditioned GAN ("generator") exported into a
temporary base folder; the tests call it with raw
HTTP JSON written as TF Serving's REST docs specify, with
``tensorflow-serving-api``'s ``PredictionServiceStub``, and with `mmrec.serving.Client`.
"""

import base64
import concurrent.futures
import http.client
import json
import os
import signal
import subprocess
import sys
import time

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

import mmrec
from mmrec.cli import main
from mmrec.export import export_saved_model, seeded_noise, versions
from mmrec.models import ConditionalGAN
from mmrec.models.recommender import Recommender
from mmrec.serving import Client, ModelManager, ServingError
from mmrec.testing import start_server, stop_server

TINY_ENCODERS = {
    "image": {"filters": [4, 8]},
    "text": {"hidden_dim": 8, "sequence_length": 16},
}
TINY_GAN = {"latent_dim": 8, "generator_filters": (16, 8, 8, 4), "discriminator_filters": (4, 8, 8)}
MAX_BATCH = 8
REC_KEYS_MAX_BATCH = 2
MAX_BODY = 200_000


def tiny_recommender(data, **kwargs):
    return Recommender.from_dataset(
        data,
        modalities=("image", "text"),
        embedding_dim=8,
        encoder_config=TINY_ENCODERS,
        **kwargs,
    )


def item_key(item_id):
    return f"sku-{7 * item_id:04d}"


class Served:
    """The server process and what it serves."""

    def __init__(self, process, lines, ready, base, data, rec, gan, rec_keys):
        self.process = process
        self.lines = lines
        self.rest = ready["rest"]
        self.grpc = ready["grpc"]
        self.base = base
        self.data = data
        self.rec = rec  # the recommender whose version is served now
        self.gan = gan
        self.rec_keys = rec_keys  # a recommender with item keys

    def wait_for_line(self, text, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(text in line for line in self.lines):
                return
            time.sleep(0.1)
        raise AssertionError(f"no line with {text!r} in the server output: {self.lines[-10:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    mmrec.data.write_shapes(
        root / "shapes", mmrec.data.ShapesConfig(num_items=60, num_users=24), progress=False
    )
    data = mmrec.data.load(str(root / "shapes"))
    rec = tiny_recommender(data)
    gan = ConditionalGAN.from_dataset(data, condition="text", seed=0, **TINY_GAN)
    rec_keys = tiny_recommender(data, item_keys=[item_key(i) for i in range(60)])
    base = root / "savedmodels"
    # Validation (a fresh-process check per export) is covered by test_export.py.
    export_saved_model(rec, base, name="rec", validate=False)
    export_saved_model(gan, base, name="generator", validate=False)
    export_saved_model(rec_keys, base, name="rec_keys", validate=False)
    process, ready, lines, _ = start_server(
        base,
        root / "server.log",
        *("--max-batch-size", MAX_BATCH),
        # Per model: rec_keys takes fewer rows than the others; "nope" is not served.
        *("--max-batch-size", f"rec_keys={REC_KEYS_MAX_BATCH}", "--max-batch-size", "nope=1"),
        "--max-body-bytes",
        MAX_BODY,
        "--poll-seconds",
        "0.2",
    )
    yield Served(process, lines, ready, base, data, rec, gan, rec_keys)
    stop_server(process)


# --- raw HTTP, as TF Serving's REST docs write it ---------------------------------------------


def http_call(served, method, path, body=None):
    host, port = served.rest.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def post(served, path, body):
    return http_call(served, "POST", path, body if isinstance(body, bytes) else body.encode())


def expected_recommendations(served, histories):
    return served.rec.recommend(histories, k=10)


def assert_serves_correct_answers(served):
    """The served recommender still answers like the in-memory model."""
    status, body = post(
        served, "/v1/models/rec:predict", '{"signature_name": "recommend", "inputs": [[3, 17, 42]]}'
    )
    assert status == 200, body
    ids, scores = expected_recommendations(served, [[3, 17, 42]])
    np.testing.assert_array_equal(body["outputs"]["item_ids"], ids)
    np.testing.assert_allclose(body["outputs"]["scores"], scores, rtol=1e-5, atol=1e-6)


def expected_images(served, texts, seeds):
    seeds = tf.constant(seeds, tf.int64)
    images = served.gan.decode(seeded_noise(seeds, served.gan.latent_dim), tf.constant(texts))
    return keras.ops.convert_to_numpy(images)


def test_status_and_metadata_as_tf_serving_returns_them(served):
    ok = {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert http_call(served, "GET", "/v1/models/rec") == (200, ok)
    assert http_call(served, "GET", "/v1/models/rec/versions/1") == (200, ok)
    status, metadata = http_call(served, "GET", "/v1/models/rec/metadata")
    assert status == 200
    assert metadata["model_spec"] == {"name": "rec", "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == {"recommend", "embed_user", "embed_item", "serving_default"}
    recommend = signatures["recommend"]
    assert recommend["method_name"] == "tensorflow/serving/predict"
    history = recommend["inputs"]["history"]
    assert history["dtype"] == "DT_INT32"
    assert [d["size"] for d in history["tensor_shape"]["dim"]] == ["-1", "-1"]
    assert recommend["outputs"]["item_ids"]["dtype"] == "DT_INT32"
    assert recommend["outputs"]["scores"]["dtype"] == "DT_FLOAT"
    generator = http_call(served, "GET", "/v1/models/generator/metadata")[1]
    outputs = generator["metadata"]["signature_def"]["signature_def"]["generate_image"]["outputs"]
    assert outputs["images_png_bytes"]["dtype"] == "DT_STRING"


def test_rest_row_and_columnar_formats_equal_the_model(served):
    ids, scores = expected_recommendations(served, [[3, 17, 42], [5]])
    row = '{"signature_name": "recommend", "instances": [[3, 17, 42, -1], [5, -1, -1, -1]]}'
    status, body = post(served, "/v1/models/rec:predict", row)
    assert status == 200, body
    assert [sorted(p) for p in body["predictions"]] == [["item_ids", "scores"]] * 2
    np.testing.assert_array_equal([p["item_ids"] for p in body["predictions"]], ids)
    # atol too: the server's threads may sum in another order (last-digit differences).
    np.testing.assert_allclose(
        [p["scores"] for p in body["predictions"]], scores, rtol=1e-5, atol=1e-6
    )

    columnar = '{"signature_name": "recommend", "inputs": {"history": [[3, 17, 42], [5, -1, -1]]}}'
    status, body = post(served, "/v1/models/rec/versions/1:predict", columnar)
    assert status == 200, body
    np.testing.assert_array_equal(body["outputs"]["item_ids"], ids)
    np.testing.assert_allclose(body["outputs"]["scores"], scores, rtol=1e-5, atol=1e-6)
    # No signature_name: serving_default, which is `recommend`.
    default = post(served, "/v1/models/rec:predict", '{"instances": [[3, 17, 42]]}')[1]
    np.testing.assert_array_equal(default["predictions"][0]["item_ids"], ids[0])

    # One output: its name is omitted, as in TF Serving.
    users = served.rec.user_embeddings(
        np.array([[3, 17, 42] + [-1] * 47], "int32"), served.rec.item_embeddings()
    )
    body = post(
        served,
        "/v1/models/rec:predict",
        '{"signature_name": "embed_user", "inputs": [[3, 17, 42]]}',
    )[1]
    np.testing.assert_allclose(body["outputs"], users, rtol=1e-5, atol=1e-6)

    # Raw text, plain and base64, tokenised in the graph.
    features = served.data.catalogue().features()
    images = features["image"][:2].numpy().tolist()
    texts = [t.decode() for t in features["text"][:2].numpy()]
    instances = [
        {"image": images[0], "text": texts[0]},
        {"image": images[1], "text": {"b64": base64.b64encode(texts[1].encode()).decode()}},
    ]
    request = json.dumps({"signature_name": "embed_item", "instances": instances})
    status, body = post(served, "/v1/models/rec:predict", request)
    assert status == 200, body
    expected = keras.ops.convert_to_numpy(served.rec.item_embeddings())[:2]
    np.testing.assert_allclose(body["predictions"], expected, rtol=1e-5, atol=1e-6)


def test_rest_generator_returns_png_bytes_as_b64(served):
    description = "a large red star on a striped background"
    instances = [
        {"text": description, "seed": 3},
        {"text": {"b64": base64.b64encode(b"blue ring").decode()}, "seed": 4},
    ]
    status, body = post(
        served, "/v1/models/generator:predict", json.dumps({"instances": instances})
    )
    assert status == 200, body
    expected = expected_images(served, [description, "blue ring"], [3, 4])
    for prediction, image in zip(body["predictions"], expected):
        np.testing.assert_allclose(prediction["images"], image, atol=1e-5)
        png = base64.b64decode(prediction["images_png_bytes"]["b64"])
        assert png.startswith(b"\x89PNG")
        pixels = tf.io.decode_png(png).numpy()
        np.testing.assert_array_equal(pixels, np.round((image.clip(-1, 1) + 1) * 127.5))


def test_grpc_predict_and_metadata_with_the_serving_api_stub(served):
    with grpc.insecure_channel(served.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "rec"
        request.model_spec.signature_name = "recommend"
        history = np.array([[3, 17, 42], [5, -1, -1]], "int32")
        request.inputs["history"].CopyFrom(tf.make_tensor_proto(history))
        response = stub.Predict(request, timeout=30)
        assert response.model_spec.version.value == 1
        ids, scores = expected_recommendations(served, [[3, 17, 42], [5]])
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs["item_ids"]), ids)
        np.testing.assert_allclose(
            tf.make_ndarray(response.outputs["scores"]), scores, rtol=1e-5, atol=1e-6
        )

        request.output_filter.append("item_ids")
        assert set(stub.Predict(request, timeout=30).outputs) == {"item_ids"}

        request = predict_pb2.PredictRequest()
        request.model_spec.name = "generator"
        request.model_spec.signature_name = "generate_image"
        request.inputs["text"].CopyFrom(tf.make_tensor_proto(np.array([b"blue ring"], object)))
        request.inputs["seed"].CopyFrom(tf.make_tensor_proto(np.array([4], "int64")))
        response = stub.Predict(request, timeout=30)
        png = tf.make_ndarray(response.outputs["images_png_bytes"])[0]
        image = expected_images(served, ["blue ring"], [4])[0]
        pixels = tf.io.decode_png(png).numpy()
        np.testing.assert_array_equal(pixels, np.round((image.clip(-1, 1) + 1) * 127.5))

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "rec"
        response = stub.GetModelMetadata(request, timeout=30)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signatures)
        assert response.model_spec.version.value == 1
        assert "recommend" in signatures.signature_def
        assert set(signatures.signature_def["embed_item"].inputs) == {"image", "text"}


def test_grpc_errors_have_canonical_codes_and_serving_continues(served):
    with grpc.insecure_channel(served.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def call(name="rec", signature="recommend", version=None, **inputs):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.model_spec.signature_name = signature
            if version is not None:
                request.model_spec.version.value = version
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            with pytest.raises(grpc.RpcError) as error:
                stub.Predict(request, timeout=30)
            return error.value.code(), error.value.details()

        good = np.array([[3, 17, 42]], "int32")
        code, details = call(name="nope", history=good)
        assert code == grpc.StatusCode.NOT_FOUND and "Latest(nope)" in details
        code, details = call(version=9, history=good)
        assert code == grpc.StatusCode.NOT_FOUND and "Specific(rec, 9)" in details
        code, details = call(signature="rank", history=good)
        assert code == grpc.StatusCode.NOT_FOUND and "'recommend'" in details
        code, details = call(history=good.astype("float32"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "dtype int32" in details
        code, details = call(items=good)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "history (int32" in details
        code, details = call(history=np.zeros((MAX_BATCH + 1, 3), "int32"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and f"batch size {MAX_BATCH}" in details
        code, details = call(history=np.zeros((1, MAX_BODY // 4 + 1), "int32"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_serves_correct_answers(served)


RECOMMEND = "/v1/models/rec:predict"
BAD_REQUESTS = {
    "malformed JSON": (RECOMMEND, '{"instances": [1', 400, "Malformed JSON"),
    "not an object": (RECOMMEND, "[1, 2]", 400, "JSON object"),
    "neither format": (RECOMMEND, '{"signature_name": "recommend"}', 400, "'instances'"),
    "unknown model": ("/v1/models/nope:predict", '{"instances": [[1]]}', 404, "Latest(nope)"),
    "unknown version": (
        "/v1/models/rec/versions/9:predict",
        '{"instances": [[1]]}',
        404,
        "Specific(rec, 9)",
    ),
    "unknown signature": (
        RECOMMEND,
        '{"signature_name": "rank", "instances": [[1]]}',
        404,
        "Available: ['embed_item', 'embed_user', 'recommend', 'serving_default']",
    ),
    "missing input": (
        RECOMMEND,
        '{"signature_name": "embed_item", "inputs": {"text": ["a red star"]}}',
        400,
        "Missing input(s) ['image']",
    ),
    "unknown input": (
        RECOMMEND,
        '{"inputs": {"history": [[1]], "user": [7]}}',
        400,
        "unknown input(s) ['user']",
    ),
    "strings for ints": (RECOMMEND, '{"inputs": [["3", "17"]]}', 400, "int32 values"),
    "floats for ints": (RECOMMEND, '{"inputs": [[3.5, 17]]}', 400, "int32 values"),
    "wrong rank": (RECOMMEND, '{"inputs": [3, 17, 42]}', 400, "shape [-1, -1]"),
    "ragged rows": (RECOMMEND, '{"inputs": [[3, 17], [42]]}', 400, "Pad them"),
    "id out of range": (RECOMMEND, '{"inputs": [[3, 600]]}', 400, "item ids in [0, 60)"),
    "bad base64": (
        RECOMMEND,
        '{"signature_name": "embed_item", "inputs": {"image": [], "text": [{"b64": "@@"}]}}',
        400,
        "base64",
    ),
    "batch over the limit": (
        RECOMMEND,
        json.dumps({"instances": [[1]] * (MAX_BATCH + 1)}),
        400,
        f"maximum batch size {MAX_BATCH}",
    ),
    "body too large": (
        RECOMMEND,
        json.dumps({"instances": [[1] * (MAX_BODY // 2)]}),
        413,
        f"limit of {MAX_BODY} bytes",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_rest_requests_get_4xx_and_the_server_keeps_serving(served, case):
    path, body, expected_status, words = BAD_REQUESTS[case]
    status, payload = post(served, path, body)
    assert status == expected_status, payload
    assert set(payload) == {"error"} and words in payload["error"], payload
    assert_serves_correct_answers(served)


def test_max_batch_size_per_model_overrides_the_server_wide_one(served):
    rows = REC_KEYS_MAX_BATCH + 1
    histories = [[3, 17, 42]] * rows
    with Client(served.rest) as rest, Client(served.grpc, protocol="grpc") as remote:
        for client in (rest, remote):
            with pytest.raises(ServingError) as error:
                client.predict("rec_keys", {"history": histories}, "recommend")
            assert error.value.code == "INVALID_ARGUMENT"
            assert f"batch size {rows}, over" in error.value.message
            assert f"maximum batch size {REC_KEYS_MAX_BATCH}" in error.value.message
            limit = client.predict("rec_keys", {"history": histories[:-1]}, "recommend")
            assert limit["item_ids"].shape == (REC_KEYS_MAX_BATCH, 10)
            # The other models keep the server-wide limit.
            ids = client.predict("rec", {"history": histories}, "recommend")["item_ids"]
            np.testing.assert_array_equal(ids, expected_recommendations(served, histories)[0])
    served.wait_for_line("--max-batch-size names model(s) ['nope'] that are not served")


def test_unknown_model_status_is_404(served):
    status, payload = http_call(served, "GET", "/v1/models/nope")
    assert status == 404 and "nope" in payload["error"]
    status, payload = http_call(served, "GET", "/v1/models/rec/versions/3")
    assert status == 404 and "version 3" in payload["error"]


def test_models_config_file_chooses_the_models_and_their_folders(served):
    both = ModelManager(str(served.base), model_config_file=str(served.base / "models.config"))
    assert both.sources() == {
        "rec": str(served.base / "rec"),  # base_path "/models/rec", found next to the file
        "generator": str(served.base / "generator"),
        "rec_keys": str(served.base / "rec_keys"),
    }
    only = served.base / "generator_only.config"
    only.write_text(
        'model_config_list { config { name: "generator" base_path: "/models/generator" '
        'model_platform: "tensorflow" } }'
    )
    lines = []
    manager = ModelManager(str(served.base), model_config_file=str(only), log=lines.append)
    manager.refresh()
    assert manager.names() == ["generator"] and "serving generator version 1" in lines[0]
    only.unlink()


def test_concurrent_clients_get_correct_answers(served):
    histories = [[i, (i * 7) % 60, (i * 13) % 60] for i in range(16)]
    expected_ids, _ = expected_recommendations(served, histories)

    def run(worker):
        client = Client(
            served.rest if worker % 2 else served.grpc, "rest" if worker % 2 else "grpc"
        )
        with client:
            return [
                client.predict("rec", {"history": [h]}, "recommend")["item_ids"][0]
                for h in histories
            ]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(8)))
    for ids in results:
        np.testing.assert_array_equal(ids, expected_ids)


def test_client_rest_and_grpc_return_the_same_arrays(served):
    with Client(served.rest) as rest, Client(served.grpc, protocol="grpc") as remote:
        for client in (rest, remote):
            out = client.predict("rec", {"history": [[3, 17, 42]]}, signature_name="recommend")
            assert out["item_ids"].dtype == np.int32 and out["scores"].dtype == np.float32
            out = client.predict(
                "generator", {"text": ["blue ring"], "seed": [4]}, "generate_image"
            )
            assert isinstance(out["images_png_bytes"][0], bytes)
            assert out["images"].dtype == np.float32
        assert rest.status("rec") == remote.status("rec")
        assert rest.metadata("rec")["model_spec"] == remote.metadata("rec")["model_spec"]
        with pytest.raises(ServingError, match="NOT_FOUND") as error:
            rest.predict("nope", {"history": [[1]]})
        assert error.value.http_status == 404


@pytest.mark.slow
def test_killed_export_leaves_no_version_and_the_server_keeps_serving(served, tmp_path):
    saved = tmp_path / "rec.keras"
    served.rec.save(saved)
    args = [sys.executable, "-m", "mmrec.cli", "export", "--model", str(saved)]
    args += ["--base-dir", str(served.base), "--name", "rec"]
    env = {**os.environ, "MMREC_EXPORT_PAUSE_BEFORE_RENAME": "120", "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 180
        for line in process.stderr:  # validated; about to rename
            if "pausing" in line or time.time() > deadline:
                break
        model_dir = served.base / "rec"
        entries = os.listdir(model_dir)
        temporary = [e for e in entries if e.startswith(".tmp-") and not e.endswith("-scratch")]
        assert len(temporary) == 1, entries
        assert (model_dir / temporary[0] / "saved_model.pb").exists()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert versions(served.base / "rec") == [1]
    time.sleep(1.0)  # several polls of the server
    assert (
        http_call(served, "GET", "/v1/models/rec")[1]["model_version_status"][0]["version"] == "1"
    )
    assert_serves_correct_answers(served)


def test_new_version_is_served_without_a_restart(served):
    keras.utils.set_random_seed(99)
    new = tiny_recommender(served.data)  # other weights, other recommendations
    export_saved_model(new, served.base, name="rec", validate=False)  # validation: test_export
    assert versions(served.base / "rec") == [1, 2]
    assert not [e for e in os.listdir(served.base / "rec") if e.startswith(".tmp-")]
    served.wait_for_line("serving rec version 2")
    served.rec = new
    status = http_call(served, "GET", "/v1/models/rec")[1]
    assert [s["version"] for s in status["model_version_status"]] == ["2"]
    assert http_call(served, "GET", "/v1/models/rec/metadata")[1]["model_spec"]["version"] == "2"
    assert_serves_correct_answers(served)
    assert post(served, "/v1/models/rec/versions/1:predict", '{"inputs": [[3]]}')[0] == 404


def test_mmrec_predict_prints_ids_and_writes_a_png(served, capsys, tmp_path):
    assert main(["predict", "--server", served.rest, "--model", "rec", "--history", "3,17,42"]) == 0
    ids, _ = expected_recommendations(served, [[3, 17, 42]])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["rank", "item_id", "score"]
    assert [int(line.split()[1]) for line in printed[1:]] == ids[0].tolist()

    out = tmp_path / "images.png"
    args = ["predict", "--server", served.grpc, "--protocol", "grpc", "--model", "generator"]
    args += ["--text", "blue ring", "--seed", "4", "--count", "3", "--png", str(out)]
    assert main(args) == 0
    strip = tf.io.decode_png(out.read_bytes()).numpy()
    expected = expected_images(served, ["blue ring"] * 3, [4, 5, 6])
    expected = np.concatenate(np.round((expected.clip(-1, 1) + 1) * 127.5), axis=1)
    np.testing.assert_array_equal(strip, expected)

    assert main(["predict", "--server", served.rest, "--model", "nope", "--history", "3"]) == 2
    assert "NOT_FOUND" in capsys.readouterr().err


def test_mmrec_predict_takes_and_prints_item_keys_and_texts(served, capsys):
    ids, scores, keys = served.rec_keys.recommend([[3, 17, 42]], k=10, return_keys=True)
    texts = served.data.catalogue().texts.numpy()
    predict = ["predict", "--server", served.rest, "--model", "rec_keys"]
    history = ",".join(item_key(i) for i in (3, 17, 42))
    assert main([*predict, "--history-keys", history, "--data", served.data.path]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["rank", "item_id", "item_key", "score", "text"]
    rows = [line.split(maxsplit=4) for line in printed[1:]]
    assert [int(row[1]) for row in rows] == ids[0].tolist()
    assert [row[2] for row in rows] == keys[0].tolist()
    np.testing.assert_allclose([float(row[3]) for row in rows], scores[0], atol=1e-4)
    for row, item in zip(rows, ids[0]):  # the item's text, cut to 60 characters with "…"
        text = texts[item].decode()
        assert row[4] == text if len(text) <= 60 else row[4] == text[:59] + "…"

    # Item ids in, keys out, over gRPC too.
    grpc_predict = ["predict", "--server", served.grpc, "--protocol", "grpc", "--model", "rec_keys"]
    assert main([*grpc_predict, "--history", "3,17,42", "--k", "3"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[2] for line in printed[1:]] == keys[0][:3].tolist()

    assert main([*predict, "--history-keys", f"{item_key(3)},nope"]) == 2
    assert "INVALID_ARGUMENT: Unknown item keys: nope" in capsys.readouterr().err
    no_keys = ["predict", "--server", served.rest, "--model", "rec", "--history-keys", "a"]
    assert main(no_keys) == 2
    assert "Model 'rec' has no item keys" in capsys.readouterr().err
    assert main([*predict, "--history", "3", "--history-keys", item_key(3)]) == 2
    assert "Expected either --history" in capsys.readouterr().err


def test_serving_package_imports_no_model_code():
    code = (
        "import sys, mmrec.serving; "
        "print(sorted(m for m in sys.modules if m.startswith(('mmrec.models', 'mmrec.layers', "
        "'mmrec.export', 'mmrec.training'))))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr[-2000:]


def test_sigterm_stops_the_server_gracefully(served):
    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0
    served.wait_for_line("mmrec serve: stopped", timeout=5)
