"""TF Serving's REST API on a threaded HTTP server (one thread per connection, keep-alive).

Routes, as TF Serving documents them:

* ``GET /v1/models/NAME[/versions/N]`` → model status (``GetModelStatusResponse`` JSON);
* ``GET /v1/models/NAME[/versions/N]/metadata`` → ``{"model_spec": …, "metadata":
  {"signature_def": …}}``;
* ``POST /v1/models/NAME[/versions/N]:predict`` → ``predictions`` or ``outputs``.

Errors are ``{"error": "<message>"}`` with the HTTP status of their canonical
code (400 bad request, 404 unknown model/version/signature, 413 body too large,
…). Version labels and ``:classify``/``:regress`` are not supported (501).
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading

from google.protobuf import json_format

from mmrec.serving import rest_json
from mmrec.serving.errors import ServingError, not_found

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<rest>/metadata|:[A-Za-z]+)?/?$"
)


def metadata_json(servable):
    """``GetModelMetadataResponse`` as TF Serving's REST API returns it."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for key, signature_def in servable.signature_defs.items():
        signature_map.signature_def[key].CopyFrom(signature_def)
    return {
        "model_spec": {
            "name": servable.name,
            "signature_name": "",
            "version": str(servable.version),
        },
        "metadata": {
            "signature_def": json_format.MessageToDict(
                signature_map,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
        },
    }


class InFlight:
    """Counts requests being handled, so that shutdown can wait for them."""

    def __init__(self):
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self):
        with self._idle:
            self._count += 1

    def __exit__(self, *exc):
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout):
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class RestServer(http.server.ThreadingHTTPServer):
    """The HTTP server; ``manager`` is a `ModelManager`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address, manager, max_batch_size=None, max_body_bytes=16 << 20, in_flight=None
    ):
        super().__init__(address, _Handler)
        self.manager = manager
        self.max_batch_size = max_batch_size
        self.max_body_bytes = max_body_bytes
        self.in_flight = in_flight or InFlight()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connection
    server_version = "mmrec-serve"
    timeout = 60  # idle keep-alive connections are closed after this many seconds

    def setup(self):
        super().setup()
        # Headers and body are separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args):  # noqa: A002  (quiet: one line per request is noise)
        pass

    def do_GET(self):
        with self.server.in_flight:
            self._handle(self._get)

    def do_POST(self):
        with self.server.in_flight:
            self._handle(self._post)

    # --- plumbing ----------------------------------------------------------------------

    def _handle(self, route):
        try:
            status, payload = route()
        except ServingError as e:
            status, payload = e.http_status, json.dumps({"error": e.message}).encode()
        except Exception as e:  # a bug, not a bad request: say so, keep serving
            status = 500
            payload = json.dumps({"error": f"Internal error: {type(e).__name__}: {e}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(self):
        match = _ROUTE.match(self.path.split("?", 1)[0])
        if match is None:
            raise not_found(
                f"Malformed request: {self.command} {self.path}. Expected /v1/models/NAME"
                "[/versions/N][/metadata|:predict]"
            )
        if match["label"] is not None:
            raise ServingError(
                "UNIMPLEMENTED", "Version labels are not supported by mmrec serve; use /versions/N"
            )
        version = match["version"]
        if version is not None and not version.isdigit():
            raise ServingError(
                "INVALID_ARGUMENT", f"Expected a numeric version. Received: {version}"
            )
        return match["name"], (int(version) if version else None), match["rest"] or ""

    def _discard(self, length):
        """Reads and drops an oversized body (so the client reads the 413 instead of a
        reset connection); a very large one closes the connection instead."""
        if length > max(4 * self.server.max_body_bytes, 64 << 20):
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                self.close_connection = True
                return
            length -= len(chunk)

    def _get(self):
        name, version, rest = self._route()
        if rest == "":
            return 200, json.dumps(self.server.manager.status(name, version)).encode()
        if rest == "/metadata":
            servable = self.server.manager.get(name, version)
            return 200, json.dumps(metadata_json(servable)).encode()
        raise not_found(f"Malformed request: GET {self.path}")

    def _post(self):
        name, version, rest = self._route()
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise ServingError("INVALID_ARGUMENT", "Expected a Content-Length header.", 411)
        length = int(length)
        if length > self.server.max_body_bytes:
            self._discard(length)
            raise ServingError(
                "RESOURCE_EXHAUSTED",
                f"Request body of {length} bytes is over this server's limit of "
                f"{self.server.max_body_bytes} bytes (--max-body-bytes).",
                413,
            )
        body = self.rfile.read(length)
        if rest in (":classify", ":regress"):
            raise ServingError("UNIMPLEMENTED", f"{rest[1:]} is not supported by mmrec serve")
        if rest != ":predict":
            raise not_found(f"Malformed request: POST {self.path}")
        servable = self.server.manager.get(name, version)
        signature_name, payload, row_format = rest_json.parse_request(body)
        specs = servable.inputs(signature_name)
        inputs = rest_json.request_inputs(payload, row_format, specs)
        outputs = servable.predict(signature_name, inputs, self.server.max_batch_size)
        return 200, rest_json.response_body(outputs, row_format)
