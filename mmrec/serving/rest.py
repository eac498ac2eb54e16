"""TF Serving's REST API on an HTTP server with a fixed pool of handler threads (keep-alive).

Routes, as TF Serving documents them:

* ``GET /v1/models/NAME[/versions/N]`` → model status (``GetModelStatusResponse`` JSON);
* ``GET /v1/models/NAME[/versions/N]/metadata`` → ``{"model_spec": …, "metadata":
  {"signature_def": …}}``;
* ``POST /v1/models/NAME[/versions/N]:predict`` → ``predictions`` or ``outputs``.

Errors are ``{"error": "<message>"}`` with the HTTP status of their canonical
code (400 bad request, 404 unknown model/version/signature, 413 body too large,
…). Version labels and ``:classify``/``:regress`` are not supported (501).
Requests the standard library rejects before routing (an unknown method, a
request line or header too long, a garbage request line) are answered in the
same JSON, and an internal error is logged, never echoed to the client.

Connections wait in the listen backlog, then in a queue, for one of
``num_threads`` handler threads: many clients at once are served in turn
instead of being reset or starting a thread each. A connection gives its thread
up after a response when others are waiting (``Connection: close``), and an
idle or slow client holds it for at most ``timeout_seconds`` to send a request's
head (line and headers), then as long again for its body (408 otherwise).
"""

from __future__ import annotations

import http.server
import json
import queue
import re
import socket
import threading
import time

from google.protobuf import json_format

from mmrec.serving import rest_json
from mmrec.serving.errors import ServingError, log_internal_error, not_found
from mmrec.serving.options import ServerOptions

# ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
_NUMBER = re.compile(r"^[0-9]+$")

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


class RestServer(http.server.HTTPServer):
    """The HTTP server; ``manager`` is a `ModelManager`.

    Args:
        options: a `ServerOptions`: limits, ``rest_api_num_threads`` handler threads
            (connections beyond them wait their turn), ``rest_api_timeout_ms`` (the
            longest wait for a request's bytes and for an idle keep-alive client).
        ssl_context: a server-side `ssl.SSLContext` to serve HTTPS, or None.
    """

    allow_reuse_address = True
    # The listen backlog. The standard library's 5 resets connections as soon as a
    # few dozen clients connect at once; the kernel caps it at net.core.somaxconn.
    request_queue_size = 1024

    def __init__(self, address, manager, options=None, in_flight=None, ssl_context=None):
        super().__init__(address, _Handler)
        self.manager = manager
        self.options = options or ServerOptions()
        self.max_body_bytes = self.options.max_body_bytes
        self.timeout_seconds = self.options.rest_api_timeout_ms / 1000
        self.in_flight = in_flight or InFlight()
        self.ssl_context = ssl_context
        self._connections = queue.SimpleQueue()
        self._deadlines = {}  # handler → when its request's head must have arrived
        self._deadlines_lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(
            target=self._cut_off_late_heads, name="mmrec-rest-deadlines", daemon=True
        ).start()
        # Daemon threads, unlike a ThreadPoolExecutor's: an idle keep-alive client must
        # not keep the process alive after a graceful stop.
        self._workers = [
            threading.Thread(target=self._work, name=f"mmrec-rest-{i}", daemon=True)
            for i in range(self.options.rest_api_num_threads)
        ]
        for worker in self._workers:
            worker.start()

    def process_request(self, request, client_address):
        """Called by the accept loop: queues the connection for a handler thread."""
        self._connections.put((request, client_address))

    def waiting(self):
        """Connections accepted and waiting for a handler thread."""
        return self._connections.qsize()

    def _work(self):
        while (item := self._connections.get()) is not None:
            request, client_address = item
            try:
                request.settimeout(self.timeout_seconds)
                if self.ssl_context is not None:  # the handshake runs here, off the accept loop
                    request = self.ssl_context.wrap_socket(request, server_side=True)
                self.finish_request(request, client_address)
            except OSError:  # a failed TLS handshake, a client gone: nothing to answer
                pass
            except Exception as e:
                log_internal_error(e)
            finally:
                self.shutdown_request(request)

    def expect_head(self, handler):
        """``handler``'s next request line and headers must arrive within the timeout."""
        with self._deadlines_lock:
            self._deadlines[handler] = time.monotonic() + self.timeout_seconds

    def head_received(self, handler):
        """Stops the clock for ``handler``; False if it ran out (the connection was cut)."""
        with self._deadlines_lock:
            return self._deadlines.pop(handler, None) is not None

    def _cut_off_late_heads(self):
        # The standard library reads a head with a timeout per recv(): a client that
        # trickles a byte at a time would hold a handler thread indefinitely. One
        # thread watches every connection's deadline instead of a timer per request.
        while not self._closed.wait(min(self.timeout_seconds / 4, 0.5)):
            now = time.monotonic()
            with self._deadlines_lock:
                late = [handler for handler, due in self._deadlines.items() if due < now]
                for handler in late:
                    del self._deadlines[handler]
            for handler in late:
                handler.cut_off()

    def server_close(self):
        """Closes the listening socket and the connections still waiting; stops the threads."""
        self._closed.set()
        super().server_close()
        while True:
            try:
                item = self._connections.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.shutdown_request(item[0])
        for _ in self._workers:
            self._connections.put(None)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connection
    server_version = "mmrec-serve"

    def setup(self):
        self.timeout = self.server.timeout_seconds
        super().setup()
        # Headers and body are separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self):
        self.server.expect_head(self)
        try:
            super().handle_one_request()
        finally:
            self.server.head_received(self)

    def parse_request(self):
        """The standard library's parsing (it reads the headers), unless they came too late."""
        parsed = super().parse_request()
        if self.server.head_received(self):
            return parsed
        if parsed:
            timeout = self.server.timeout_seconds
            self.send_error(
                408,
                f"Expected the request line and headers within {timeout:g} s "
                "(--rest-api-timeout-ms). Received them too slowly",
            )
        return False

    def cut_off(self):
        """Ends the reading of a head that is too slow (called by the server's watcher)."""
        try:
            # socket.socket's own shutdown, also under TLS: SSLSocket.shutdown would also
            # drop the TLS state, and the 408 could not be written.
            socket.socket.shutdown(self.connection, socket.SHUT_RD)
        except OSError:  # already closed
            pass

    def log_message(self, format, *args):  # noqa: A002  (quiet: one line per request is noise)
        pass

    def do_GET(self):
        with self.server.in_flight:
            self._handle(self._get)

    def do_POST(self):
        with self.server.in_flight:
            self._handle(self._post)

    # --- plumbing ----------------------------------------------------------------------

    def send_error(self, code, message=None, explain=None):
        """The standard library's own rejections (501 unknown method, 414, 431, 400 for a
        garbage request line) as ``{"error": ...}`` JSON, like every other answer,
        instead of its HTML page."""
        short, long = self.responses.get(code, ("Error", ""))
        if code == 414:  # the standard library reads request lines of up to 65536 bytes
            message = "Expected a request line of at most 65536 bytes. Received a longer one"
        text = message or long or short
        if explain and explain not in text:
            text = f"{text}: {explain}"
        if self.request_version == "HTTP/0.9":  # a garbage line: still answer with a status
            self.request_version = "HTTP/1.0"
        self.close_connection = True
        self._send(code, json.dumps({"error": text}).encode(), head=self.command == "HEAD")

    def _send(self, status, payload, head=False):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection or self.server.waiting():
            # Others wait for a handler thread: give this one up (the client reconnects).
            self.send_header("Connection", "close")
        else:  # when this server closes an idle connection, so clients need not guess
            self.send_header("Keep-Alive", f"timeout={int(self.server.timeout_seconds)}")
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def _handle(self, route):
        try:
            status, payload = route()
        except ServingError as e:
            status, payload = e.http_status, json.dumps({"error": e.message}).encode()
        except Exception as e:  # a bug, not a bad request: log it, say only that, keep serving
            status, payload = 500, json.dumps({"error": log_internal_error(e)}).encode()
        self._send(status, payload)

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
        if version is not None and not _NUMBER.match(version):
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

    def _read_body(self, length):
        """Reads the ``length`` bytes of the body within the timeout: a client that sends
        less than its Content-Length gets 408, instead of holding a thread."""
        timeout = self.server.timeout_seconds
        deadline = time.monotonic() + timeout
        chunks, received = [], 0
        try:
            while received < length:
                self.connection.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = self.rfile.read1(min(length - received, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError
        except TimeoutError:
            self.close_connection = True
            raise ServingError(
                "DEADLINE_EXCEEDED",
                f"Expected a body of {length} bytes (Content-Length) within {timeout:g} s "
                f"(--rest-api-timeout-ms). Received: {received} bytes",
                408,
            ) from None
        finally:
            self.connection.settimeout(timeout)
        if received < length:
            self.close_connection = True
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Expected a body of {length} bytes (Content-Length). Received: {received} "
                "bytes before the connection closed",
            )
        return b"".join(chunks)

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
        if length is None or not _NUMBER.match(length):
            self.close_connection = True
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Expected a Content-Length header with a number of bytes. Received: {length!r}",
                411,
            )
        length = int(length)
        if length > self.server.max_body_bytes:
            self._discard(length)
            raise ServingError(
                "RESOURCE_EXHAUSTED",
                f"Request body of {length} bytes is over this server's limit of "
                f"{self.server.max_body_bytes} bytes (--max-body-bytes).",
                413,
            )
        body = self._read_body(length)
        if rest in (":classify", ":regress"):
            raise ServingError("UNIMPLEMENTED", f"{rest[1:]} is not supported by mmrec serve")
        if rest != ":predict":
            raise not_found(f"Malformed request: POST {self.path}")
        servable = self.server.manager.get(name, version)
        signature_name, payload, row_format = rest_json.parse_request(body)
        specs = servable.inputs(signature_name)
        inputs = rest_json.request_inputs(payload, row_format, specs)
        batch_limit = self.server.options.batch_limit(servable.name)
        outputs = servable.predict(signature_name, inputs, batch_limit)
        return 200, rest_json.response_body(outputs, row_format)
