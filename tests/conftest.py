"""Shared pytest fixtures: a fixed seed for every test, float32 policy restored afterwards,
and one tiny shapes dataset (60 items × 24 users) written once per session."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

import mmrec  # noqa: E402


@pytest.fixture(autouse=True)
def fixed_seed():
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory) -> str:
    """The path of a tiny shapes dataset (60 items, 24 users), shared read-only by the tests."""
    path = str(tmp_path_factory.mktemp("shapes") / "tiny")
    mmrec.data.write_shapes(
        path, mmrec.data.ShapesConfig(num_items=60, num_users=24), progress=False
    )
    return path
