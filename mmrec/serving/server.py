"""`ModelServer`: a local stand-in for TF Serving's model server, REST and gRPC.

Where it sits in the data flow: it serves the folder `mmrec.export` writes
(``savedmodels/``), the same folder the real ``tensorflow/serving`` image or
KServe serves (see ``docs/serving.md``). It is a development and test server:
the same API and the same SavedModels, not TF Serving's performance or
features (no request batching, version labels or version policies other than
"latest").
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from mmrec.serving.grpc_service import grpc_server
from mmrec.serving.options import ServerOptions
from mmrec.serving.rest import InFlight, RestServer
from mmrec.serving.servables import ModelManager
from mmrec.serving.tls import SSLConfig


def _log(line):
    print(line, flush=True)


class ModelServer:
    """Serves the latest version of every model under ``model_base_path`` over REST and gRPC.

    Args:
        model_base_path: the folder of model folders (e.g. ``savedmodels``).
        model_config_file: a TF Serving ``models.config``; if given, only its models.
        rest_port: REST port (0: any free port).
        grpc_port: gRPC port (0: any free port).
        host: the interface to listen on (``"0.0.0.0"`` for every interface).
        options: a `ServerOptions` (limits such as the batch size per model, threads,
            timeouts, TLS); None for its defaults.

    Example:

    ```python
    server = ModelServer("savedmodels", rest_port=8501, grpc_port=8500)
    server.start()            # loads the models, then serves in background threads
    print(server.rest_port)
    server.stop()

    options = ServerOptions(max_batch_size=64, model_max_batch_size={"generator": 4})
    ModelServer("savedmodels", options=options)
    ```
    """

    def __init__(
        self,
        model_base_path="savedmodels",
        model_config_file=None,
        rest_port=8501,
        grpc_port=8500,
        host="127.0.0.1",
        options=None,
    ):
        options = options or ServerOptions()
        if not isinstance(options, ServerOptions):
            raise ValueError(
                f"Expected options to be a ServerOptions or None. Received: {options!r}"
            )
        self.options = options
        self.manager = ModelManager(
            model_base_path, model_config_file, options.poll_seconds, log=_log
        )
        self.host = host
        # Read now: a wrong file fails before the ports are bound and the models loaded.
        ssl_config_file = options.ssl_config_file
        self.ssl_config = SSLConfig.from_file(ssl_config_file) if ssl_config_file else None
        self._requested_ports = (rest_port, grpc_port)
        self.rest_port = None
        self.grpc_port = None
        self._rest = None
        self._rest_thread = None
        self._grpc = None
        self._in_flight = InFlight()
        self._stopped = threading.Event()

    def start(self):
        """Binds both ports, loads the models (replaying their warm-up requests), then serves."""
        rest_port, grpc_port = self._requested_ports
        # Bind first: a port in use fails before the (slow) model loading.
        self._rest = RestServer(
            (self.host, rest_port),
            self.manager,
            self.options,
            self._in_flight,
            ssl_context=self.ssl_config.ssl_context() if self.ssl_config else None,
        )
        self.rest_port = self._rest.server_address[1]
        self._grpc, self.grpc_port = grpc_server(
            self.manager,
            self._in_flight,
            f"{self.host}:{grpc_port}",
            self.options,
            credentials=self.ssl_config.grpc_credentials() if self.ssl_config else None,
        )
        self.manager.start()
        self._rest_thread = threading.Thread(
            target=self._rest.serve_forever, name="mmrec-rest", daemon=True
        )
        self._rest_thread.start()
        self._grpc.start()
        models = {name: self.manager.get(name).version for name in self.manager.names()}
        unserved = sorted(set(self.options.model_max_batch_size) - set(models))
        if unserved:  # most likely a typo; a model that appears later gets its limit then
            _log(
                f"mmrec serve: --max-batch-size names model(s) {unserved} that are not served; "
                f"served: {sorted(models)}"
            )
        ready = {
            "rest": f"{self.host}:{self.rest_port}",
            "grpc": f"{self.host}:{self.grpc_port}",
            "tls": self.ssl_config is not None,
            "models": models,
        }
        _log(f"mmrec serve: ready {json.dumps(ready)}")
        return self

    def stop(self, grace=10.0):
        """Stops accepting requests, lets those in flight finish (up to ``grace`` s), unloads."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._rest_thread is not None:
            self._rest.shutdown()  # waits for serve_forever to return
        if self._grpc is not None:
            self._grpc.stop(grace)
        self._in_flight.wait_idle(grace)
        if self._rest is not None:
            self._rest.server_close()
        self.manager.stop()
        if self._rest_thread is not None:
            _log("mmrec serve: stopped")

    def serve_forever(self):
        """`start`, then block until SIGTERM or SIGINT; then `stop` gracefully."""
        stop = threading.Event()

        def request_stop(signum, frame):
            _log(f"mmrec serve: {signal.Signals(signum).name} received, shutting down")
            stop.set()

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        sys.stdout.flush()
        return 0
