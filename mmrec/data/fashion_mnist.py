"""Fashion-MNIST as a second benchmark: real images, templated text, no audio.

Reads the IDX files that Debian's `dataset-fashion-mnist` package installs under
`/usr/share/datasets/fashion-mnist/`, samples a catalogue, describes each item from
its category and brightness ("a dark ankle boot") and simulates users who favour
2–3 categories (and a brightness), with the same splits and ground truth as shapes.
Images are padded from 28×28 to 32×32 and stored as RGB PNGs so that every model
built for shapes takes them unchanged. There is no audio: the missing-modality path.
"""

from __future__ import annotations

import dataclasses
import gzip
import os

import numpy as np

from mmrec.data import schema, simulation
from mmrec.data.tfrecord import encode_png, item_example

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
CATEGORIES = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
BRIGHTNESS = ("dark", "mid-tone", "light")
_SYNONYMS = {
    "t-shirt": ["t-shirt", "tee", "top"],
    "trouser": ["pair of trousers", "pair of pants", "pair of slacks"],
    "pullover": ["pullover", "jumper", "sweater"],
    "dress": ["dress", "frock", "gown"],
    "coat": ["coat", "overcoat", "parka"],
    "sandal": ["sandal", "open shoe", "summer sandal"],
    "shirt": ["shirt", "button-up shirt", "blouse"],
    "sneaker": ["sneaker", "trainer", "running shoe"],
    "bag": ["bag", "handbag", "tote"],
    "ankle boot": ["ankle boot", "boot", "bootie"],
    "dark": ["dark", "deep-toned", "shadowy"],
    "mid-tone": ["mid-tone", "grey", "medium-toned"],
    "light": ["light", "pale", "bright"],
}
_TEMPLATES = (
    "a {brightness} {category}",
    "{category}, {brightness}",
    "product photo of a {brightness} {category}",
    "this {category} looks {brightness}",
)


@dataclasses.dataclass(frozen=True)
class FashionMnistConfig:
    num_items: int = 2000
    num_users: int = 1000
    seed: int = 0
    source: str = DEFAULT_DIR
    min_sequence: int = 10
    max_sequence: int = 40
    cold_fraction: float = 0.1
    max_history: int = 50
    temperature: float = 0.9
    category_weight: float = 3.0
    brightness_weight: float = 0.5
    popularity_weight: float = 0.3

    @property
    def affinity(self) -> dict[str, float]:
        return {
            "category": self.category_weight,
            "brightness": self.brightness_weight,
            "popularity": self.popularity_weight,
            "temperature": self.temperature,
        }


def read_idx(path: str) -> np.ndarray:
    """An IDX file (optionally gzipped) as a NumPy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = data[0:2], data[2], data[3]
    if zero != b"\0\0" or dtype != 0x08:
        raise schema.SchemaError(f"{path}: not an unsigned-byte IDX file.")
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(source: str = DEFAULT_DIR) -> tuple[np.ndarray, np.ndarray]:
    """The 60,000 training images [N, 28, 28] and labels [N]."""
    paths = []
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        candidates = [os.path.join(source, name + ext) for ext in (".gz", "")]
        found = [p for p in candidates if os.path.exists(p)]
        if not found:
            raise FileNotFoundError(
                f"Fashion-MNIST not found: expected {candidates[0]}. Install Debian's package "
                "with `sudo apt-get install dataset-fashion-mnist` (or pass --source DIR)."
            )
        paths.append(found[0])
    return read_idx(paths[0]), read_idx(paths[1])


def write_fashion_mnist(
    out: str,
    config: FashionMnistConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> schema.DatasetInfo:
    """Builds the Fashion-MNIST benchmark and writes it to `out` (atomically).

    Example:

    ```python
    write_fashion_mnist("tf_records/fashion", FashionMnistConfig(num_items=500, num_users=200))
    data = mmrec.data.load("tf_records/fashion")
    ```
    """
    config = config or FashionMnistConfig()
    images, labels = load_fashion_mnist(config.source)
    rng = np.random.default_rng(config.seed)
    n = config.num_items
    chosen = np.sort(rng.choice(len(images), n, replace=False))
    images, categories = images[chosen], labels[chosen].astype(np.int64)
    # Brightness: the mean of the garment's own pixels, split into tertiles.
    ink = images > 20
    mean_ink = (images * ink).sum(axis=(1, 2)) / np.maximum(ink.sum(axis=(1, 2)), 1)
    brightness = np.digitize(mean_ink, np.quantile(mean_ink, [1 / 3, 2 / 3])).astype(np.int64)
    popularity = rng.lognormal(0.0, 1.0, n)
    templates = rng.integers(0, len(_TEMPLATES), n)
    synonyms = rng.integers(0, 3, (n, 2))
    texts = [
        _TEMPLATES[templates[i]].format(
            category=_SYNONYMS[CATEGORIES[categories[i]]][synonyms[i, 0]],
            brightness=_SYNONYMS[BRIGHTNESS[brightness[i]]][synonyms[i, 1]],
        )
        for i in range(n)
    ]
    rgb = np.repeat(np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1)

    preferences = {
        "category": simulation.favourites(rng, config.num_users, len(CATEGORIES), (2, 3)),
        "brightness": rng.integers(0, len(BRIGHTNESS), (config.num_users, 1)),
    }
    item_labels = {"category": categories, "brightness": brightness}
    cold = np.sort(rng.choice(n, int(round(config.cold_fraction * n)), replace=False))
    sequences = simulation.sample_sequences(
        config.affinity,
        item_labels,
        popularity,
        preferences,
        cold,
        (config.min_sequence, config.max_sequence),
        rng,
    )
    splits = simulation.leave_last_out(sequences, rng, config.max_history)

    def item_records():
        for i in range(n):
            yield item_example(
                i,
                image_png=encode_png(rgb[i]),
                text=texts[i],
                labels={"category": int(categories[i]), "brightness": int(brightness[i])},
                popularity=float(popularity[i]),
            )

    info = schema.DatasetInfo(
        name="fashion-mnist",
        modalities=("image", "text"),
        attributes={"category": list(CATEGORIES), "brightness": list(BRIGHTNESS)},
        num_items=n,
        num_users=config.num_users,
        shards={},
        image_size=32,
        user_preferences=("category", "brightness"),
        affinity=config.affinity,
        cold_items=cold.tolist(),
        max_history=config.max_history,
        seed=config.seed,
        generator={
            "name": "mmrec.data.fashion_mnist.write_fashion_mnist",
            "source_indices": "sampled without replacement from the 60,000 training images",
            **dataclasses.asdict(config),
        },
    )
    return simulation.write_benchmark(
        out,
        info,
        item_records(),
        preferences,
        splits,
        texts,
        overwrite=overwrite,
        progress=progress,
    )
