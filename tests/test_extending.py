"""docs/extending.md runs: every Python block, in order, on a tiny shapes dataset."""

import os
import pathlib
import re

import pytest

import mmrec

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "extending.md"

pytestmark = pytest.mark.filterwarnings("ignore:Your input ran out of data")


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_page_has_the_four_extensions():
    text = DOC.read_text()
    for heading in (
        "## A new kind of condition",
        "## A new generator network",
        "## A new fusion layer",
        "## A new served signature",
    ):
        assert heading in text
    assert len(python_blocks(text)) >= 5


@pytest.mark.slow
def test_every_example_of_extending_md_runs(tmp_path, monkeypatch):
    data_path = tmp_path / "shapes"
    mmrec.data.write_shapes(
        data_path, mmrec.data.ShapesConfig(num_items=60, num_users=24), progress=False
    )
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "extending_md"}
    for block in python_blocks(DOC.read_text()):
        exec(
            compile(block.replace("tf_records/shapes", str(data_path)), str(DOC), "exec"), namespace
        )
    # What the page promises, checked here too.
    from mmrec.models.conditioning import conditioning_names

    assert "item" in conditioning_names()
    export = namespace["item_export"]
    assert os.path.exists(os.path.join(export, "saved_model.pb"))
