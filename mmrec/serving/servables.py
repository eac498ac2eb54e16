"""Loaded model versions ("servables") and the watcher that keeps the latest ones loaded.

Where it sits in the data flow: between the exported folder
(``savedmodels/<name>/<version>/``, written by `mmrec.export`) and the REST and
gRPC front ends. A `Servable` is one loaded SavedModel version: it checks a
request's inputs against the signature (names, dtypes, shapes, batch size) and
runs it. The `ModelManager` polls the base folder (or the models named in a
``models.config``), loads each model's newest complete version, replays its
warm-up requests, then swaps it in; requests in flight keep the version they
started with. Like TF Serving it ignores folders whose names are not numbers, so
an export still being written (``.tmp-…``) is never seen.

Only TensorFlow, tensorflow-text and the serving-api protos are used here: a
server needs the exported folder, not mmrec's model code.
"""

from __future__ import annotations

import os
import re
import threading
import time

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the TF Text ops the exported graphs use)
from tensorflow.core.protobuf import saved_model_pb2

from mmrec.serving import tensor_protos
from mmrec.serving.errors import ServingError, invalid, logger, not_found

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# TF Serving replays at most this many warm-up records, each input bounded like a request.
MAX_WARMUP_RECORDS = 1000
MAX_WARMUP_TENSOR_BYTES = 64 << 20
# Version folders are ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
VERSION = re.compile(r"^[0-9]+$")
_OP_ERRORS = {
    tf.errors.InvalidArgumentError: "INVALID_ARGUMENT",
    tf.errors.OutOfRangeError: "OUT_OF_RANGE",
    tf.errors.FailedPreconditionError: "FAILED_PRECONDITION",
    tf.errors.ResourceExhaustedError: "RESOURCE_EXHAUSTED",
    tf.errors.NotFoundError: "NOT_FOUND",
}


def dtype_name(dtype):
    return tf.as_dtype(dtype).name


def describe(specs):
    """``{"history": TensorSpec}`` → ``"history (int32, shape [-1, -1])"``."""
    return ", ".join(
        f"{name} ({dtype_name(spec.dtype)}, shape {shape_list(spec.shape)})"
        for name, spec in sorted(specs.items())
    )


def shape_list(shape):
    if shape.rank is None:
        return "unknown"
    return [-1 if d is None else d for d in shape.as_list()]


def _op_error_message(error):
    """The useful part of a TensorFlow op error: an assertion's text, without node traces."""
    message = error.message.split("\n\t [[")[0].strip()
    if "assertion failed: [" in message:
        return message.split("assertion failed: [", 1)[1].rsplit("]", 1)[0]
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else message


class Servable:
    """One loaded version of one model.

    Args:
        name: the model's name.
        version: the version number (the folder's name).
        path: the version folder (a SavedModel).
    """

    def __init__(self, name, version, path):
        self.name = name
        self.version = version
        self.path = path
        self._model = tf.saved_model.load(path)
        self.signature_defs = _read_signature_defs(path)
        self.signatures = {}
        for key, function in self._model.signatures.items():
            self.signatures[key] = (function, dict(function.structured_input_signature[1]))

    def inputs(self, signature_name):
        """Input name → `tf.TensorSpec` of a signature (NOT_FOUND if there is no such signature)."""
        return self._signature(signature_name)[1]

    def _signature(self, signature_name):
        if signature_name not in self.signatures:
            raise not_found(
                f"Serving signature name: '{signature_name}' not found in signature def of "
                f"model '{self.name}' version {self.version}. Available: {sorted(self.signatures)}"
            )
        return self.signatures[signature_name]

    def check_inputs(self, signature_name, inputs, max_batch_size=None):
        """Checks names, dtypes, shapes and batch sizes; INVALID_ARGUMENT says what was expected."""
        specs = self.inputs(signature_name)
        where = f"signature '{signature_name}' of model '{self.name}'"
        missing = sorted(set(specs) - set(inputs))
        unknown = sorted(set(inputs) - set(specs))
        if missing or unknown:
            problem = f"Missing input(s) {missing}" if missing else ""
            if unknown:
                problem += ("; " if problem else "") + f"unknown input(s) {unknown}"
            raise invalid(f"{problem} for {where}. Expected inputs: {describe(specs)}")
        for key, value in inputs.items():
            spec = specs[key]
            received = tf.string if value.dtype.kind in "OSU" else tf.as_dtype(value.dtype)
            if received != spec.dtype:
                raise invalid(
                    f"Expected input '{key}' of {where} to have dtype {dtype_name(spec.dtype)}. "
                    f"Received: dtype {dtype_name(received)}"
                )
            if not spec.shape.is_compatible_with(value.shape):
                raise invalid(
                    f"Expected input '{key}' of {where} to have shape {shape_list(spec.shape)} "
                    f"(-1: any size). Received: shape {list(value.shape)}"
                )
            if max_batch_size and value.ndim and value.shape[0] > max_batch_size:
                raise invalid(
                    f"Input '{key}' has batch size {value.shape[0]}, over this server's maximum "
                    f"batch size {max_batch_size} for model '{self.name}' (--max-batch-size); "
                    "split the request."
                )

    def predict(self, signature_name, inputs, max_batch_size=None, output_filter=()):
        """Runs a signature on NumPy inputs; returns output name → NumPy array.

        Raises:
            ServingError: NOT_FOUND for an unknown signature, INVALID_ARGUMENT for
                inputs that do not fit it (or that the graph rejects, e.g. an item
                id outside the catalogue).
        """
        function, specs = self._signature(signature_name)
        inputs = with_default_seed(specs, inputs)
        self.check_inputs(signature_name, inputs, max_batch_size)
        unknown = sorted(set(output_filter) - set(function.structured_outputs))
        if unknown:
            raise invalid(
                f"Unknown output(s) {unknown} in output_filter. "
                f"Outputs: {sorted(function.structured_outputs)}"
            )
        tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()}
        try:
            outputs = function(**tensors)
        except tf.errors.OpError as e:
            code = next((c for t, c in _OP_ERRORS.items() if isinstance(e, t)), "INTERNAL")
            raise ServingError(code, _op_error_message(e)) from e
        return {
            key: value.numpy()
            for key, value in outputs.items()
            if not output_filter or key in output_filter
        }

    def warm_up(self):
        """Replays ``assets.extra/tf_serving_warmup_requests`` like TF Serving; returns a count."""
        path = os.path.join(self.path, WARMUP_FILE)
        if not os.path.exists(path):
            return 0
        from tensorflow_serving.apis import prediction_log_pb2

        count = 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            if log.WhichOneof("log_type") != "predict_log":
                continue
            request = log.predict_log.request
            inputs = {
                key: tensor_protos.to_array(key, proto, max_bytes=MAX_WARMUP_TENSOR_BYTES)
                for key, proto in request.inputs.items()
            }
            self.predict(request.model_spec.signature_name or "serving_default", inputs)
            count += 1
        return count


def with_default_seed(specs, inputs):
    """A generator's ``seed`` input, when the request leaves it out: ``0, 1, …, B - 1``.

    mmrec's generator signatures (``generate_image``, ``generate_text``) take a
    per-row ``seed`` [B]; this server treats it as optional, so a request without it
    is answered with row i drawn from seed i (reproducible). TF Serving itself
    requires every signature input: send ``seed`` to be portable.
    """
    spec = specs.get("seed")
    given = [value for key, value in inputs.items() if key != "seed" and getattr(value, "ndim", 0)]
    if spec is None or "seed" in inputs or not given or spec.shape.rank != 1:
        return inputs
    rows = given[0].shape[0]
    return {**inputs, "seed": np.arange(rows, dtype=spec.dtype.as_numpy_dtype)}


def _read_signature_defs(path):
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    signature_defs = saved_model.meta_graphs[0].signature_def
    # The initialisation "signature" of TF2 SavedModels is not callable by clients.
    return {k: v for k, v in signature_defs.items() if not k.startswith("__")}


def complete_versions(model_dir):
    """Numeric version folders that hold a ``saved_model.pb``, ascending."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(
        int(entry)
        for entry in os.listdir(model_dir)
        if VERSION.match(entry) and os.path.isfile(os.path.join(model_dir, entry, "saved_model.pb"))
    )


class ModelManager:
    """Keeps the latest version of each model loaded, polling the folders for new ones.

    Args:
        model_base_path: the folder of model folders (``savedmodels``): every
            sub-folder not starting with ``.`` is a model.
        model_config_file: a TF Serving ``models.config``; when given, only the
            models it lists are served, each from its ``base_path`` (a path that does
            not exist here, such as the container path ``/models/rec``, is looked up
            by its last part next to the config file).
        poll_seconds: how often to look for new versions.
        log: a function that prints one line.
    """

    def __init__(self, model_base_path, model_config_file=None, poll_seconds=1.0, log=print):
        if model_config_file is None and not os.path.isdir(model_base_path):
            raise FileNotFoundError(f"No model base folder at '{model_base_path}'.")
        if model_config_file is not None and not os.path.isfile(model_config_file):
            raise FileNotFoundError(f"No model config file at '{model_config_file}'.")
        self.model_base_path = model_base_path
        self.model_config_file = model_config_file
        self.poll_seconds = poll_seconds
        self._log = log
        self._lock = threading.Lock()
        self._servables = {}
        self._failed = {}  # name → {version: error message}
        self._poll_errors = {}  # model name (None: all) → (since, message) while polling fails
        self._stop = threading.Event()
        self._thread = None

    # --- which models, where -----------------------------------------------------------

    def sources(self):
        """Model name → its folder of versions."""
        if self.model_config_file is None:
            return {
                entry: os.path.join(self.model_base_path, entry)
                for entry in sorted(os.listdir(self.model_base_path))
                if not entry.startswith(".")
                and os.path.isdir(os.path.join(self.model_base_path, entry))
            }
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2

        config = model_server_config_pb2.ModelServerConfig()
        with open(self.model_config_file) as f:
            text_format.Parse(f.read(), config)
        folder = os.path.dirname(os.path.abspath(self.model_config_file))
        sources = {}
        for entry in config.model_config_list.config:
            path = entry.base_path
            if not os.path.isabs(path):
                path = os.path.join(folder, path)
            if not os.path.isdir(path):
                path = os.path.join(folder, os.path.basename(path.rstrip("/")))
            sources[entry.name] = path
        return sources

    # --- loading -------------------------------------------------------------------------

    def refresh(self):
        """Loads new latest versions and unloads removed models; returns the names that changed.

        A model list or a version folder that cannot be read is logged and shown in
        the status of the models concerned (`poll_error`); what is loaded keeps serving.
        """
        try:
            sources = self.sources()
        except Exception as e:  # a half-written config file: keep serving, try again later
            self._poll_failed(None, f"could not read the model list: {type(e).__name__}: {e}")
            return []
        self._poll_succeeded(None)
        changed = []
        for name, folder in sources.items():
            try:
                if self._refresh_model(name, folder):
                    changed.append(name)
            except Exception as e:  # this model's folder; the other models still refresh
                message = f"could not look for new versions of {name}: {type(e).__name__}: {e}"
                self._poll_failed(name, message)
            else:
                self._poll_succeeded(name)
        with self._lock:  # what is said about models no longer listed is moot
            for name in set(self._poll_errors) - set(sources) - {None}:
                del self._poll_errors[name]
        for name in sorted(set(self._servables) - set(sources)):
            with self._lock:
                del self._servables[name]
            changed.append(name)
            self._log(f"mmrec serve: unloaded {name} (no longer listed)")
        return changed

    def _refresh_model(self, name, folder):
        """Loads the newest complete version of one model if it is new; True if it was."""
        versions = complete_versions(folder)
        if not versions:
            return False
        latest = versions[-1]
        current = self._servables.get(name)
        if current is not None and current.version == latest:
            return False
        if latest in self._failed.get(name, {}):
            return False
        try:
            servable = Servable(name, latest, os.path.join(folder, str(latest)))
            warmed = servable.warm_up()
        except Exception as e:  # the old version keeps serving
            message = f"{type(e).__name__}: {e}"
            self._failed.setdefault(name, {})[latest] = message
            self._log(f"mmrec serve: could not load {name} version {latest}: {message}")
            return False
        with self._lock:
            self._servables[name] = servable
        self._log(
            f"mmrec serve: serving {name} version {latest} ({warmed} warm-up request(s) replayed)"
        )
        return True

    def _poll_failed(self, name, message):
        """Records why polling failed (``name`` None: for every model); logs it once."""
        with self._lock:
            previous = self._poll_errors.get(name)
            if previous is None or previous[1] != message:
                self._poll_errors[name] = (
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    message,
                )
        if previous is None or previous[1] != message:
            self._log(f"mmrec serve: {message}")

    def _poll_succeeded(self, name):
        with self._lock:
            if self._poll_errors.pop(name, None) is not None:
                self._log(f"mmrec serve: polling {name or 'the model list'} works again")

    def poll_error(self, name):
        """Why new versions of ``name`` are not being loaded now, or None when polling works."""
        with self._lock:
            error = self._poll_errors.get(None) or self._poll_errors.get(name)
        if error is None:
            return None
        since, message = error
        return f"New versions are not being loaded (since {since}): {message}"

    def start(self):
        """Loads what is there now, then polls every ``poll_seconds`` in a thread."""
        self.refresh()
        self._thread = threading.Thread(target=self._poll, name="mmrec-model-poll", daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception as e:  # a bug: the thread must outlive it, and status must say so
                logger.exception("model poll failed")
                self._poll_failed(None, f"polling failed: {type(e).__name__}: {e}")

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- lookups -------------------------------------------------------------------------

    def names(self):
        with self._lock:
            return sorted(self._servables)

    def get(self, name, version=None):
        """The servable for ``name`` (and ``version``, if given); NOT_FOUND otherwise."""
        with self._lock:
            servable = self._servables.get(name)
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        if servable is None:
            raise not_found(
                f"Servable not found for request: {request}. Models served: {self.names()}"
            )
        if version is not None and int(version) != servable.version:
            raise not_found(
                f"Servable not found for request: {request}. Version served: {servable.version}"
            )
        return servable

    def status(self, name, version=None):
        """``GetModelStatusResponse`` as a dict (TF Serving's JSON)."""
        with self._lock:
            servable = self._servables.get(name)
        failed = dict(self._failed.get(name, {}))
        poll_error = self.poll_error(name)
        entries = []
        if servable is not None:
            # Still AVAILABLE (it serves), but not OK: a monitor must see that updates stopped.
            code = "UNKNOWN" if poll_error else "OK"
            entries.append((servable.version, "AVAILABLE", code, poll_error or ""))
        for number, message in failed.items():
            if servable is None or number > servable.version:
                entries.append((number, "END", "UNKNOWN", message))
        if version is not None:
            entries = [e for e in entries if e[0] == int(version)]
        if not entries:
            what = f"version {version} of model {name}" if version is not None else "any versions"
            raise not_found(
                f"Could not find {what}"
                + (f" of model {name}" if version is None else "")
                + f". Models served: {self.names()}"
                + (f". {poll_error}" if poll_error else "")
            )
        return {
            "model_version_status": [
                {
                    "version": str(number),
                    "state": state,
                    "status": {"error_code": code, "error_message": message},
                }
                for number, state, code, message in sorted(entries, reverse=True)
            ]
        }
