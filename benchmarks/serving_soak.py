"""Serving soak: `mmrec serve` under minutes of mixed good and bad traffic.

    python benchmarks/serving_soak.py --minutes 10 --clients 16

Exports a small `Recommender` and a small text-conditioned `ConditionalGAN`
(untrained: what is measured is the server, not the models) built on --data,
starts `mmrec serve` on loopback (a subprocess, free ports) and runs --clients
threads for --minutes. Each client keeps one keep-alive HTTP connection and one
gRPC channel, and sends a mix of requests: good ones (recommendations and
images over REST and gRPC, model status) and, with --bad-fraction, cheap bad
ones that must be refused with a 4xx / INVALID_ARGUMENT-like code (malformed or
too deeply nested JSON, a lone surrogate, a non-ASCII version, a batch over the
limit, an unknown model, a gRPC tensor claiming 50 million values, a body
shorter than its Content-Length, …).

Every answer is classified: ``ok`` (a good request answered 200), ``expected``
(a bad request refused with its expected code) or ``unexpected`` (anything
else: a 5xx, a wrong code, a reset connection, a timeout), the last counted by
reason. Reports p50/p99 latency per request kind, and the server process's RSS
at the start (after warm-up), its maximum, and at the end. Prints a table and
writes JSON (default ``benchmarks/results/serving_soak.json``).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import print_table, write_json  # noqa: E402

import mmrec  # noqa: E402

MAX_BATCH = 16
TIMEOUT_MS = 2000


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def export_models(data_path, base):
    """A small recommender ("rec") and text-conditioned GAN ("generator") under ``base``."""
    from mmrec.export import export_saved_model
    from mmrec.models import ConditionalGAN
    from mmrec.models.recommender import Recommender

    data = mmrec.data.load(data_path)
    rec = Recommender.from_dataset(data, modalities=("image", "text"), embedding_dim=16)
    gan = ConditionalGAN.from_dataset(
        data, condition="text", latent_dim=16, generator_filters=(32, 16, 16, 8)
    )
    export_saved_model(rec, base, name="rec", validate=False)
    export_saved_model(gan, base, name="generator", validate=False)
    return rec.num_items


# --- the requests ----------------------------------------------------------------------------


def _json(payload):
    return json.dumps(payload).encode()


def _raw_post(path, body, length=None):
    head = f"POST {path} HTTP/1.1\r\nHost: soak\r\nContent-Length: {length or len(body)}\r\n\r\n"
    return head.encode("latin-1") + body


class Traffic:
    """The request kinds: name → (weight, good?, function(client) → outcome code)."""

    def __init__(self, num_items, bad_fraction):
        self.num_items = num_items
        good = {
            "rest recommend": self.rest_recommend,
            "grpc recommend": self.grpc_recommend,
            "rest generate": self.rest_generate,
            "grpc generate": self.grpc_generate,
            "rest status": self.rest_status,
        }
        bad = {
            "malformed JSON": self.rest_bad(b'{"inputs": [1', 400),
            "nested JSON": self.rest_bad(b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}", 400),
            "lone surrogate": self.rest_bad(
                b'{"signature_name": "generate_image", "inputs": {"text": ["\\ud800"]}}',
                400,
                model="generator",
            ),
            "batch over limit": self.rest_bad(_json({"inputs": [[1]] * (MAX_BATCH + 1)}), 400),
            "unknown model": self.rest_bad(_json({"inputs": [[1]]}), 404, model="nope"),
            "id out of range": self.rest_bad(_json({"inputs": [[num_items + 5]]}), 400),
            "non-ASCII version": self.raw_bad(
                _raw_post("/v1/models/rec/versions/\xb2:predict", b"{}"), 400
            ),
            "garbage request line": self.raw_bad(b"GARBAGE\r\n\r\n", 400),
            "short body": self.raw_bad(_raw_post("/v1/models/rec:predict", b"{", 100), 408),
            "grpc 50M claimed values": self.grpc_claimed,
            "grpc unknown signature": self.grpc_unknown_signature,
        }
        self.kinds = {}
        for name, call in good.items():
            self.kinds[name] = ((1 - bad_fraction) / len(good), True, call)
        for name, call in bad.items():
            # A short body holds its client for the server's timeout: rarer than the rest.
            weight = bad_fraction / len(bad) * (0.1 if name == "short body" else 1)
            self.kinds[name] = (weight, False, call)

    def pick(self, rng):
        names = list(self.kinds)
        return rng.choices(names, weights=[self.kinds[n][0] for n in names])[0]

    def history(self, rng):
        return rng.sample(range(self.num_items), 5)

    # good
    def rest_recommend(self, client):
        body = _json({"signature_name": "recommend", "instances": [self.history(client.rng)]})
        return client.post("/v1/models/rec:predict", body)

    def grpc_recommend(self, client):
        import numpy as np
        import tensorflow as tf

        history = np.array([self.history(client.rng)], "int32")
        return client.grpc_predict("rec", "recommend", history=tf.make_tensor_proto(history))

    def rest_generate(self, client):
        body = _json(
            {"instances": [{"text": "a small blue ring", "seed": client.rng.randrange(99)}]}
        )
        return client.post("/v1/models/generator:predict", body)

    def grpc_generate(self, client):
        import numpy as np
        import tensorflow as tf

        inputs = {
            "text": tf.make_tensor_proto(np.array([b"a large red star"], object)),
            "seed": tf.make_tensor_proto(np.array([client.rng.randrange(99)], "int64")),
        }
        return client.grpc_predict("generator", "generate_image", **inputs)

    def rest_status(self, client):
        return client.get("/v1/models/rec")

    # bad
    def rest_bad(self, body, expected, model="rec"):
        def call(client):
            return client.post(f"/v1/models/{model}:predict", body), expected

        return call

    def raw_bad(self, data, expected):
        def call(client):
            return client.raw(data), expected

        return call

    def grpc_claimed(self, client):
        import numpy as np
        import tensorflow as tf

        proto = tf.make_tensor_proto(np.array([3], "int32"))
        proto.tensor_shape.Clear()
        proto.tensor_shape.dim.add(size=1)
        proto.tensor_shape.dim.add(size=50_000_000)
        return client.grpc_predict("rec", "recommend", history=proto), "INVALID_ARGUMENT"

    def grpc_unknown_signature(self, client):
        import numpy as np
        import tensorflow as tf

        history = tf.make_tensor_proto(np.array([[1, 2]], "int32"))
        return client.grpc_predict("rec", "rank", history=history), "NOT_FOUND"


class Client:
    """One keep-alive HTTP connection and one gRPC channel; calls return a code or raise."""

    def __init__(self, ready, seed):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        host, port = ready["rest"].rsplit(":", 1)
        self.address = (host, int(port))
        self.rng = random.Random(seed)
        self.http = http.client.HTTPConnection(*self.address, timeout=60)
        self.reconnects = 0
        self.channel = grpc.insecure_channel(ready["grpc"])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def _http(self, method, path, body=None):
        """One exchange on the keep-alive connection. Like `mmrec.serving.Client`, it
        reconnects once when a reused connection turns out closed (the server closes
        idle ones after --rest-api-timeout-ms); those reconnects are counted."""
        for attempt in range(2):
            reused = self.http.sock is not None
            try:
                self.http.request(method, path, body=body)
                response = self.http.getresponse()
                response.read()
                return response.status
            except (http.client.HTTPException, ConnectionError):
                self.http.close()
                if attempt or not reused:
                    raise
                self.reconnects += 1

    def post(self, path, body):
        return self._http("POST", path, body)

    def get(self, path):
        return self._http("GET", path)

    def raw(self, data):
        with socket.create_connection(self.address, timeout=60) as sock:
            sock.sendall(data)
            response = http.client.HTTPResponse(sock)
            response.begin()
            response.read()
            return response.status

    def grpc_predict(self, model, signature, **inputs):
        import grpc
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        for key, proto in inputs.items():
            request.inputs[key].CopyFrom(proto)
        try:
            self.stub.Predict(request, timeout=60)
            return 200
        except grpc.RpcError as e:
            return e.code().name

    def close(self):
        self.http.close()
        self.channel.close()


# --- the soak --------------------------------------------------------------------------------


class Tally:
    """Latencies and outcomes per request kind, shared by the client threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = collections.defaultdict(list)
        self.outcomes = collections.defaultdict(collections.Counter)
        self.unexpected = collections.Counter()
        self.reconnects = 0

    def add(self, kind, seconds, outcome, reason=None):
        with self.lock:
            self.latencies[kind].append(seconds)
            self.outcomes[kind][outcome] += 1
            if reason:
                self.unexpected[reason] += 1


def run_client(traffic, ready, seed, deadline, tally):
    client = Client(ready, seed)
    try:
        while time.monotonic() < deadline:
            kind = traffic.pick(client.rng)
            _, good, call = traffic.kinds[kind]
            start = time.perf_counter()
            try:
                result = call(client)
                code, expected = (result, 200) if good else result
                reason = None if code == expected else f"{kind}: got {code}, expected {expected}"
            except Exception as e:  # a reset, a timeout: never expected
                reason = f"{kind}: {type(e).__name__}"
            outcome = "unexpected" if reason else ("ok" if good else "expected")
            tally.add(kind, time.perf_counter() - start, outcome, reason)
    finally:
        with tally.lock:
            tally.reconnects += client.reconnects
        client.close()


def soak(traffic, ready, pid, clients, seconds):
    tally = Tally()
    rss = {"start_mb": rss_mb(pid)}
    peak = [rss["start_mb"]]
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(target=run_client, args=(traffic, ready, i, deadline, tally))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        time.sleep(1.0)
        peak.append(rss_mb(pid))
        remaining = max(deadline - time.monotonic(), 0)
        print(f"\r{remaining:6.0f} s left, RSS {peak[-1]:.0f} MB", end="", flush=True)
    print()
    rss.update(max_mb=max(peak), end_mb=rss_mb(pid))
    return tally, rss


def _percentile_ms(seconds, q):
    import numpy as np

    return float(np.percentile(np.asarray(seconds) * 1000.0, q)) if seconds else float("nan")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="tf_records/shapes")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (8-32)")
    parser.add_argument("--bad-fraction", type=float, default=0.3, help="share of bad requests")
    parser.add_argument("--out", default="benchmarks/results/serving_soak.json")
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.data, "dataset.json")):
        mmrec.data.write_shapes(args.data, mmrec.data.ShapesConfig(num_items=200, num_users=50))

    from mmrec.testing import start_server

    base = tempfile.mkdtemp(prefix="mmrec-soak-")
    num_items = export_models(args.data, os.path.join(base, "savedmodels"))
    process, ready, _, _ = start_server(
        os.path.join(base, "savedmodels"),
        os.path.join(base, "server.log"),
        *("--max-batch-size", MAX_BATCH, "--rest-api-timeout-ms", TIMEOUT_MS),
    )
    try:
        traffic = Traffic(num_items, args.bad_fraction)
        tally, rss = soak(traffic, ready, process.pid, args.clients, args.minutes * 60)
        alive = process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        shutil.rmtree(base, ignore_errors=True)

    rows, kinds = [], {}
    for kind, (_, good, _) in traffic.kinds.items():
        seconds = tally.latencies[kind]
        outcomes = tally.outcomes[kind]
        kinds[kind] = {
            "good": good,
            "requests": len(seconds),
            "p50_ms": _percentile_ms(seconds, 50),
            "p99_ms": _percentile_ms(seconds, 99),
            **{o: outcomes[o] for o in ("ok", "expected", "unexpected")},
        }
        rows.append(
            {
                "request": kind,
                "kind": "good" if good else "bad",
                "requests": str(len(seconds)),
                "p50_ms": f"{kinds[kind]['p50_ms']:.1f}",
                "p99_ms": f"{kinds[kind]['p99_ms']:.1f}",
                "answered as expected": str(outcomes["ok"] + outcomes["expected"]),
                "unexpected": str(outcomes["unexpected"]),
            }
        )
    good_seconds = [s for k, (_, g, _) in traffic.kinds.items() if g for s in tally.latencies[k]]
    total = sum(len(v) for v in tally.latencies.values())
    summary = {
        "requests": total,
        "requests_per_s": total / (args.minutes * 60),
        "good_p50_ms": _percentile_ms(good_seconds, 50),
        "good_p99_ms": _percentile_ms(good_seconds, 99),
        "expected_4xx": sum(c["expected"] for c in tally.outcomes.values()),
        "unexpected": sum(c["unexpected"] for c in tally.outcomes.values()),
        "idle_keepalive_reconnects": tally.reconnects,
        "server_alive_at_end": alive,
        "rss": rss,
    }
    print(f"\n{args.clients} clients, {args.minutes:g} min, bad fraction {args.bad_fraction}\n")
    columns = ["request", "kind", "requests", "p50_ms", "p99_ms", "answered as expected"]
    print_table(rows, [*columns, "unexpected"])
    print(
        f"\nrequests {total} ({summary['requests_per_s']:.1f}/s); good p50 "
        f"{summary['good_p50_ms']:.1f} ms, p99 {summary['good_p99_ms']:.1f} ms; expected 4xx "
        f"{summary['expected_4xx']}; unexpected {summary['unexpected']}; reconnects after "
        f"the server closed an idle keep-alive connection {tally.reconnects}"
    )
    print(
        f"server RSS: start {rss['start_mb']:.0f} MB, max {rss['max_mb']:.0f} MB, "
        f"end {rss['end_mb']:.0f} MB; alive at the end: {alive}"
    )
    for reason, count in tally.unexpected.most_common(10):
        print(f"  unexpected: {count} × {reason}")
    write_json(
        args.out,
        {
            "command": "python benchmarks/serving_soak.py " + " ".join(argv or sys.argv[1:]),
            "data": args.data,
            "clients": args.clients,
            "minutes": args.minutes,
            "bad_fraction": args.bad_fraction,
            "summary": summary,
            "unexpected_reasons": dict(tally.unexpected),
            "kinds": kinds,
        },
    )


if __name__ == "__main__":
    main()
