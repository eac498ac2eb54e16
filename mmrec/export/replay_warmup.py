"""Checks a SavedModel the way TF Serving will see it, in a process with no mmrec code.

Run as a script (never imported by mmrec), by `mmrec.export.validate_saved_model`:

    python replay_warmup.py SAVED_MODEL_DIR REQUESTS.tfrecord EXPECTED.npz

It imports only `tensorflow` and `tensorflow_text` — the op set that TF Serving
links — plus the pure-protobuf `tensorflow_serving.apis` messages, then:

1. lists every op in the SavedModel's graph and its functions and rejects ops
   that run Python (``PyFunc``, ``EagerPyFunc``: ``tf.numpy_function``,
   ``tf.py_function``) or that no library of this process registers;
2. loads the SavedModel and replays each warm-up request (`PredictionLog`
   records) through its signature;
3. compares every output with what the in-memory model returned (``EXPECTED``:
   key ``"<request index>:<output name>"``): floats with `np.allclose`, PNG
   and WAV bytes (outputs ending in ``_bytes``) decoded and compared to within
   one 8-bit level (PNG) or a few 16-bit steps (WAV), everything else exactly.

It prints one JSON line: ``{"ok": bool, "error": str, "requests": int, ...}``.

It ends with the process that started it: given a pipe's read end in
``MMREC_EXPORT_PARENT_PIPE_FD`` (`validate_saved_model` holds the only write
end), a thread reads it and exits the process at end-of-file, i.e. when the
exporting process is gone, killed by SIGKILL included.
"""

import json
import os
import sys
import threading
import time

# The names of mmrec.export.warmup.PARENT_PIPE_ENV and CHECK_PAUSE_ENV (no mmrec import here).
PARENT_PIPE_ENV = "MMREC_EXPORT_PARENT_PIPE_FD"
CHECK_PAUSE_ENV = "MMREC_EXPORT_PAUSE_IN_CHECK"
PARENT_GONE_EXIT = 3


def exit_with_parent():
    """Exits this process when the pipe in ``PARENT_PIPE_ENV`` reads end-of-file."""
    fd = os.environ.get(PARENT_PIPE_ENV)
    if not fd:
        return

    def watch():
        try:
            while os.read(int(fd), 1):  # the parent never writes: this blocks until it exits
                pass
        except OSError:
            pass
        os._exit(PARENT_GONE_EXIT)  # no cleanup to wait for: nothing is written here

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


# Before TensorFlow loads (seconds): a killed export must not wait for it.
exit_with_parent()
if os.environ.get(CHECK_PAUSE_ENV):
    time.sleep(float(os.environ[CHECK_PAUSE_ENV]))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402,F401  (registers the TF Text ops, as TF Serving links them)
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow.python.framework import op_def_registry  # noqa: E402
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402

# Ops whose kernels call back into the Python interpreter: registered in a Python
# process, but TF Serving (a C++ binary) has no kernel for them.
PYTHON_OPS = {
    "PyFunc": "tf.numpy_function / tf.compat.v1.py_func",
    "PyFuncStateless": "tf.compat.v1.py_func(stateful=False)",
    "EagerPyFunc": "tf.py_function",
}


def graph_ops(path):
    """op name → the first function (or "graph") that uses it."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    found = {}
    for meta_graph in saved_model.meta_graphs:
        functions = {f.signature.name for f in meta_graph.graph_def.library.function}
        for node in meta_graph.graph_def.node:
            found.setdefault(node.op, "the main graph")
        for function in meta_graph.graph_def.library.function:
            for node in function.node_def:
                found.setdefault(node.op, f"function {function.signature.name}")
        for name in functions:
            found.pop(name, None)  # calls of library functions are not ops
    return found


def check_ops(path):
    problems = []
    for op, where in sorted(graph_ops(path).items()):
        if op in PYTHON_OPS:
            problems.append(
                f"op '{op}' (from {PYTHON_OPS[op]}, in {where}) runs Python code, which "
                "TF Serving cannot run; write that step with TensorFlow ops"
            )
        elif op_def_registry.get(op) is None:
            problems.append(
                f"op '{op}' (in {where}) is not registered by tensorflow + tensorflow_text, "
                "so TF Serving cannot load the model"
            )
    return problems


def _same_media(a, b):
    """PNG bytes within one 8-bit level, WAV bytes within a few 16-bit steps."""
    if a[:4] == b"RIFF" and b[:4] == b"RIFF":
        a, b = tf.audio.decode_wav(a).audio.numpy(), tf.audio.decode_wav(b).audio.numpy()
        return a.shape == b.shape and np.abs(a - b).max(initial=0) <= 4 / 32767
    a, b = tf.io.decode_png(a).numpy(), tf.io.decode_png(b).numpy()
    return a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max(initial=0) <= 1


def _same(name, got, expected):
    if name.endswith("_bytes"):
        if got.shape != expected.shape:
            return False
        return all(_same_media(a, b) for a, b in zip(got.reshape(-1), expected.reshape(-1)))
    if got.dtype.kind == "f":
        return got.shape == expected.shape and np.allclose(got, expected, rtol=1e-4, atol=1e-5)
    return got.shape == expected.shape and np.array_equal(got, expected)


def replay(path, requests_path, expected_path):
    expected = np.load(expected_path, allow_pickle=True)
    loaded = tf.saved_model.load(path)
    count = 0
    for index, record in enumerate(tf.data.TFRecordDataset(requests_path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        signature = request.model_spec.signature_name or "serving_default"
        if signature not in loaded.signatures:
            return count, f"request {index}: no signature '{signature}' after reloading"
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        try:
            outputs = loaded.signatures[signature](**inputs)
        except Exception as e:  # the error of the first failing request is the report
            return count, f"request {index} ({signature}) failed: {type(e).__name__}: {e}"
        for name, value in outputs.items():
            key = f"{index}:{name}"
            if key not in expected:
                return count, f"request {index} ({signature}): unexpected output '{name}'"
            if not _same(name, value.numpy(), expected[key]):
                return count, (
                    f"request {index} ({signature}): output '{name}' differs from the "
                    "in-memory model's"
                )
        count += 1
    return count, ""


def main(argv):
    path, requests_path, expected_path = argv
    report = {"ok": False, "error": "", "requests": 0}
    problems = check_ops(path)
    if problems:
        report["error"] = "; ".join(problems)
    else:
        report["requests"], report["error"] = replay(path, requests_path, expected_path)
        leaked = sorted(m for m in sys.modules if m == "mmrec" or m.startswith("mmrec."))
        if leaked and not report["error"]:
            report["error"] = f"the check process imported mmrec modules: {leaked}"
        report["ok"] = not report["error"]
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
