"""Warm-up requests and the fresh-process check of an export.

Where it sits in the data flow: after `keras.export.ExportArchive` has written
a SavedModel into the temporary folder and before it is published as a
version. `write_requests` writes one ``PredictionLog`` per signature (TF
Serving replays ``assets.extra/tf_serving_warmup_requests`` when it loads a
version, so the first real request is not slow); `validate_saved_model` loads
the folder in a new Python process that imports only TensorFlow and
tensorflow-text (``replay_warmup.py``), replays those requests there and
compares the answers with the in-memory model's.

The check process ends with the export: the exporting process kills it when it
stops on an exception (KeyboardInterrupt included), and the check process
watches a pipe that only the exporting process holds open, so that it also
exits when the exporter is killed by a signal that runs no Python code
(SIGTERM's default action, SIGKILL): the kernel closes the pipe, and the check
process reads its end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many
_REPLAY_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "replay_warmup.py")
# The check process's end of the pipe it watches (replay_warmup.py reads these names: it
# imports no mmrec code).
PARENT_PIPE_ENV = "MMREC_EXPORT_PARENT_PIPE_FD"
# Test hook: seconds the check process sleeps before its work (the tests kill the
# exporting process meanwhile, to see that the check process ends with it).
CHECK_PAUSE_ENV = "MMREC_EXPORT_PAUSE_IN_CHECK"


class ExportError(ValueError):
    """An export that would not serve: a Python-only or unknown op, or outputs that differ."""


def _serving_apis():
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError as e:  # an optional dependency (the "serving" extra)
        raise ImportError(
            "mmrec.export needs tensorflow-serving-api for warm-up records and models.config: "
            "pip install 'mmrec[serving]'"
        ) from e
    return model_pb2, predict_pb2, prediction_log_pb2


def write_requests(path, model_name, endpoints):
    """Writes one ``PredictionLog`` (a ``PredictRequest``) per endpoint to the TFRecord ``path``."""
    model_pb2, predict_pb2, prediction_log_pb2 = _serving_apis()
    if len(endpoints) > MAX_WARMUP_RECORDS:
        raise ValueError(f"Expected at most {MAX_WARMUP_RECORDS} warm-up requests.")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for endpoint in endpoints:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=endpoint.name)
            )
            for key, value in endpoint.example.items():
                dtype = endpoint.input_signature[key].dtype
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def reference_outputs(functions, endpoints):
    """The in-memory model's answers to the example requests: ``{"<i>:<output>": array}``."""
    outputs = {}
    for index, endpoint in enumerate(endpoints):
        inputs = {
            key: tf.constant(value, dtype=endpoint.input_signature[key].dtype)
            for key, value in endpoint.example.items()
        }
        for name, value in functions[endpoint.name](inputs).items():
            outputs[f"{index}:{name}"] = value.numpy()
    return outputs


def validate_saved_model(path, requests_path, expected_path, timeout=600):
    """Loads ``path`` in a fresh process (TensorFlow + tensorflow-text only) and replays.

    Raises:
        ExportError: naming the offending op, the failing request, or the output
            that differs from the in-memory model's.
    """
    # Absolute paths: the check runs in another working directory.
    paths = [os.path.abspath(p) for p in (path, requests_path, expected_path)]
    args = [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else [])]
    args += [_REPLAY_SCRIPT, *paths]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    # The check process watches a pipe whose write end only this process holds (it is
    # not inherited by other children): it reads end-of-file when this process dies.
    watched, held = os.pipe() if os.name == "posix" else (None, None)
    if watched is not None:
        env[PARENT_PIPE_ENV] = str(watched)
    try:
        process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=os.path.dirname(paths[1]),
            pass_fds=() if watched is None else (watched,),
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ExportError(f"Validation of {path} took longer than {timeout} s.") from e
        finally:  # also on KeyboardInterrupt: the check process never outlives the export
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        for fd in (watched, held):
            if fd is not None:
                os.close(fd)
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        raise ExportError(
            f"The SavedModel check process failed (exit {process.returncode}) before "
            f"reporting:\n{tail}"
        )
    report = json.loads(lines[-1])
    if not report["ok"]:
        raise ExportError(
            "The exported SavedModel would not serve under TF Serving (checked in a fresh "
            f"process with only tensorflow and tensorflow_text): {report['error']}"
        )
    return report


def save_expected(path, outputs):
    np.savez(path, **outputs)
