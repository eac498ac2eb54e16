"""The examples run: both scripts (library API, `model.fit`), the quick-start notebook
(executed with nbclient, including `mmrec serve` as a subprocess) and the your-data notebook
(CSV files to recommendations with titles), with tiny sizes."""

import csv
import os
import runpy

import keras
import nbformat
import pytest
from nbclient import NotebookClient

import mmrec

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")


@pytest.fixture(scope="module")
def data_dir(tiny_shapes):
    return tiny_shapes


@pytest.fixture()
def tiny(monkeypatch, data_dir, tmp_path):
    """The examples' size knobs, set to a few steps on the tiny dataset."""
    settings = {
        "MMREC_EXAMPLE_DATA": data_dir,
        "MMREC_EXAMPLE_EPOCHS": "1",
        "MMREC_EXAMPLE_STEPS": "2",
        "MMREC_EXAMPLE_JUDGE_EPOCHS": "1",
        "MMREC_EXAMPLE_OUT": str(tmp_path / "out"),
        "MMREC_EXAMPLE_EXPORTS": str(tmp_path / "savedmodels"),
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    return settings


def executed_outputs(name, tmp_path):
    """Runs the notebook ``name`` (saved with outputs cleared) in ``tmp_path``; its code cells'
    outputs, none of them an error."""
    with open(os.path.join(EXAMPLES, name)) as f:
        notebook = nbformat.read(f, as_version=4)
    assert not [c for c in notebook.cells if c.get("outputs")]  # saved with outputs cleared
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    return outputs


def run_example(name):
    runpy.run_path(os.path.join(EXAMPLES, name), run_name="__main__")


def test_train_recommender_script(tiny, capsys):
    run_example("train_recommender.py")
    out = capsys.readouterr().out
    for model in ("popularity", "recommender", "oracle"):
        assert f"\n{model} " in out
    assert "recommended for the history [3, 17, 42]:" in out
    path = os.path.join(tiny["MMREC_EXAMPLE_OUT"], "recommender.keras")
    assert f"wrote {path}" in out
    import mmrec.models.recommender  # noqa: F401  (registers the class)

    ids, _ = keras.saving.load_model(path, compile=False).recommend([[3, 17, 42]], k=5)
    assert ids.shape == (1, 5)
    assert os.path.exists(os.path.join(tiny["MMREC_EXAMPLE_OUT"], "recommender.csv"))


def test_personalized_generation_script(tiny, capsys):
    run_example("personalized_generation.py")
    out = capsys.readouterr().out
    assert "judge held-out accuracy:" in out and "personalisation hit-rate" in out
    grids = [line.split()[-1] for line in out.splitlines() if line.startswith("wrote ")]
    assert len(grids) == 4
    for path in grids:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    samples = os.path.join(tiny["MMREC_EXAMPLE_OUT"], "gan_samples", "epoch_001.png")
    assert os.path.exists(samples)


@pytest.mark.slow
def test_quickstart_notebook_executes_and_serves(tiny, tmp_path):
    with open(os.path.join(EXAMPLES, "quickstart.ipynb")) as f:
        notebook = nbformat.read(f, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    # The contact sheet, three users' grids, the served recommendations and images.
    assert len(images) == 6
    assert "recommended:" in text and "mmrec serve exited with status 0" in text
    for model in ("notebook_rec", "notebook_cgan"):
        assert os.path.exists(os.path.join(tiny["MMREC_EXAMPLE_EXPORTS"], model, "1"))


def movie_lines(text, heading):
    """The (movieId, title) lines the your-data notebook prints under ``heading``."""
    movies = []
    for line in text.split(heading, 1)[1].splitlines()[1:]:
        if not line.startswith("  "):
            break
        key, rest = line.split(maxsplit=1)
        movies.append((key, rest.split("  (", 1)[0]))
    return movies


@pytest.mark.slow
def test_your_data_notebook_goes_from_csv_files_to_titles(tmp_path, monkeypatch):
    for knob in ("ITEMS", "USERS", "EPOCHS"):  # the notebook's defaults are tiny
        monkeypatch.delenv(f"MMREC_EXAMPLE_{knob}", raising=False)
    monkeypatch.setenv("MMREC_EXAMPLE_OUT", str(tmp_path / "your_data"))
    outputs = executed_outputs("your_data.ipynb", tmp_path)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    # The import's summary, the baselines next to the model, recommendations with titles.
    assert "items                    " in text and "dropped interaction rows" in text
    table = text[text.index("\nmodel ") + 1 :].splitlines()[1:4]
    assert [row.split()[0] for row in table] == ["popularity", "ease", "recommender"]
    assert all(0.0 <= float(v) <= 1.0 for row in table for v in row.split()[1:])

    with open(tmp_path / "your_data" / "csv" / "movies.csv", encoding="utf-8") as f:
        titles = {row["movieId"]: row["title"] for row in csv.DictReader(f)}
    liked = movie_lines(text, " liked:")
    recommended = movie_lines(text, "recommended:")
    assert len(liked) >= 3 and len(recommended) == 5
    for key, title in liked + recommended:
        assert titles[key] == title
    assert not {k for k, _ in liked} & {k for k, _ in recommended}
    data = mmrec.data.load(str(tmp_path / "your_data" / "movies"))
    assert data.item_keys() == list(titles)


@pytest.mark.slow
def test_text_generation_notebook_describes_personalises_explains_and_exports(tiny, tmp_path):
    outputs = executed_outputs("text_generation.ipynb", tmp_path)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "judge held-out accuracy:" in text and "the judge reads shapes:" in text
    for shape in ("star:", "heart:", "ring:"):
        assert f"\n{shape} " in text
    assert text.count(" likes {'colour': [") == 3
    assert text.count("\nitem ") == 3
    faithful = float(text.split("faithful: ", 1)[1].split()[0])
    assert 0.0 <= faithful <= 1.0
    assert text.count("\nserved: ") == 2  # the exported signature wrote one text per row
    assert os.path.exists(os.path.join(tiny["MMREC_EXAMPLE_EXPORTS"], "notebook_text", "1"))


@pytest.mark.slow
def test_multimodal_item_notebook_judges_exports_and_displays_an_item(tiny, tmp_path):
    outputs = executed_outputs("multimodal_item.ipynb", tmp_path)
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "attributes each judge reads:" in text and "hit_rate_held_out_items: " in text
    assert text.count("\nserved: {'shape': ") == 2  # one item per row of the signature
    assert os.path.exists(os.path.join(tiny["MMREC_EXAMPLE_EXPORTS"], "notebook_item", "1"))
    # It ends by showing the item: the history and sampled attributes, the picture, the
    # description and a player for the sound.
    shown = [o for o in outputs if o.output_type == "display_data"]
    assert [sorted(o.data) for o in shown][-4:] == [
        ["text/markdown", "text/plain"],
        ["image/png", "text/plain"],
        ["text/markdown", "text/plain"],
        ["text/html", "text/plain"],
    ]
    assert "<audio" in shown[-1].data["text/html"] and "sampled:" in shown[-4].data["text/markdown"]
