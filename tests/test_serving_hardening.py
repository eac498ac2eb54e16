"""`mmrec serve` against hostile and heavy traffic: each test is a request that used to hurt.

One real server (a subprocess on loopback) serves a tiny recommender through a
``models.config``, with small limits; the tests call it with raw sockets,
`http.client` and the ``tensorflow-serving-api`` gRPC stubs. A second server
serves the same model over TLS.
"""

import concurrent.futures
import http.client
import json
import shutil
import socket
import ssl
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

import mmrec
from mmrec.cli import main
from mmrec.export import export_saved_model
from mmrec.models.recommender import Recommender
from mmrec.serving import Client, ServingError
from mmrec.serving.certificates import write_tls_files
from mmrec.testing import start_server, stop_server

MAX_BATCH = 8
MAX_BODY = 200_000
TIMEOUT_MS = 1000


@pytest.fixture(scope="module")
def exported(tiny_shapes, tmp_path_factory):
    data = mmrec.data.load(tiny_shapes)
    rec = Recommender.from_dataset(
        data,
        modalities=("image", "text"),
        embedding_dim=8,
        encoder_config={"image": {"filters": [4, 8]}, "text": {"hidden_dim": 8}},
    )
    base = tmp_path_factory.mktemp("hardening") / "savedmodels"
    export_saved_model(rec, base, name="rec", validate=False)  # validation: test_export.py
    return base


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    process, ready, lines, _ = start_server(
        exported,
        tmp_path_factory.mktemp("log") / "server.log",
        *("--model-config-file", exported / "models.config"),
        *("--max-batch-size", MAX_BATCH, "--max-body-bytes", MAX_BODY),
        *("--rest-api-num-threads", 4, "--rest-api-timeout-ms", TIMEOUT_MS),
        *("--grpc-max-threads", 4, "--poll-seconds", "0.2"),
    )
    ready.update(process=process, lines=lines, base=exported)
    yield ready
    stop_server(process)


def address(served):
    host, port = served["rest"].rsplit(":", 1)
    return host, int(port)


def raw_http(served, data, timeout=30):
    """Sends raw bytes; returns ``(status, headers, body bytes)`` of the response."""
    with socket.create_connection(address(served), timeout=timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def predict_body(history=(3, 17, 42)):
    return json.dumps({"signature_name": "recommend", "inputs": [list(history)]}).encode()


def assert_serves(served):
    connection = http.client.HTTPConnection(*address(served), timeout=30)
    connection.request("POST", "/v1/models/rec:predict", body=predict_body())
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    assert response.status == 200 and len(body["outputs"]["item_ids"][0]) == 10, body


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


# --- 1. a small gRPC request must not allocate what its shape claims --------------------------


def grpc_predict(served, proto):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "rec"
    request.model_spec.signature_name = "recommend"
    request.inputs["history"].CopyFrom(proto)
    with grpc.insecure_channel(served["grpc"]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=60)


def fill_proto(shape, value=3):
    """An int32 TensorProto of ``shape`` carrying one value: TF Serving fills the rest."""
    proto = tf.make_tensor_proto(np.array([value], "int32"))
    proto.tensor_shape.Clear()
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


def test_grpc_tensor_claiming_50m_values_is_refused_before_decoding(served):
    proto = fill_proto([1, 50_000_000])
    before = rss_bytes(served["process"].pid)
    with pytest.raises(grpc.RpcError) as error:
        grpc_predict(served, proto)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.value.details()
    assert "claims shape [1, 50000000] (50000000 values, 200000000 bytes" in details, details
    assert f"at most {MAX_BODY} bytes decoded" in details, details
    assert rss_bytes(served["process"].pid) - before < 50 << 20

    with pytest.raises(grpc.RpcError) as error:  # a batch over the limit, also before decoding
        grpc_predict(served, fill_proto([MAX_BATCH + 1, 10**7]))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"batch size {MAX_BATCH + 1}, over" in error.value.details()

    # A fill within the limits stays legal, as in TF Serving: [[3, 3, 3]].
    filled = grpc_predict(served, fill_proto([1, 3]))
    expected = grpc_predict(served, tf.make_tensor_proto(np.array([[3, 3, 3]], "int32")))
    assert filled.outputs["item_ids"] == expected.outputs["item_ids"]


# --- 2. many clients at once: none reset ------------------------------------------------------


@pytest.mark.parametrize("clients", [200, pytest.param(500, marks=pytest.mark.slow)])
def test_concurrent_connections_are_all_answered(served, clients):
    start = threading.Barrier(clients)

    def client(index):
        start.wait()  # every client connects at the same moment
        connection = http.client.HTTPConnection(*address(served), timeout=60)
        try:
            statuses = []
            for request in range(3):
                if request == 1:
                    connection.request("POST", "/v1/models/rec:predict", body=predict_body())
                else:
                    connection.request("GET", "/v1/models/rec")
                response = connection.getresponse()
                response.read()
                statuses.append(response.status)
            return statuses
        except OSError as e:
            return [f"{type(e).__name__}: {e}"]
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(client, range(clients)))
    failures = [r for r in results if r != [200, 200, 200]]
    assert not failures, f"{len(failures)} of {clients} clients failed, e.g. {failures[:3]}"


# --- 3. cheap bad requests: 4xx JSON, not 500 or HTML -----------------------------------------


def post_raw(path, body, length=None):
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length or len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


BAD_REQUESTS = {
    "deeply nested JSON": (
        post_raw("/v1/models/rec:predict", b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        400,
        "nested",
    ),
    "lone surrogate": (
        post_raw(
            "/v1/models/rec:predict",
            b'{"signature_name": "embed_item", "inputs": {"image": [], "text": ["\\ud800"]}}',
        ),
        400,
        "UTF-8",
    ),
    "non-ASCII digit as version": (
        post_raw("/v1/models/rec/versions/\xb2:predict", predict_body()),
        400,
        "numeric version",
    ),
    "non-ASCII digit as Content-Length": (
        b"POST /v1/models/rec:predict HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n",
        411,
        "Content-Length",
    ),
    "unknown method": (b"PUT /v1/models/rec HTTP/1.1\r\nHost: x\r\n\r\n", 501, "PUT"),
    "request line too long": (
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
        414,
        "at most 65536 bytes",
    ),
    "too many headers": (
        b"GET /v1/models/rec HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)),
        431,
        "Too many headers",
    ),
    "garbage request line": (b"GARBAGE\r\n\r\n", 400, "Bad request syntax"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_cheap_bad_requests_get_a_json_4xx(served, case):
    data, expected_status, words = BAD_REQUESTS[case]
    status, headers, body = raw_http(served, data)
    assert headers["Content-Type"] == "application/json", body[:200]
    payload = json.loads(body)
    assert status == expected_status and set(payload) == {"error"}, payload
    assert words in payload["error"], payload
    assert_serves(served)


def test_body_shorter_than_content_length_gets_408_after_the_timeout(served):
    started = time.monotonic()
    status, _, body = raw_http(served, post_raw("/v1/models/rec:predict", b'{"inp', length=100))
    assert status == 408, body
    assert "Expected a body of 100 bytes" in json.loads(body)["error"]
    assert "Received: 5 bytes" in json.loads(body)["error"]
    assert time.monotonic() - started < TIMEOUT_MS / 1000 + 5
    assert_serves(served)


def test_headers_trickled_a_byte_at_a_time_get_408_after_the_timeout(served):
    """Each byte arrives well within the per-read timeout; the whole head does not."""
    started = time.monotonic()
    with socket.create_connection(address(served), timeout=0.25) as sock:
        sock.sendall(b"GET /v1/models/rec HTTP/1.1\r\n")
        answer = b""
        for i in range(40):  # 10 s at most, until the server answers
            try:
                sock.sendall(b"X-%d: 1\r\n" % i)
                answer = sock.recv(4096)
                break
            except TimeoutError:
                continue
        sock.settimeout(10)
        try:
            while chunk := sock.recv(4096):  # the rest, until the server closes
                answer += chunk
        except ConnectionResetError:  # closed with headers of ours unread: RST after the answer
            pass
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"Expected the request line and headers within" in answer
    assert time.monotonic() - started < TIMEOUT_MS / 1000 + 3
    assert_serves(served)


# --- 4. hot reload survives odd folders and says when it fails --------------------------------


def model_status_codes(served):
    connection = http.client.HTTPConnection(*address(served), timeout=30)
    connection.request("GET", "/v1/models/rec")
    rest = json.loads(connection.getresponse().read())["model_version_status"]
    connection.close()
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "rec"
    with grpc.insecure_channel(served["grpc"]) as channel:
        remote = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request)
    return rest, remote.model_version_status


def wait_for(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_non_ascii_digit_version_folder_does_not_stop_hot_reload(served):
    models = served["base"] / "rec"
    shutil.copytree(models / "1", models / "²")  # "²".isdigit() is True; int("²") fails
    time.sleep(1.0)  # several polls see it
    shutil.copytree(models / "1", models / ".tmp-2")
    (models / ".tmp-2").rename(models / "2")
    assert wait_for(lambda: any("serving rec version 2" in line for line in served["lines"]))
    rest, remote = model_status_codes(served)
    assert [(s["version"], s["status"]["error_code"]) for s in rest] == [("2", "OK")]
    assert [(s.version, s.status.error_code) for s in remote] == [(2, 0)]
    assert_serves(served)


def test_a_failing_poll_shows_in_the_model_status_until_it_works_again(served):
    config = served["base"] / "models.config"
    good = config.read_text()
    config.write_text("model_config_list { config { name: ")  # half written
    try:

        def failing():
            rest, remote = model_status_codes(served)
            return rest[0]["status"]["error_code"] == "UNKNOWN" and remote[0].status.error_code

        assert wait_for(failing), model_status_codes(served)
        rest, remote = model_status_codes(served)
        assert rest[0]["state"] == "AVAILABLE"  # it still serves
        message = rest[0]["status"]["error_message"]
        assert "New versions are not being loaded" in message and "model list" in message
        assert remote[0].status.error_message == message
        assert remote[0].status.error_code == grpc.StatusCode.UNKNOWN.value[0]
        assert_serves(served)
    finally:
        config.write_text(good)
    assert wait_for(lambda: model_status_codes(served)[0][0]["status"]["error_code"] == "OK")


# --- 5. the batch limit per model ------------------------------------------------------------


def test_max_batch_size_flag_takes_n_or_model_equals_n(capsys):
    from mmrec.cli import build_parser
    from mmrec.cli.serving import server_options

    flags = ["serve", "--max-batch-size", "rec=4", "--max-batch-size", "64"]
    options = server_options(build_parser().parse_args([*flags, "--max-batch-size", "gen=2"]))
    assert (options.max_batch_size, options.model_max_batch_size) == (64, {"rec": 4, "gen": 2})
    assert (options.batch_limit("rec"), options.batch_limit("other")) == (4, 64)
    assert server_options(build_parser().parse_args(["serve"])).batch_limit("rec") == 256
    for bad in ("rec=0", "=3", "rec=x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--max-batch-size", bad])
        assert "expected a positive integer N or MODEL=N" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"model_max_batch_size\['rec'\] to be a positive int"):
        mmrec.serving.ServerOptions(model_max_batch_size={"rec": 0})


# --- 6. TLS from TF Serving's SSLConfig ------------------------------------------------------


@pytest.fixture(scope="module")
def tls_served(exported, tmp_path_factory):
    """A second server, over TLS, requiring client certificates signed by its test CA."""
    folder = tmp_path_factory.mktemp("tls")
    files = write_tls_files(str(folder))
    process, ready, _, _ = start_server(
        exported, folder / "server.log", "--ssl-config-file", files.ssl_config
    )
    yield ready, files
    stop_server(process)


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.slow
def test_ssl_config_file_serves_grpc_and_rest_over_tls_with_client_certificates(tls_served):
    ready, files = tls_served
    assert ready["tls"] is True
    host, port = ready["rest"].rsplit(":", 1)
    context = ssl.create_default_context(cafile=files.ca)
    context.load_cert_chain(files.client_cert, files.client_key)
    connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=30)
    connection.request("GET", "/v1/models/rec")
    response = connection.getresponse()
    assert response.status == 200 and "model_version_status" in json.loads(response.read())
    connection.close()

    no_client_cert = ssl.create_default_context(cafile=files.ca)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        bare = http.client.HTTPSConnection(host, int(port), context=no_client_cert)
        bare.request("GET", "/v1/models/rec")
        bare.getresponse()
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        plain = http.client.HTTPConnection(host, int(port), timeout=10)
        plain.request("GET", "/v1/models/rec")
        plain.getresponse()

    credentials = grpc.ssl_channel_credentials(
        read(files.ca), read(files.client_key), read(files.client_cert)
    )
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "rec"
    request.model_spec.signature_name = "recommend"
    request.inputs["history"].CopyFrom(tf.make_tensor_proto(np.array([[3, 17]], "int32")))
    with grpc.secure_channel(f"localhost:{ready['grpc'].rsplit(':', 1)[1]}", credentials) as c:
        response = prediction_service_pb2_grpc.PredictionServiceStub(c).Predict(request)
    assert tf.make_ndarray(response.outputs["item_ids"]).shape == (1, 10)


@pytest.mark.slow
def test_client_and_mmrec_predict_speak_tls_with_a_client_certificate(tls_served, capsys):
    ready, files = tls_served
    tls = {"ssl_ca": files.ca, "ssl_cert": files.client_cert, "ssl_key": files.client_key}
    history = {"history": [[3, 17, 42]]}
    with Client(ready["rest"], **tls) as rest, Client(ready["grpc"], "grpc", **tls) as remote:
        outs = [client.predict("rec", history, "recommend") for client in (rest, remote)]
        assert rest.status("rec") == remote.status("rec")
    ids = outs[0]["item_ids"]
    assert ids.shape == (1, 10)
    np.testing.assert_array_equal(outs[1]["item_ids"], ids)
    np.testing.assert_allclose(outs[1]["scores"], outs[0]["scores"], rtol=1e-6)

    # Trusting the CA is not enough: this server requires a client certificate.
    with Client(ready["rest"], ssl_ca=files.ca) as bare:
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            bare.status("rec")
    with Client(ready["grpc"], "grpc", ssl_ca=files.ca) as bare:
        with pytest.raises(ServingError, match="UNAVAILABLE"):
            bare.status("rec")
    with pytest.raises(ValueError, match="ssl_cert and ssl_key together"):
        Client(ready["rest"], ssl_ca=files.ca, ssl_cert=files.client_cert)

    flags = ["--ssl-ca", files.ca, "--ssl-cert", files.client_cert, "--ssl-key", files.client_key]
    for protocol in ("rest", "grpc"):
        args = ["predict", "--server", ready[protocol], "--protocol", protocol, "--model", "rec"]
        assert main([*args, "--history", "3,17,42", *flags]) == 0
        printed = capsys.readouterr().out.splitlines()
        assert [int(line.split()[1]) for line in printed[1:]] == ids[0].tolist()
        assert main([*args, "--history", "3,17,42"]) == 2  # plain text to a TLS server
        assert "if the server uses TLS, give --ssl-ca" in capsys.readouterr().err
    assert main([*args, "--history", "3", "--ssl-ca", "nope.pem"]) == 2
    assert "readable PEM files" in capsys.readouterr().err
