"""Resume after a crash: `mmrec train` killed with SIGKILL mid-epoch, started again with the
same command, finishes from its last backup and ends where an uninterrupted run ends —
the recommender and the GAN (whose noise state is backed up with its weights)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mmrec
from mmrec.evaluation.generation import AttributeJudge
from mmrec.training.monitoring import PAUSE_ENV

pytestmark = pytest.mark.slow

EPOCHS, STEPS = 4, 4
SHORT = {"preset": "tiny", "epochs": EPOCHS, "steps_per_epoch": STEPS, "batch_size": 16}
CONFIGS = {
    "recommender": {
        **SHORT,
        "modalities": ["image", "text"],
        "embedding_dim": 8,
        "encoder_config": {
            "image": {"filters": [4, 8]},
            "text": {"hidden_dim": 8, "sequence_length": 16},
        },
        "id_only_baseline": False,
    },
    # The GAN's noise comes from its SeedGenerator, whose state is backed up too.
    "gan": {
        **SHORT,
        "condition": "attributes",
        "latent_dim": 8,
        "generator_filters": [16, 8, 8, 4],
        "discriminator_filters": [4, 8, 8],
    },
}
LOSSES = {"recommender": ["loss", "val_loss"], "gan": ["d_loss", "g_loss", "val_d_loss"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = str(root / "tiny")
    mmrec.data.write_shapes(
        data, mmrec.data.ShapesConfig(num_items=60, num_users=24), progress=False
    )
    # The GAN's runs share an (untrained) judge: the comparison is of the training.
    judge = str(root / "judge.keras")
    AttributeJudge.from_dataset(mmrec.data.load(data), filters=(4, 8, 8), feature_dim=8).save(judge)
    return root, data, judge


def command(kind, data, config, out, judge):
    arguments = ["train", kind, "--data", data, "--out", out, "--config", config]
    if kind == "gan":
        arguments += ["--judge", judge]
    return [sys.executable, "-m", "mmrec.cli", *arguments, "--seed", "3"]


def environment(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def epochs_logged(run):
    path = os.path.join(run, "training.csv")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [row for row in csv.DictReader(f) if row.get("epoch")]


def read_metrics(run):
    with open(os.path.join(run, "metrics.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("kind", ["recommender", "gan"])
def test_sigkilled_run_resumes_from_its_backup_and_matches_an_uninterrupted_run(setup, kind):
    root, data, judge = setup
    config = str(root / f"{kind}.json")
    with open(config, "w") as f:
        json.dump(CONFIGS[kind], f)
    interrupted, reference = str(root / f"{kind}-interrupted"), str(root / f"{kind}-reference")
    # The uninterrupted run trains meanwhile (the killed one sleeps between its steps).
    uninterrupted = subprocess.Popen(
        command(kind, data, config, reference, judge),
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # 0.4 s per step: an epoch takes 1.6 s, so the kill lands inside an epoch.
    victim = subprocess.Popen(
        command(kind, data, config, interrupted, judge),
        env=environment(**{PAUSE_ENV: "0.4"}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while len(epochs_logged(interrupted)) < 1:
        assert victim.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no epoch finished in time"
        time.sleep(0.05)
    time.sleep(0.6)  # into the next epoch: one or two steps done, its backup not yet written
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    done = len(epochs_logged(interrupted))
    assert 1 <= done < EPOCHS
    assert os.path.exists(os.path.join(interrupted, "backup", "latest.weights.h5"))
    assert not os.path.exists(os.path.join(interrupted, "metrics.json"))

    # The same command again: it resumes after the last completed epoch and finishes.
    resumed = subprocess.run(
        command(kind, data, config, interrupted, judge),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"resuming after epoch {done} of {EPOCHS}" in resumed.stdout
    rows = epochs_logged(interrupted)
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))  # each epoch logged once
    assert os.path.exists(os.path.join(interrupted, "model.keras"))
    assert not os.path.exists(os.path.join(interrupted, "backup"))

    output, _ = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, output[-3000:]
    # Weights, optimizer state and the data position are restored: the resumed run ends
    # where the uninterrupted one does (to float precision: the same batches, the same steps).
    expected, actual = read_metrics(reference), read_metrics(interrupted)
    for key in LOSSES[kind]:
        assert actual["last_epoch"][key] == pytest.approx(expected["last_epoch"][key], rel=1e-5)
        np.testing.assert_allclose(
            [float(r[key]) for r in rows],
            [float(r[key]) for r in epochs_logged(reference)],
            rtol=1e-5,
        )
    if kind == "recommender":
        for name in ("recommender", "popularity", "oracle"):
            for k, value in expected["test"][name]["overall"].items():
                assert actual["test"][name]["overall"][k] == pytest.approx(value, abs=1e-6)
    else:
        for k in ("fcd", "kcd", "diversity"):
            assert actual["generation"][k] == pytest.approx(expected["generation"][k], rel=1e-4)
