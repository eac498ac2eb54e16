"""The "shapes" benchmark: a procedurally generated multimodal catalogue with ground truth.

Each item is a coloured shape over a patterned grey background, described by a
templated sentence (with synonyms) and by a short sound (pitch = colour, number of
pulses = shape, timbre = pattern). Users have known favourite colours and shapes;
their interaction sequences are sampled from softmax(affinity / temperature), so an
oracle ranking exists and both recommendation and personalised generation can be
*measured*. Everything is a pure function of the seed: the same seed gives
byte-identical shards.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from mmrec.data import schema, simulation
from mmrec.data.tfrecord import encode_png, encode_wav, item_example

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring", "heart")
COLOURS = ("red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink")
PATTERNS = ("plain", "stripes", "dots", "checks")
SIZES = ("small", "medium", "large")
ATTRIBUTES = {"shape": SHAPES, "colour": COLOURS, "pattern": PATTERNS, "size": SIZES}

_RGB = np.array(
    [
        [0.90, 0.10, 0.10],  # red
        [1.00, 0.55, 0.00],  # orange
        [0.95, 0.90, 0.10],  # yellow
        [0.10, 0.70, 0.15],  # green
        [0.00, 0.80, 0.85],  # cyan
        [0.10, 0.25, 0.90],  # blue
        [0.55, 0.15, 0.75],  # purple
        [1.00, 0.45, 0.75],  # pink
    ]
)
_RADIUS = np.array([0.38, 0.52, 0.68])  # small, medium, large; in half-image units

_SYNONYMS = {
    "shape": {
        "circle": ["circle", "disc", "round dot"],
        "square": ["square", "box", "block"],
        "triangle": ["triangle", "three-sided shape", "wedge"],
        "diamond": ["diamond", "rhombus", "lozenge"],
        "star": ["star", "five-pointed star", "starburst"],
        "cross": ["cross", "plus sign", "plus"],
        "ring": ["ring", "hoop", "donut"],
        "heart": ["heart", "love heart", "heart shape"],
    },
    "colour": {
        "red": ["red", "crimson", "scarlet"],
        "orange": ["orange", "tangerine", "amber"],
        "yellow": ["yellow", "golden", "lemon"],
        "green": ["green", "emerald", "lime"],
        "cyan": ["cyan", "teal", "turquoise"],
        "blue": ["blue", "navy", "azure"],
        "purple": ["purple", "violet", "plum"],
        "pink": ["pink", "rose", "magenta"],
    },
    "pattern": {
        "plain": ["plain", "solid", "blank"],
        "stripes": ["striped", "stripy", "lined"],
        "dots": ["dotted", "polka-dot", "spotted"],
        "checks": ["checked", "checkered", "chequered"],
    },
    "size": {
        "small": ["small", "tiny", "little"],
        "medium": ["medium", "medium-sized", "mid-sized"],
        "large": ["large", "big", "huge"],
    },
}
_TEMPLATES = (
    "a {size} {colour} {shape} on a {pattern} background",
    "{size} {shape}, {colour}, {pattern} backdrop",
    "{colour} {shape} ({size}) over a {pattern} pattern",
    "this item shows a {size} {shape} in {colour} against a {pattern} background",
    "{pattern} background with a {colour} {shape}, {size}",
    "a {shape} coloured {colour}; size: {size}; background: {pattern}",
)


def attribute_synonyms() -> dict[str, dict[str, list[str]]]:
    """The phrases the descriptions use for each class: ``{attribute: {class: [phrases]}}``.

    A copy of the table `describe` draws from (the first phrase of each class is
    the word a reference sentence uses), so callers may change it freely.

    Example:

    >>> attribute_synonyms()["shape"]["cross"]
    ['cross', 'plus sign', 'plus']
    """
    return copy.deepcopy(_SYNONYMS)


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
    """Knobs of the shapes benchmark (DESIGN.md, "The embedded benchmark")."""

    num_items: int = 2000
    num_users: int = 1000
    image_size: int = 32
    seed: int = 0
    audio_sample_rate: int = 16000
    audio_seconds: float = 0.5
    min_sequence: int = 10
    max_sequence: int = 40
    cold_fraction: float = 0.1
    max_history: int = 50
    temperature: float = 0.9
    colour_weight: float = 2.0
    shape_weight: float = 2.0
    pattern_weight: float = 0.5
    popularity_weight: float = 0.3

    def __post_init__(self):
        if self.image_size not in (32, 64):
            raise ValueError(
                f"Expected image_size to be 32 or 64. Received: image_size={self.image_size}"
            )
        if self.num_items < 50:
            raise ValueError(f"Expected num_items >= 50. Received: num_items={self.num_items}")
        if self.num_users < 1:
            raise ValueError(f"Expected num_users >= 1. Received: num_users={self.num_users}")
        if not 2 <= self.min_sequence <= self.max_sequence:
            raise ValueError(
                "Expected 2 <= min_sequence <= max_sequence. Received: "
                f"min_sequence={self.min_sequence}, max_sequence={self.max_sequence}"
            )
        warm = self.num_items - int(round(self.cold_fraction * self.num_items))
        if self.max_sequence > warm:
            raise ValueError(
                f"Expected max_sequence ({self.max_sequence}) to be at most the number of "
                f"warm items ({warm}); use more items or shorter sequences."
            )

    @property
    def audio_samples(self) -> int:
        return int(round(self.audio_sample_rate * self.audio_seconds))

    @property
    def affinity(self) -> dict[str, float]:
        return {
            "colour": self.colour_weight,
            "shape": self.shape_weight,
            "pattern": self.pattern_weight,
            "popularity": self.popularity_weight,
            "temperature": self.temperature,
        }


# --- items ------------------------------------------------------------------------


def sample_items(config: ShapesConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Attribute labels, jitter and popularity for every item."""
    n = config.num_items
    return {
        "shape": rng.integers(0, len(SHAPES), n),
        "colour": rng.integers(0, len(COLOURS), n),
        "pattern": rng.integers(0, len(PATTERNS), n),
        "size": rng.integers(0, len(SIZES), n),
        "offset": rng.uniform(-1.0, 1.0, (n, 2)),  # scaled by the free margin at render time
        "colour_jitter": rng.normal(0.0, 0.04, (n, 3)),
        "pattern_phase": rng.integers(0, 8, (n, 2)),
        "popularity": rng.lognormal(0.0, 1.0, n),
        "template": rng.integers(0, len(_TEMPLATES), n),
        "synonyms": rng.integers(0, 3, (n, 4)),
        "pitch_jitter": rng.uniform(-0.01, 0.01, n),
    }


def _star_boundary(phi: np.ndarray, outer: float = 1.0, inner: float = 0.45) -> np.ndarray:
    """Radius of a five-pointed star's edge at angle phi ∈ [0, π/5] from a point."""
    alpha = np.pi / 5
    p1 = np.array([outer, 0.0])
    p2 = inner * np.array([np.cos(alpha), np.sin(alpha)])
    e = p2 - p1
    return (p1[0] * e[1] - p1[1] * e[0]) / (np.cos(phi) * e[1] - np.sin(phi) * e[0])


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test in shape-local coordinates (unit radius, v pointing up)."""
    name = SHAPES[shape]
    if name == "circle":
        return u**2 + v**2 <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if name == "triangle":
        return (v >= -0.7) & (v <= 0.95 - 1.65 * np.abs(u))
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if name == "star":
        theta = np.arctan2(u, v) % (2 * np.pi / 5)
        phi = np.abs(theta - np.pi / 5)
        phi = np.pi / 5 - phi  # distance from the nearest outer point
        return np.hypot(u, v) <= _star_boundary(phi)
    if name == "cross":
        arm = ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | (
            (np.abs(v) <= 0.3) & (np.abs(u) <= 0.95)
        )
        return arm
    if name == "ring":
        r = np.hypot(u, v)
        return (r <= 1.0) & (r >= 0.55)
    # heart: the classic implicit curve, shifted so that it is centred
    x, y = 1.2 * u, 1.2 * v + 0.25
    return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0


def _background(pattern: int, size: int, phase: np.ndarray) -> np.ndarray:
    """A grey pattern [size, size] in [0, 1]: colour lives only in the shape."""
    y, x = np.mgrid[0:size, 0:size]
    x, y = x + phase[0], y + phase[1]
    period = max(4, size // 6)
    light, dark = 0.90, 0.55
    name = PATTERNS[pattern]
    if name == "plain":
        on = np.zeros_like(x, dtype=bool)
    elif name == "stripes":
        on = ((x + y) % period) < period // 2
    elif name == "dots":
        spacing = max(6, size // 4)
        cx, cy = (x % spacing) - spacing / 2 + 0.5, (y % spacing) - spacing / 2 + 0.5
        on = cx**2 + cy**2 <= (spacing / 4) ** 2 + 0.5
    else:  # checks
        on = ((x // (period // 2)) + (y // (period // 2))) % 2 == 0
    return np.where(on, dark, light)


def render_images(
    items: dict[str, np.ndarray], image_size: int, rng: np.random.Generator, supersample: int = 4
) -> np.ndarray:
    """uint8 [N, S, S, 3]: anti-aliased shapes (rendered at 4× and averaged)."""
    n, s = len(items["shape"]), image_size
    big = s * supersample
    coords = (np.arange(big) + 0.5) / big * 2.0 - 1.0  # pixel centres in [-1, 1]
    gx, gy = np.meshgrid(coords, -coords)  # gy points up
    images = np.empty((n, s, s, 3), dtype=np.uint8)
    for i in range(n):
        radius = _RADIUS[items["size"][i]]
        margin = max(0.0, 0.95 - radius)
        cx, cy = items["offset"][i] * margin
        inside = _shape_mask(items["shape"][i], (gx - cx) / radius, (gy - cy) / radius)
        coverage = inside.reshape(s, supersample, s, supersample).mean(axis=(1, 3))[..., None]
        background = _background(items["pattern"][i], s, items["pattern_phase"][i])[..., None]
        colour = np.clip(_RGB[items["colour"][i]] + items["colour_jitter"][i], 0.0, 1.0)
        pixels = background * (1.0 - coverage) + colour * coverage
        pixels += rng.normal(0.0, 0.02, pixels.shape)
        images[i] = np.clip(np.round(pixels * 255.0), 0, 255).astype(np.uint8)
    return images


def describe(items: dict[str, np.ndarray], index: int) -> str:
    """The item's description from a template with synonyms."""
    words = {}
    for k, attribute in enumerate(("shape", "colour", "pattern", "size")):
        value = ATTRIBUTES[attribute][items[attribute][index]]
        words[attribute] = _SYNONYMS[attribute][value][items["synonyms"][index, k]]
    return _TEMPLATES[items["template"][index]].format(**words)


def synthesize_audio(
    items: dict[str, np.ndarray], config: ShapesConfig, index: int, rng: np.random.Generator
) -> np.ndarray:
    """Pitch encodes colour, number of pulses encodes shape, harmonics encode pattern."""
    rate, samples = config.audio_sample_rate, config.audio_samples
    t = np.arange(samples) / rate
    f0 = 220.0 * 2.0 ** (items["colour"][index] / 3.0) * (1.0 + items["pitch_jitter"][index])
    harmonics = {0: [1.0], 1: [1.0, 0.6], 2: [1.0, 0.0, 0.6], 3: [1.0, 0.0, 0.4, 0.0, 0.25]}
    tone = sum(
        a * np.sin(2 * np.pi * f0 * (k + 1) * t)
        for k, a in enumerate(harmonics[items["pattern"][index]])
    )
    pulses = items["shape"][index] + 1
    phase = (t * pulses / config.audio_seconds) % 1.0  # position within the current pulse
    envelope = np.where(phase < 0.6, np.sin(np.pi * phase / 0.6) ** 2, 0.0)
    wave = 0.6 * envelope * tone / np.max(np.abs(tone))
    return np.clip(wave + rng.normal(0.0, 0.02, samples), -1.0, 1.0)


# --- users and interactions ---------------------------------------------------------


def sample_users(config: ShapesConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each user: 2 favourite colours, 2 favourite shapes (skewed), 1 favourite pattern."""
    u = config.num_users
    return {
        "colour": simulation.favourites(rng, u, len(COLOURS), 2),
        "shape": simulation.favourites(rng, u, len(SHAPES), 2),
        "pattern": rng.integers(0, len(PATTERNS), (u, 1)),
    }


def generate_shapes(config: ShapesConfig) -> dict:
    """Everything about a shapes dataset, in memory (the writer serialises it)."""
    rng = np.random.default_rng(config.seed)
    items = sample_items(config, rng)
    images = render_images(items, config.image_size, rng)
    texts = [describe(items, i) for i in range(config.num_items)]
    audio = [synthesize_audio(items, config, i, rng) for i in range(config.num_items)]
    users = sample_users(config, rng)
    cold = np.sort(
        rng.choice(config.num_items, int(round(config.cold_fraction * config.num_items)), False)
    )
    labels = {a: items[a] for a in ("colour", "shape", "pattern")}
    sequences = simulation.sample_sequences(
        config.affinity,
        labels,
        items["popularity"],
        users,
        cold,
        (config.min_sequence, config.max_sequence),
        rng,
    )
    return {
        "items": items,
        "images": images,
        "texts": texts,
        "audio": audio,
        "users": users,
        "cold": cold,
        "sequences": sequences,
        "splits": simulation.leave_last_out(sequences, rng, config.max_history),
    }


def write_shapes(
    out: str, config: ShapesConfig | None = None, *, overwrite: bool = False, progress: bool = True
) -> schema.DatasetInfo:
    """Generates the shapes benchmark and writes it to `out` (atomically).

    Example:

    ```python
    info = write_shapes("/tmp/shapes", ShapesConfig(num_items=200, num_users=50))
    data = mmrec.data.load("/tmp/shapes")
    ```
    """
    config = config or ShapesConfig()
    generated = generate_shapes(config)
    items = generated["items"]
    n = config.num_items
    labels = {a: items[a] for a in ATTRIBUTES}

    def item_records():
        for i in range(n):
            yield item_example(
                i,
                image_png=encode_png(generated["images"][i]),
                text=generated["texts"][i],
                audio_wav=encode_wav(generated["audio"][i], config.audio_sample_rate),
                labels={a: int(v[i]) for a, v in labels.items()},
                popularity=float(items["popularity"][i]),
            )

    info = schema.DatasetInfo(
        name="shapes",
        modalities=schema.MODALITIES,
        attributes={a: list(v) for a, v in ATTRIBUTES.items()},
        num_items=n,
        num_users=config.num_users,
        shards={},
        image_size=config.image_size,
        audio_sample_rate=config.audio_sample_rate,
        audio_samples=config.audio_samples,
        user_preferences=("colour", "shape", "pattern"),
        affinity=config.affinity,
        cold_items=generated["cold"].tolist(),
        max_history=config.max_history,
        seed=config.seed,
        generator={"name": "mmrec.data.synthetic.write_shapes", **dataclasses.asdict(config)},
    )
    return simulation.write_benchmark(
        out,
        info,
        item_records(),
        {a: generated["users"][a] for a in info.user_preferences},
        generated["splits"],
        generated["texts"],
        overwrite=overwrite,
        progress=progress,
    )
