"""`Client`: calls TF Serving (or `mmrec serve`) over REST or gRPC with NumPy in and out.

Where it sits in the data flow: the application side of ``savedmodels/`` →
server. It speaks only the public APIs (REST JSON as TF Serving documents it,
gRPC with ``tensorflow-serving-api``'s stubs), so it works against the real TF
Serving too. Input and output dtypes come from the model's signature metadata
(fetched once per model), so both protocols return the same NumPy arrays:
``_bytes`` outputs and other strings as ``bytes``, numbers in the signature's dtype.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from mmrec.serving.errors import HTTP_STATUS, ServingError

PROTOCOLS = ("rest", "grpc")
_CODE_FOR_HTTP = {status: code for code, status in reversed(list(HTTP_STATUS.items()))}


def _dtype(name):
    return tf.as_dtype(types_pb2.DataType.Value(name))


class Client:
    """A TF Serving client for REST or gRPC.

    Args:
        address: ``"host:port"`` (or ``"http://host:port"``; ``"https://host:port"``
            for TLS with the system's trusted CAs).
        protocol: ``"rest"`` or ``"grpc"``.
        timeout: seconds per call.
        ssl_ca: a PEM file of the CA that signed the server's certificate (e.g. a
            private CA); giving it, or a client certificate, turns TLS on.
        ssl_cert, ssl_key: PEM files of a client certificate and its key, for a
            server that requires one (``client_verify: true`` in its SSLConfig).

    Example:

    ```python
    client = Client("localhost:8501")                  # or Client("localhost:8500", "grpc")
    out = client.predict("rec", {"history": [[3, 17, 42]]}, signature_name="recommend")
    out["item_ids"]                                    # int32 [1, k]
    out["item_keys"]                                   # bytes [1, k] (models with item keys)
    client.status("rec")["model_version_status"][0]["version"]

    # A TLS server (mmrec serve --ssl-config-file) with a private CA and client certificates
    client = Client("localhost:8500", "grpc", ssl_ca="ca.pem",
                    ssl_cert="client.pem", ssl_key="client.key")
    ```
    """

    def __init__(
        self,
        address="localhost:8501",
        protocol="rest",
        timeout=30.0,
        ssl_ca=None,
        ssl_cert=None,
        ssl_key=None,
    ):
        if protocol not in PROTOCOLS:
            raise ValueError(f"Expected protocol in {PROTOCOLS}. Received: protocol={protocol!r}")
        if (ssl_cert is None) != (ssl_key is None):
            raise ValueError(
                "Expected ssl_cert and ssl_key together (a client certificate and its key). "
                f"Received: ssl_cert={ssl_cert!r}, ssl_key={ssl_key!r}"
            )
        self.tls = address.startswith("https://") or any((ssl_ca, ssl_cert))
        address = address.split("://", 1)[-1].rstrip("/")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"Expected an address 'host:port'. Received: address={address!r}")
        self.address = address
        self.protocol = protocol
        self.timeout = timeout
        self._host, self._port = host, int(port)
        self._local = threading.local()
        self._signatures = {}
        self._channel = None
        self._ssl_context = None
        if self.tls and protocol == "rest":
            self._ssl_context = _ssl_context(ssl_ca, ssl_cert, ssl_key)
        if protocol == "grpc":
            import grpc
            from tensorflow_serving.apis import (
                model_service_pb2_grpc,
                prediction_service_pb2_grpc,
            )

            options = [
                ("grpc.max_receive_message_length", 256 << 20),
                ("grpc.max_send_message_length", 256 << 20),
            ]
            if self.tls:
                credentials = _grpc_credentials(ssl_ca, ssl_cert, ssl_key)
                self._channel = grpc.secure_channel(address, credentials, options=options)
            else:
                self._channel = grpc.insecure_channel(address, options=options)
            self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
            self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    # --- public API ----------------------------------------------------------------------

    def predict(self, model, inputs, signature_name="serving_default", version=None):
        """Runs a signature; returns output name → NumPy array.

        Args:
            model: the model's name.
            inputs: input name → array-like (nested lists, NumPy arrays; strings as
                ``str`` or ``bytes``), batch first.
            signature_name: e.g. ``"recommend"``, ``"generate_image"``.
            version: a version number; ``None`` for the latest.

        Raises:
            ServingError: with the server's code and message.
        """
        signature = self.signature(model, signature_name, version)
        arrays = {}
        for key, value in inputs.items():
            dtype = signature["inputs"][key] if key in signature["inputs"] else None
            arrays[key] = _as_array(value, dtype)
        if self.protocol == "grpc":
            return self._predict_grpc(model, arrays, signature_name, version)
        return self._predict_rest(model, arrays, signature_name, version, signature["outputs"])

    def metadata(self, model, version=None):
        """``GetModelMetadataResponse`` as TF Serving's REST JSON (both protocols)."""
        if self.protocol == "rest":
            return self._get(self._path(model, version) + "/metadata")
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, model, version)
        response = self._call(self._prediction.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        options = {"preserving_proto_field_name": True}
        return {
            "model_spec": {
                "name": response.model_spec.name,
                "signature_name": "",
                "version": str(response.model_spec.version.value),
            },
            "metadata": {
                "signature_def": json_format.MessageToDict(
                    signature_map, always_print_fields_with_no_presence=True, **options
                )
            },
        }

    def status(self, model, version=None):
        """``GetModelStatusResponse`` as TF Serving's REST JSON (both protocols)."""
        if self.protocol == "rest":
            return self._get(self._path(model, version))
        from tensorflow_serving.apis import get_model_status_pb2

        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, version)
        response = self._call(self._models.GetModelStatus, request)
        return {
            "model_version_status": [
                {
                    "version": str(s.version),
                    "state": get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
                    "status": {
                        "error_code": _grpc_code_name(s.status.error_code),
                        "error_message": s.status.error_message,
                    },
                }
                for s in response.model_version_status
            ]
        }

    def signature(self, model, signature_name="serving_default", version=None):
        """``{"inputs": {name: tf.DType}, "outputs": {name: tf.DType}}`` of a signature."""
        key = (model, version)
        if key not in self._signatures:
            definitions = self.metadata(model, version)["metadata"]["signature_def"]
            self._signatures[key] = {
                name: {
                    part: {k: _dtype(v["dtype"]) for k, v in definition.get(part, {}).items()}
                    for part in ("inputs", "outputs")
                }
                for name, definition in definitions["signature_def"].items()
            }
        signatures = self._signatures[key]
        if signature_name not in signatures:
            raise ServingError(
                "NOT_FOUND",
                f"Serving signature name: '{signature_name}' not found for model '{model}'. "
                f"Available: {sorted(signatures)}",
            )
        return signatures[signature_name]

    def close(self):
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
        if self._channel is not None:
            self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- REST ----------------------------------------------------------------------------

    def _path(self, model, version):
        return f"/v1/models/{model}" + (f"/versions/{int(version)}" if version is not None else "")

    def _request(self, method, path, body=None):
        """One HTTP exchange on this thread's keep-alive connection (reconnects once)."""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(2):
            connection = getattr(self._local, "connection", None)
            if connection is None:
                if self._ssl_context is None:
                    connection = http.client.HTTPConnection(
                        self._host, self._port, timeout=self.timeout
                    )
                else:
                    connection = http.client.HTTPSConnection(
                        self._host, self._port, timeout=self.timeout, context=self._ssl_context
                    )
                self._local.connection = connection
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
            except (http.client.HTTPException, ConnectionError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                self._local.connection = None
            return response.status, data

    def _json(self, status, data):
        try:
            payload = json.loads(data)
        except ValueError:
            payload = {"error": data.decode("utf-8", "replace")}
        if status != 200:
            message = payload.get("error", str(payload)) if isinstance(payload, dict) else payload
            raise ServingError(_CODE_FOR_HTTP.get(status, "UNKNOWN"), message, status)
        return payload

    def _get(self, path):
        return self._json(*self._request("GET", path))

    def _predict_rest(self, model, arrays, signature_name, version, outputs):
        body = {
            "signature_name": signature_name,
            "inputs": {k: _to_json(v) for k, v in arrays.items()},
        }
        payload = self._json(
            *self._request("POST", self._path(model, version) + ":predict", json.dumps(body))
        )["outputs"]
        if not isinstance(payload, dict) or set(payload) != set(outputs):
            if len(outputs) != 1:
                raise ServingError("UNKNOWN", f"Unexpected response outputs: {str(payload)[:200]}")
            payload = {next(iter(outputs)): payload}
        return {name: _from_json(name, value, outputs.get(name)) for name, value in payload.items()}

    # --- gRPC ----------------------------------------------------------------------------

    def _spec(self, model_spec, model, version, signature_name=None):
        model_spec.name = model
        if version is not None:
            model_spec.version.value = int(version)
        if signature_name:
            model_spec.signature_name = signature_name

    def _call(self, method, request):
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise ServingError(e.code().name, e.details()) from None

    def _predict_grpc(self, model, arrays, signature_name, version):
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        self._spec(request.model_spec, model, version, signature_name)
        for key, value in arrays.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        response = self._call(self._prediction.Predict, request)
        return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}


def _ssl_context(ca, cert, key):
    """A client-side `ssl.SSLContext`: trusts ``ca`` (or the system's CAs), shows ``cert``."""
    try:
        context = ssl.create_default_context(cafile=ca)
        if cert is not None:
            context.load_cert_chain(cert, key)
    except OSError as e:  # a missing file, or one that is not PEM (ssl.SSLError)
        raise ValueError(_unreadable(ca, cert, key, e)) from e
    return context


def _grpc_credentials(ca, cert, key):
    """`grpc.ChannelCredentials` from PEM files (None: the system's CAs, no client certificate)."""
    import grpc

    def read(path):
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ValueError(_unreadable(ca, cert, key, e)) from e

    return grpc.ssl_channel_credentials(read(ca), read(key), read(cert))


def _unreadable(ca, cert, key, error):
    return (
        "Expected ssl_ca, ssl_cert and ssl_key to be readable PEM files. "
        f"Received: ssl_ca={ca!r}, ssl_cert={cert!r}, ssl_key={key!r} ({error})"
    )


def _grpc_code_name(number):
    import grpc

    return next((c.name for c in grpc.StatusCode if c.value[0] == number), "UNKNOWN")


def _as_array(value, dtype):
    """Array-like → NumPy array of ``dtype`` (strings → object array of bytes)."""
    if dtype == tf.string or (dtype is None and _is_text(value)):
        array = np.asarray(value, dtype=object)
        flat = np.empty(array.size, dtype=object)
        flat[:] = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in array.reshape(-1)]
        return flat.reshape(array.shape)
    array = np.asarray(value)
    return array if dtype is None else array.astype(dtype.as_numpy_dtype)


def _is_text(value):
    flat = np.asarray(value, dtype=object).reshape(-1)
    return flat.size > 0 and isinstance(flat[0], (str, bytes))


def _to_json(array):
    if array.dtype == object:
        flat = [{"b64": base64.b64encode(v).decode("ascii")} for v in array.reshape(-1)]
        return np.array(flat, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def _from_json(name, value, dtype):
    if dtype == tf.string:
        array = np.asarray(value, dtype=object)
        flat = np.empty(array.size, dtype=object)
        flat[:] = [
            base64.b64decode(v["b64"]) if isinstance(v, dict) else str(v).encode("utf-8")
            for v in array.reshape(-1)
        ]
        return flat.reshape(array.shape)
    array = np.asarray(value)
    return array if dtype is None else array.astype(dtype.as_numpy_dtype)
