"""tf.distribute: MirroredStrategy on 2 logical CPUs and MultiWorkerMirroredStrategy with two
worker processes on loopback ports train the recommender, the cGAN and the VAE like one device.

Each run happens in a fresh process (logical devices and a multi-worker strategy must
be set up before TensorFlow starts). What "like one device" means, per model:

* Recommender: its in-batch softmax is global (each replica scores its users against
  the candidates of every replica, all-gathered), so R replicas with a global batch B
  train exactly like one device with batch B: the losses agree within 1e-4 step for
  step.
* cGAN / VAE: per-example losses averaged over the global batch; the runs differ only
  in the noise each replica draws and in the generator's per-replica batch-norm
  statistics, so their loss trajectories agree within a few percent.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, os, sys
mode, data_dir, work, out_path = sys.argv[1:5]
if mode == "mirrored":
    from mmrec.training.distribute import configure_cpu_devices
    configure_cpu_devices(2)  # before TensorFlow starts
from mmrec.training.distribute import make_strategy
strategy = make_strategy(mode) if mode == "multiworker" else None  # first thing, as required

import keras
import tensorflow as tf
import mmrec
from mmrec.evaluation.generation import AttributeJudge
from mmrec.training import train

data = mmrec.data.load(data_dir)
STEP = {"epochs": 3, "steps_per_epoch": 3, "batch_size": 16, "sample_every": 10}
CONFIGS = {
    "recommender": {"preset": "tiny", **{k: v for k, v in STEP.items() if k != "sample_every"},
                    "modalities": ["image"], "embedding_dim": 8,
                    "encoder_config": {"image": {"filters": [4, 8]}}, "id_only_baseline": False,
                    "history_content": False},
    "gan": {"preset": "tiny", **STEP, "latent_dim": 8, "generator_filters": [16, 8, 8, 4],
            "discriminator_filters": [4, 8, 8]},
    "vae": {"preset": "tiny", **STEP, "latent_dim": 8, "decoder_filters": [16, 8, 8, 4],
            "encoder_filters": [4, 8, 8]},
}
# The losses are compared, not the judge's verdict: an untrained judge will do.
judge = AttributeJudge.from_dataset(data, filters=(4, 8, 8), feature_dim=8)


results = {}
if mode == "mirrored":
    runs = {"single": "default", "mirrored": make_strategy("mirrored")}
    results["replicas"] = runs["mirrored"].num_replicas_in_sync
else:
    runs = {"multiworker": strategy}
    results["replicas"] = strategy.num_replicas_in_sync
recommender = os.path.join(work, "single-recommender")  # the same user tower for every run
for kind in ("recommender", "gan", "vae"):
    for name, run_strategy in runs.items():
        extra = {} if kind == "recommender" else {"recommender": recommender, "judge": judge}
        result = train(kind, data, os.path.join(work, f"{name}-{kind}"), CONFIGS[kind],
                       strategy=run_strategy, verbose=0, **extra)
        results[f"{name}/{kind}"] = result.history
        results[f"{name}/{kind}/metrics"] = bool(result.metrics)
with open(out_path, "w") as f:
    json.dump(results, f)
"""


@pytest.fixture(scope="module")
def data_dir(tiny_shapes):
    return tiny_shapes


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("distribute")
    (work / "script.py").write_text(SCRIPT)
    return work


def environment(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def run_script(work, mode, data_dir, out, env):
    """Starts the script; its output goes to a log file (a full pipe would block a worker
    while the other waits for it in a collective)."""
    args = [sys.executable, str(work / "script.py"), mode, data_dir, str(work), str(out)]
    log = open(f"{out}.log", "w")
    process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    process.log = log
    return process


def finish(process, timeout=600):
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.log.close()
    with open(process.log.name) as f:
        output = f.read()
    assert process.returncode == 0, output[-5000:]


@pytest.fixture(scope="module")
def mirrored(work, data_dir):
    """Single-device and MirroredStrategy (2 logical CPUs) runs of each model, one process."""
    out = work / "mirrored.json"
    finish(run_script(work, "mirrored", data_dir, out, environment()))
    return json.loads(out.read_text())


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture(scope="module")
def multiworker(work, data_dir, mirrored):
    """Two worker processes (one CPU device each) on loopback ports: one model, two replicas."""
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    processes, outputs = [], []
    for index in range(2):
        out = work / f"worker-{index}.json"
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(
            run_script(work, "multiworker", data_dir, out, environment(TF_CONFIG=tf_config))
        )
        outputs.append(out)
    for process in processes:
        finish(process)
    return [json.loads(out.read_text()) for out in outputs]


def losses(history, keys):
    return np.array([history[k] for k in keys])


def test_mirrored_runs_on_two_replicas(mirrored):
    assert mirrored["replicas"] == 2


def test_mirrored_recommender_with_a_global_softmax_matches_one_device(mirrored):
    single = losses(mirrored["single/recommender"], ["loss", "val_loss"])
    assert single.shape == (2, 3) and np.all(np.isfinite(single))
    np.testing.assert_allclose(
        losses(mirrored["mirrored/recommender"], ["loss", "val_loss"]), single, atol=1e-4
    )


@pytest.mark.parametrize(
    "kind, keys, rtol",
    [("gan", ["d_loss", "g_loss"], 0.05), ("vae", ["loss", "reconstruction"], 0.02)],
)
def test_mirrored_generators_follow_the_one_device_trajectory(mirrored, kind, keys, rtol):
    single = losses(mirrored[f"single/{kind}"], keys)
    np.testing.assert_allclose(losses(mirrored[f"mirrored/{kind}"], keys), single, rtol=rtol)
    # The loss is averaged over the global batch, not summed over replicas.
    assert single.shape == (len(keys), 3) and np.all(np.isfinite(single))


def test_multiworker_runs_match_and_only_the_chief_writes_the_run(multiworker, mirrored, work):
    chief, worker = multiworker
    assert chief["replicas"] == worker["replicas"] == 2
    np.testing.assert_allclose(
        losses(chief["multiworker/recommender"], ["loss"]),
        losses(mirrored["single/recommender"], ["loss"]),
        atol=1e-4,
    )
    for kind, keys, rtol in (("gan", ["d_loss", "g_loss"], 0.05), ("vae", ["loss"], 0.02)):
        np.testing.assert_allclose(
            losses(chief[f"multiworker/{kind}"], keys),
            losses(mirrored[f"single/{kind}"], keys),
            rtol=rtol,
        )
    for kind in ("recommender", "gan", "vae"):
        # Both workers log the global metrics; only the chief evaluates and writes metrics.
        np.testing.assert_allclose(
            losses(chief[f"multiworker/{kind}"], ["val_loss" if kind != "gan" else "val_d_loss"]),
            losses(worker[f"multiworker/{kind}"], ["val_loss" if kind != "gan" else "val_d_loss"]),
            rtol=1e-5,
        )
        assert chief[f"multiworker/{kind}/metrics"] and not worker[f"multiworker/{kind}/metrics"]
        run = work / f"multiworker-{kind}"
        assert (run / "metrics.json").exists() and (run / "model.keras").exists()
        assert (run / "workers" / "worker-1" / "training.csv").exists()
        assert not (run / "workers" / "worker-1" / "metrics.json").exists()
