"""Serving latency: exported signatures vs `model.predict`, and `mmrec serve` under load.

    python benchmarks/serving_latency.py --data tf_records/shapes

Builds a `Recommender` on --data with the default configuration (image, text and
audio towers; untrained: latency does not depend on the weights), exports it
(validated) to a temporary ``savedmodels/`` and measures, on this machine:

1. batch-1 latency of the exported signatures called in-process (the loaded
   SavedModel, as a server runs it) against `model.predict` on the same model
   for the same output: ``embed_item`` vs ``rec.item_encoder.predict`` (the same
   computation: one item through the item tower) and ``embed_user`` vs
   ``rec.predict`` (the model's own call, which re-embeds the whole catalogue
   every time; the export stores the catalogue's embeddings instead);
2. `mmrec serve` (a subprocess on loopback, free ports): one client in sequence
   for the REST (and gRPC) overhead over the in-process ``recommend`` call, then
   --clients concurrent clients × --requests requests each, REST then gRPC,
   counting every error. Clients reuse their connection (HTTP keep-alive).

Prints a table and writes JSON (default ``benchmarks/results/serving_latency.json``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import print_table, write_json  # noqa: E402

import mmrec  # noqa: E402


def _percentiles(seconds):
    import numpy as np

    ms = np.asarray(seconds) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _timed(call, repeats, warmup=5):
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def _start_server(base):
    args = [sys.executable, "-m", "mmrec.cli", "serve", "--model-base-path", base]
    args += ["--rest-port", "0", "--grpc-port", "0", "--max-batch-size", "1024"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    ready = queue.Queue()

    def read():
        for line in process.stdout:
            if line.startswith("mmrec serve: ready "):
                ready.put(json.loads(line[len("mmrec serve: ready ") :]))

    threading.Thread(target=read, daemon=True).start()
    return process, ready.get(timeout=300)


class _Rest:
    """A keep-alive HTTP connection posting pre-serialised TF Serving JSON."""

    def __init__(self, address, path):
        host, port = address.rsplit(":", 1)
        self.connection = http.client.HTTPConnection(host, int(port), timeout=60)
        self.path = path

    def __call__(self, body):
        self.connection.request("POST", self.path, body=body)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return data


class _Grpc:
    def __init__(self, address):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.channel = grpc.insecure_channel(address)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def __call__(self, request):
        return self.stub.Predict(request, timeout=60)


def _requests(num_items, count, length=10):
    """``count`` histories of ``length`` distinct ids, as REST bodies and gRPC requests."""
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    rng = np.random.default_rng(0)
    histories = [rng.choice(num_items, size=length, replace=False) for _ in range(count)]
    bodies, protos = [], []
    for history in histories:
        bodies.append(
            json.dumps({"signature_name": "recommend", "inputs": [history.tolist()]}).encode()
        )
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "rec"
        request.model_spec.signature_name = "recommend"
        request.inputs["history"].CopyFrom(tf.make_tensor_proto(history[None].astype("int32")))
        protos.append(request)
    return histories, bodies, protos


def _load(make_client, payloads, clients, requests):
    """``clients`` threads × ``requests`` calls; returns latencies, errors, wall seconds."""
    latencies, errors = [], []
    lock = threading.Lock()
    start_line = threading.Barrier(clients + 1)

    def worker(index):
        call = make_client()
        mine, failed = [], 0
        start_line.wait()
        for i in range(requests):
            payload = payloads[(index * requests + i) % len(payloads)]
            start = time.perf_counter()
            try:
                call(payload)
            except Exception:
                failed += 1
                call = make_client()
            mine.append(time.perf_counter() - start)
        with lock:
            latencies.extend(mine)
            errors.append(failed)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_line.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return latencies, sum(errors), time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500, help="per client")
    parser.add_argument("--repeats", type=int, default=300, help="in-process calls timed")
    parser.add_argument("--predict-repeats", type=int, default=20, help="model.predict calls")
    parser.add_argument("--out", default="benchmarks/results/serving_latency.json")
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.data, "dataset.json")):
        mmrec.data.write_shapes(args.data)

    import keras
    import numpy as np
    import tensorflow as tf

    from mmrec.export import export_saved_model
    from mmrec.models.recommender import Recommender

    data = mmrec.data.load(args.data)
    rec = Recommender.from_dataset(data)
    base = tempfile.mkdtemp(prefix="mmrec-serving-bench-")
    start = time.perf_counter()
    path = export_saved_model(rec, base, name="rec")
    export_seconds = time.perf_counter() - start
    signatures = tf.saved_model.load(path).signatures
    histories, bodies, protos = _requests(rec.num_items, 64)
    history = tf.constant(histories[0][None].astype("int32"))
    padded = np.full((1, rec.max_history), -1, "int32")
    padded[0, :10] = histories[0]
    features = data.catalogue().features()
    item = {m: features[m][:1] for m in rec.item_encoder.modalities}
    item_input = dict(item)
    if "text" in item_input:
        item_input["text"] = tf.constant(rec.tokenizer(item["text"]))

    timings = {
        "recommend signature": _timed(
            lambda: signatures["recommend"](history=history), args.repeats
        ),
        "embed_user signature": _timed(
            lambda: signatures["embed_user"](history=history), args.repeats
        ),
        "embed_item signature": _timed(lambda: signatures["embed_item"](**item), args.repeats),
        "rec.predict (user)": _timed(
            lambda: rec.predict({"history": padded}, verbose=0), args.predict_repeats, warmup=2
        ),
        "item_encoder.predict": _timed(
            lambda: rec.item_encoder.predict(item_input, verbose=0), args.predict_repeats, 2
        ),
    }
    stats = {name: _percentiles(t) for name, t in timings.items()}

    process, ready = _start_server(base)
    try:
        rest_call = _Rest(ready["rest"], "/v1/models/rec:predict")
        grpc_call = _Grpc(ready["grpc"])
        for kind, call, payloads in (("REST", rest_call, bodies), ("gRPC", grpc_call, protos)):
            cycle = iter(range(10**9))
            times = _timed(lambda c=call, p=payloads, i=cycle: c(p[next(i) % len(p)]), args.repeats)
            stats[f"{kind} 1 client"] = _percentiles(times)
        loads = {}
        for kind, make, payloads in (
            ("REST", lambda: _Rest(ready["rest"], "/v1/models/rec:predict"), bodies),
            ("gRPC", lambda: _Grpc(ready["grpc"]), protos),
        ):
            latencies, errors, seconds = _load(make, payloads, args.clients, args.requests)
            name = f"{kind} {args.clients}x{args.requests}"
            stats[name] = {
                **_percentiles(latencies),
                "requests": len(latencies),
                "errors": errors,
                "throughput_rps": len(latencies) / seconds,
            }
            loads[kind] = name
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        shutil.rmtree(base, ignore_errors=True)

    ratio_item = stats["item_encoder.predict"]["p50_ms"] / stats["embed_item signature"]["p50_ms"]
    ratio_user = stats["rec.predict (user)"]["p50_ms"] / stats["embed_user signature"]["p50_ms"]
    overhead = stats["REST 1 client"]["p50_ms"] - stats["recommend signature"]["p50_ms"]
    grpc_overhead = stats["gRPC 1 client"]["p50_ms"] - stats["recommend signature"]["p50_ms"]
    rows = [
        {
            "measurement": name,
            "p50_ms": f"{s['p50_ms']:.3f}",
            "p99_ms": f"{s['p99_ms']:.3f}",
            "requests/s": f"{s['throughput_rps']:.0f}" if "throughput_rps" in s else "",
            "errors": str(s.get("errors", "")),
        }
        for name, s in stats.items()
    ]
    print(
        f"\n{rec.num_items} items, modalities {list(rec.item_encoder.modalities)}, "
        f"embedding {rec.embedding_dim}; export + validation {export_seconds:.1f} s\n"
    )
    print_table(rows, ["measurement", "p50_ms", "p99_ms", "requests/s", "errors"])
    summary = {
        "embed_item signature vs item_encoder.predict, batch 1 (x faster)": ratio_item,
        "embed_user signature vs rec.predict, batch 1 (x faster)": ratio_user,
        "REST overhead over the in-process recommend call, p50 ms": overhead,
        "gRPC overhead over the in-process recommend call, p50 ms": grpc_overhead,
    }
    print()
    for key, value in summary.items():
        print(f"{key}: {value:.2f}")
    write_json(
        args.out,
        {
            "command": "python benchmarks/serving_latency.py " + " ".join(argv or sys.argv[1:]),
            "data": args.data,
            "num_items": rec.num_items,
            "modalities": list(rec.item_encoder.modalities),
            "clients": args.clients,
            "requests_per_client": args.requests,
            "export_seconds": export_seconds,
            "latency": stats,
            "summary": summary,
            "keras": keras.__version__,
        },
    )


if __name__ == "__main__":
    main()
