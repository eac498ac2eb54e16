"""Fashion-MNIST as a catalogue: real images from Debian's package, simulated users."""

import os

import numpy as np
import pytest

from mmrec.data import load
from mmrec.data.fashion_mnist import (
    CATEGORIES,
    DEFAULT_DIR,
    FashionMnistConfig,
    load_fashion_mnist,
    write_fashion_mnist,
)
from mmrec.data.inspect import preference_hit_rates

if not os.path.exists(os.path.join(DEFAULT_DIR, "train-images-idx3-ubyte.gz")):
    pytest.fail(
        "Fashion-MNIST is missing: `apt-get install dataset-fashion-mnist` (.ci/run does this).",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fm") / "ds")
    write_fashion_mnist(path, FashionMnistConfig(num_items=300, num_users=200), progress=False)
    return load(path)


def test_idx_files_read_as_the_real_dataset():
    images, labels = load_fashion_mnist()
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,) and set(np.unique(labels)) == set(range(10))
    assert np.bincount(labels).tolist() == [6000] * 10  # the published class balance


def test_catalogue_holds_real_padded_images_and_text(data):
    info, catalogue = data.info, data.catalogue()
    assert info.modalities == ("image", "text") and catalogue.audio is None
    images = catalogue.images.numpy()
    assert images.shape == (300, 32, 32, 3)
    assert not images[:, :2].any() and not images[:, :, -2:].any()  # 28x28 padded by 2
    np.testing.assert_array_equal(images[..., 0], images[..., 2])  # grey as RGB
    assert images.mean() > 40  # garments, not blank frames
    texts = [t.decode() for t in catalogue.texts.numpy()]
    boots = [t for t, c in zip(texts, catalogue.labels["category"]) if c == 9]
    assert boots and all(any(w in t for w in ("boot", "bootie")) for t in boots)
    assert set(catalogue.labels["brightness"]) == {0, 1, 2}


def test_users_favour_their_categories(data):
    rates = preference_hit_rates(data, "test")
    assert rates["attributes"] == ["category"]
    assert rates["test_targets"] > 2.5 * rates["random_items"]


def test_missing_files_name_the_install_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        write_fashion_mnist(str(tmp_path / "x"), FashionMnistConfig(source=str(tmp_path)))
    assert len(CATEGORIES) == 10
