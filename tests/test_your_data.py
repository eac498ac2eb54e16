"""Bring your own data, end to end with the CLI and no hand-written code (issue 12's "Done when").

A generated MovieLens-layout folder (`mmrec.data.write_movielens_layout`; never MovieLens
itself, whose licence forbids redistribution) goes through the commands of
``docs/your_data.md`` in order, each fixture taking the previous one's output:

    mmrec data import --format movielens --path ml-fake --out ml
    mmrec train recommender --data ml --config tiny --epochs 2 --out run
    mmrec evaluate --data ml --model recommender=run --baselines popularity,ease
    mmrec export --model run --name ml --base-dir savedmodels
    mmrec serve --model-base-path savedmodels --rest-port 0 --grpc-port 0
    mmrec predict --server HOST:PORT --model ml --history-keys <movieIds> --data ml

The commands run in this process through `mmrec.cli.main`, except `mmrec serve`, which
runs in its own process as in test_serving.py; the tests check what they print and write.
"""

import contextlib
import csv
import io
import json
import os
import signal

import numpy as np
import pytest

import mmrec
from mmrec.cli import main
from mmrec.models.recommender import Recommender
from mmrec.testing import start_server
from mmrec.training import load_run_model

pytestmark = pytest.mark.slow

MOVIES, USERS = 80, 60


def run_cli(*argv):
    """Runs ``mmrec ARGV`` in this process and returns what it printed; it must exit 0."""
    argv = [str(a) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    assert status == 0, f"mmrec {' '.join(argv)} exited {status}:\n{err.getvalue()[-3000:]}"
    return out.getvalue()


def summary_rows(summary):
    """The import summary's rows as {label: value}, counts as ints."""
    rows = [line.rsplit(maxsplit=1) for line in summary.splitlines()[1:]]
    return {label.strip(): int(v) if v.isdigit() else v for label, v in rows}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("your_data")


@pytest.fixture(scope="module")
def movies(root):
    """movieId → its row of the generated ``movies.csv`` (the folder is written here)."""
    mmrec.data.write_movielens_layout(str(root / "ml-fake"), num_movies=MOVIES, num_users=USERS)
    with open(root / "ml-fake" / "movies.csv", encoding="utf-8", newline="") as f:
        return {row["movieId"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def imported(root, movies):
    """(the dataset folder, what ``mmrec data import`` printed)."""
    out = root / "ml"
    printed = run_cli(
        "data", "import", "--format", "movielens", "--path", root / "ml-fake", "--out", out
    )
    return str(out), printed


@pytest.fixture(scope="module")
def trained(root, imported):
    """(the run folder, what ``mmrec train`` printed)."""
    out = root / "run"
    # The tiny preset reads 16 tokens; MovieLens texts (title, genres, tags) are longer.
    with pytest.warns(UserWarning, match=r"item texts .* are truncated"):
        printed = run_cli(
            "train", "recommender", "--data", imported[0], "--config", "tiny", "--epochs", 2,
            "--out", out,
        )  # fmt: skip
    return str(out), printed


def test_import_prints_the_summary_and_keeps_the_movie_ids(imported, movies):
    path, printed = imported
    assert printed.startswith(f"wrote {path}\n")
    counts = summary_rows(printed[printed.index("dataset ml") :])
    data = mmrec.data.load(path)
    assert counts["items"] == MOVIES == data.info.num_items
    assert 0 < counts["users"] <= USERS and counts["users"] == data.info.num_users
    for split in ("train", "valid", "test"):  # leave-last-out: one valid and test per user
        assert counts[f"interactions {split}"] == data.info.splits[split] > 0
    assert counts["interactions valid"] == counts["interactions test"] == counts["users"]
    assert counts["interactions train"] > 3 * counts["users"]
    assert counts["cold items (in no training record)"] == len(data.info.cold_items) >= 1
    assert counts["modalities"] == "text"
    assert data.item_keys() == list(movies)  # movieIds, in the catalogue's order
    texts = data.catalogue().texts.numpy()
    for item, key in enumerate(data.item_keys()[:10]):
        assert texts[item].decode().startswith(movies[key]["title"])


def test_tiny_preset_trains_on_the_text_only_catalogue(trained, imported):
    path, printed = trained
    assert "the preset's modalities ['image', 'text'] → ['text']" in printed
    assert "Epoch 2/2" in printed and "training the ID-only baseline" in printed
    with open(os.path.join(path, "training.csv")) as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 2 and losses[1] < losses[0]
    with open(os.path.join(path, "metrics.json")) as f:
        assert {"popularity", "id_only", "recommender"} <= set(json.load(f)["test"])
    model = load_run_model(path, Recommender)
    assert model.item_encoder.modalities == ("text",)
    assert model.item_keys == mmrec.data.load(imported[0]).item_keys()


def ranking_rows(printed):
    """The ranking table's rows as {model: [numbers]}, and its header."""
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["model", "R@10"])
    rows = {}
    for line in lines[header + 1 :]:
        if line.startswith("("):
            break
        name, *values = line.split()
        rows[name] = values
    return lines[header].split()[1:], rows


@pytest.mark.parametrize("split", ["test", "valid"])
def test_evaluate_scores_the_model_next_to_popularity_and_ease(split, trained, imported, root):
    out = root / f"results-{split}.json"
    printed = run_cli(
        "evaluate", "--data", imported[0], "--model", f"recommender={trained[0]}",
        "--baselines", "popularity,ease", "--split", split, "--out", out,
    )  # fmt: skip
    with open(out) as f:
        results = json.load(f)  # strict JSON: no NaN
    assert list(results) == ["popularity", "ease", "recommender"]
    header, rows = ranking_rows(printed)
    assert list(rows) == list(results)
    assert "ease: lam=" in printed  # chosen on the valid split
    assert results["ease"]["selected"]["lam"] > 0
    users = mmrec.data.load(imported[0]).info.num_users
    assert {r["examples"] for r in results.values()} == {users}  # one target per user
    (cold_examples,) = {r["cold_examples"] for r in results.values()}
    for name, result in results.items():
        overall = result["overall"]
        for k in (10, 20, 50):
            assert 0.0 <= overall[f"recall@{k}"] <= 1.0
            assert 0.0 <= overall[f"ndcg@{k}"] <= overall[f"recall@{k}"] + 1e-9
        assert overall["recall@10"] <= overall["recall@20"] <= overall["recall@50"]
        # The printed table holds the JSON's numbers.
        printed_recall = [float(v) for v in rows[name][:3]]
        np.testing.assert_allclose(
            printed_recall, [overall[f"recall@{k}"] for k in (10, 20, 50)], atol=5e-5
        )
        if cold_examples:  # cold metrics are numbers, and the table has cold columns
            assert all(0.0 <= v <= 1.0 for v in result["cold"].values())
        else:  # undefined: null in the JSON, no cold columns in the table
            assert set(result["cold"].values()) == {None}
    assert ("cold" in header) == bool(cold_examples)
    # The generator's two new releases are some users' last rating: cold test targets only.
    assert bool(cold_examples) == (split == "test")


def test_export_serve_and_predict_print_movie_ids_and_titles(trained, imported, movies, root):
    data_path = imported[0]
    base = root / "savedmodels"
    printed = run_cli("export", "--model", trained[0], "--name", "ml", "--base-dir", base)
    assert printed.startswith(f"exported {base / 'ml' / '1'} (validated in a fresh TF process)")
    assert os.path.exists(base / "models.config")

    # A user's whole history before the test target (train and valid records), as movieIds.
    data = mmrec.data.load(data_path)
    history_ids = sorted(data.user_items("valid")[0])
    keys = data.item_keys()
    history = [keys[i] for i in history_ids]
    expected_ids, expected_scores, expected_keys = load_run_model(
        trained[0], Recommender
    ).recommend([history_ids], k=10, return_keys=True)

    process, ready, lines, reader = start_server(base, root / "server.log")
    try:
        assert ready["models"] == {"ml": 1}
        printed = run_cli(
            "predict", "--server", ready["rest"], "--model", "ml",
            "--history-keys", ",".join(history), "--data", data_path,
        )  # fmt: skip
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=30)
        reader.join(timeout=10)
    assert status == 0 and lines[-1] == "mmrec serve: stopped"  # a graceful stop

    table = printed.splitlines()
    assert table[0].split() == ["rank", "item_id", "item_key", "score", "text"]
    rows = [line.split(maxsplit=4) for line in table[1:]]
    assert [int(r[0]) for r in rows] == list(range(1, 11))
    recommended = [r[2] for r in rows]
    assert recommended == expected_keys[0].tolist()
    assert [int(r[1]) for r in rows] == expected_ids[0].tolist()
    assert [keys[int(r[1])] for r in rows] == recommended  # ids and keys agree
    np.testing.assert_allclose([float(r[3]) for r in rows], expected_scores[0], atol=2e-4)
    assert not set(recommended) & set(history)  # nothing the user already has
    assert len(set(recommended)) == 10
    for row in rows:  # each movie's title, as movies.csv has it, cut at 60 characters
        title = movies[row[2]]["title"]
        assert row[4].startswith(title[:59]), (row, title)
