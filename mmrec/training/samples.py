"""Sample grids of generated images: for users, prompts or attributes, from a run or an export.

Where it sits in the data flow: after training. `mmrec generate` and
`mmrec quickstart` call these; `SampleGrid` (during training) uses
`grid_conditions` for its fixed conditions. A grid has one row per condition
(a user, a prompt) and one column per noise seed.
"""

from __future__ import annotations

import glob
import os

import numpy as np

from mmrec.formats import PAD_ID, pad_histories
from mmrec.models.attributes import label_key
from mmrec.models.conditioning import get_conditioning
from mmrec.training.callbacks import image_grid, write_png


def user_histories(data, user_ids, split="test") -> dict[int, list[int]]:
    """The item history each user has at ``split`` time (oldest first), by user id.

    Raises `ValueError` naming the users the split does not have.
    """
    wanted = {int(u) for u in user_ids}
    found = {}
    for batch in data.interactions(split, batch_size=4096, shuffle=False).as_numpy_iterator():
        for user, row in zip(batch["user_id"], batch["history"]):
            if int(user) in wanted:
                found[int(user)] = [int(i) for i in row if i != PAD_ID]
    missing = sorted(wanted - set(found))
    if missing:
        raise ValueError(
            f"Expected user ids that have a {split} interaction in {data.path} "
            f"(0..{data.info.num_users - 1}). Not found: {missing[:10]}"
        )
    return {u: found[u] for u in user_ids}


def grid_conditions(data, condition, rows=8):
    """Fixed conditions for training-time grids, as the kind of condition picks them.

    ``condition``: a registered kind (``"user"``: the histories of the first test
    users; ``"text"``: descriptions of held-out items; ``"attributes"``: the
    first attribute cycling through its classes, the others stepped), a
    conditioning or a generator. ``rows=None``: the conditioning's default.
    """
    conditioning = getattr(condition, "conditioning", condition)
    if isinstance(conditioning, str):
        conditioning = get_conditioning(conditioning)
    return conditioning.grid_conditions(data, rows)


def parse_attributes(text: str) -> dict[str, list]:
    """``"shape=star,colour=red"`` → ``{"shape": ["star"], "colour": ["red"]}`` (ids as ints)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(
                f"Expected attributes as name=value pairs, e.g. shape=star,colour=red. "
                f"Received: {text!r}"
            )
        value = value.strip()
        out[key.strip()] = [int(value) if value.lstrip("-").isdigit() else value]
    return out


def generate_grid(model, conditions, num=8, seed=0) -> np.ndarray:
    """A uint8 grid from an in-memory `ConditionalGAN` / `ConditionalVAE`.

    ``conditions``: a list of histories (user models), a list of prompts (text
    models), or a dict of attribute lists (any model). One row per condition.
    """
    images = model.generate(conditions, num=num, seed=seed, dtype="uint8")
    if images.ndim == 4:  # one condition
        images = images[None]
    return image_grid(images)


def latest_export(path) -> str:
    """``savedmodels/NAME`` → its highest numbered version folder (or ``path`` if it is one)."""
    path = os.fspath(path)
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = [
        int(os.path.basename(p))
        for p in glob.glob(os.path.join(path, "*"))
        if os.path.basename(p).isdigit() and os.path.exists(os.path.join(p, "saved_model.pb"))
    ]
    if not versions:
        raise FileNotFoundError(
            f"No exported model at '{path}' (expected savedmodels/NAME with numbered versions, "
            "as `mmrec export` writes)."
        )
    return os.path.join(path, str(max(versions)))


def generate_grid_from_export(path, conditions, num=8, seed=0) -> np.ndarray:
    """A uint8 grid from an exported generator's ``generate_image`` signature.

    Needs only TensorFlow (and tensorflow-text for text models): the same call
    TF Serving answers. ``conditions`` as in `generate_grid`; attributes must be
    given as ids.
    """
    import tensorflow as tf

    try:
        import tensorflow_text  # noqa: F401  (registers the ops of text models)
    except ImportError:
        pass
    version = latest_export(path)
    loaded = tf.saved_model.load(version)
    if "generate_image" not in loaded.signatures:
        raise ValueError(
            f"'{version}' has no 'generate_image' signature (it has {sorted(loaded.signatures)}):"
            " expected an exported ConditionalGAN or ConditionalVAE."
        )
    signature = loaded.signatures["generate_image"]
    names = set(signature.structured_input_signature[1]) - {"seed"}
    if isinstance(conditions, dict):
        inputs = {
            (k if k.startswith("label_") else label_key(k)): np.asarray(v, np.int32)
            for k, v in conditions.items()
        }
        given = f"attribute ids for {sorted(inputs)}"
    elif all(isinstance(c, (str, bytes)) for c in conditions):
        inputs, given = {"text": np.asarray(conditions, dtype=object)}, "descriptions"
    else:
        inputs, given = {"history": pad_histories(list(conditions))[0]}, "user histories"
    if set(inputs) != names:
        raise ValueError(
            f"Expected the inputs of this export's generate_image: {sorted(names)} "
            f"(attributes as ids). Received: {given}"
        )
    count = len(next(iter(inputs.values())))
    inputs = {k: np.repeat(v, num, axis=0) for k, v in inputs.items()}
    inputs["seed"] = np.tile(np.arange(seed, seed + num, dtype=np.int64), count)
    outputs = signature(**{k: tf.convert_to_tensor(v) for k, v in inputs.items()})
    pngs = outputs["images_png_bytes"].numpy()
    images = np.stack([tf.io.decode_png(p, channels=3).numpy() for p in pngs])
    return image_grid(images.reshape((count, num) + images.shape[1:]))


def write_grid(path, grid) -> str:
    write_png(path, grid)
    return os.fspath(path)
