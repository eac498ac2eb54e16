"""The `mmrec` command: real subcommands on real folders, clear errors without tracebacks."""

import json
import os
import subprocess
import sys

import pytest

from mmrec.cli import main


def test_synth_inspect_validate(tmp_path, capsys):
    out = str(tmp_path / "s")
    assert main(["data", "synth", "--out", out, "--items", "60", "--users", "20"]) == 0
    assert "60 items, 20 users" in capsys.readouterr().out

    assert main(["data", "inspect", out, "--samples", "12"]) == 0
    text = capsys.readouterr().out
    assert "items        60 (6 cold" in text
    assert "attribute    shape: circle=" in text
    sheet = os.path.join(out, "contact_sheet.png")
    assert open(sheet, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(sheet) > 20_000  # a real picture, not an empty canvas

    assert main(["data", "validate", out]) == 0
    report = capsys.readouterr().out
    assert "checksums: ok" in report and json.loads(report.splitlines()[-1]) == {"problems": 0}

    # Corrupt one shard: validate names it and exits 1; inspect fails with a clear line.
    shard = os.path.join(out, "interactions-test-00000-of-00001.tfrecord.gz")
    data = open(shard, "rb").read()
    open(shard, "wb").write(data[: len(data) - 40])
    assert main(["data", "validate", out]) == 1
    report = capsys.readouterr().out
    assert "checksums: " in report and "checksum mismatch" in report
    assert "interactions-test: 1 problem(s)" in report and "shard ended after" in report
    assert main(["data", "inspect", out]) == 2
    assert "mmrec: error:" in capsys.readouterr().err


def test_existing_folder_needs_overwrite(tmp_path, capsys):
    out = str(tmp_path / "s")
    os.makedirs(out)
    assert main(["data", "synth", "--out", out, "--items", "60", "--users", "5"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_help_explains_itself():
    result = subprocess.run(
        [sys.executable, "-m", "mmrec.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "mmrec data synth --out tf_records/shapes" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "mmrec.cli", "data", "synth", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "byte-identical" in result.stdout and "--image-size {32,64}" in result.stdout


def test_bad_arguments_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", "--image-size", "48"])
    assert exit_info.value.code == 2
    assert "invalid choice: 48" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "synth", "--items", "0"])
    assert "expected a positive integer" in capsys.readouterr().err


def test_evaluate_scores_baselines_side_by_side(tmp_path, capsys):
    data = str(tmp_path / "s")
    assert main(["data", "synth", "--out", data, "--items", "120", "--users", "60"]) == 0
    capsys.readouterr()
    out = str(tmp_path / "results.json")
    baselines = "popularity,oracle,posterior,posterior+true_pop"
    assert main(["evaluate", "--data", data, "--baselines", baselines, "--out", out]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[1].split()[:4] == ["model", "R@10", "R@20", "R@50"]
    results = json.load(open(out))
    assert list(results) == baselines.split(",")
    assert all(r["examples"] == 60 for r in results.values())
    recall = {name: r["overall"]["recall@50"] for name, r in results.items()}
    assert recall["oracle"] > recall["popularity"]
    assert recall["posterior+true_pop"] > recall["popularity"]
    assert main(["evaluate", "--data", data, "--baselines", "median"]) == 2
    assert "Expected baselines among" in capsys.readouterr().err
