"""Item conditioning (captioning): an item's content → an item encoder → a vector.

"Describe this image/sound": the condition is what an item *is* (its image and
audio, never its text, which is what a captioning model writes), encoded by a
`mmrec.layers.MultimodalItemEncoder` — a new one trained with the generator, or
the recommender's item tower, frozen, so that the generator describes what the
recommender sees in an item. Registered as ``condition="item"``.
"""

from __future__ import annotations

import keras
import numpy as np

from mmrec.layers.dtypes import resolve_policy
from mmrec.layers.item_encoder import MultimodalItemEncoder
from mmrec.models.attributes import check_positive_int, num_classes
from mmrec.models.conditioning.base import (
    Conditioning,
    EvaluationConditions,
    dataset_attributes,
    register_conditioning,
)

CAPTION_MODALITIES = ("image", "audio")
_DTYPES = {"image": "uint8", "audio": "float32"}
# A small tower when no recommender's is given: captioning needs attributes, not nuance.
DEFAULT_ENCODER_CONFIG = {"image": {"filters": [16, 32, 64]}, "audio": {"filters": [8, 16, 32]}}


def item_content_network(item_encoder, content_shapes, embedding_dim=64, dtype=None):
    """``{modality: content [B, ...]}`` → ``item_encoder`` → Dense → float32 ``[B, embedding_dim]``.

    Args:
        item_encoder: a `MultimodalItemEncoder` over image and/or audio.
        content_shapes: modality → shape of one item's content (without the batch).
        embedding_dim: width of the conditioning vector.
        dtype: the adapter's dtype policy (``None``: the global policy).
    """
    check_positive_int("embedding_dim", embedding_dim)
    policy = resolve_policy(dtype)
    inputs = {
        m: keras.Input(shape=tuple(content_shapes[m]), dtype=_DTYPES[m], name=m)
        for m in item_encoder.modalities
    }
    embedding = item_encoder(inputs)
    hidden = keras.layers.Dense(embedding_dim, activation="relu", name="adapter", dtype=policy)(
        embedding
    )
    outputs = keras.layers.Dense(embedding_dim, name="item_condition", dtype="float32")(hidden)
    return keras.Model(inputs, outputs, name="conditioner")


def new_item_encoder(features, embedding_dim=64, encoder_config=None, dtype=None):
    """A new `MultimodalItemEncoder` over the image and audio of a catalogue's ``features``."""
    modalities = tuple(m for m in CAPTION_MODALITIES if m in features)
    if not modalities:
        raise ValueError(
            "Expected a dataset with images or audio for captioning (condition='item'). "
            f"Received: modalities={list(features)}"
        )
    return MultimodalItemEncoder(
        modalities=modalities,
        embedding_dim=embedding_dim,
        encoder_config=encoder_config or DEFAULT_ENCODER_CONFIG,
        dtype=dtype,
        name="item_encoder",
    )


def pretrain_item_encoder(
    data,
    epochs=20,
    batch_size=128,
    learning_rate=2e-3,
    embedding_dim=64,
    encoder_config=None,
    dtype=None,
    verbose="auto",
):
    """A new item encoder over a dataset's image and audio, trained as a classifier of attributes.

    Captioning conditioned on a frozen encoder that already reads the items'
    attributes: a caption names them, and the caption loss alone (one word of a
    sentence per attribute, a constant learning rate) trains an encoder that
    reads them worse than a classifier does (docs/text_generation.md). The
    classifier is the encoder, a hidden layer and one softmax head per
    attribute, trained with Adam on a cosine-decayed learning rate on the
    judges' training items only (``item_id % 5 != 0``), so that the held-out
    items the captions are judged on stay unseen; their accuracy is reported.

    Args:
        data: a `mmrec.data.MultimodalDataset` with images and/or audio and attributes.
        epochs: passes over the training items.
        batch_size: items per step.
        learning_rate: the peak of the cosine-decayed learning rate.
        embedding_dim: the encoder's output width.
        encoder_config: the encoder's per-modality arguments (``None``: the
            captioner's default small towers).
        dtype: the encoder's dtype policy (``None``: the global policy).
        verbose: `keras.Model.fit`'s (``"auto"``: a progress bar).

    Returns:
        ``(encoder, report)``: the trained `MultimodalItemEncoder` and
        ``{"held_out_accuracy": {attribute: accuracy}, "train_accuracy", "epochs",
        "steps", "train_items", "held_out_items"}``.

    Example:

    ```python
    encoder, report = pretrain_item_encoder(data, epochs=20)
    captioner = ConditionalTextGenerator.from_dataset(data, condition="item", item_encoder=encoder)
    ```
    """
    from mmrec.evaluation.generation import judge_split  # evaluation imports the models

    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    attributes = dataset_attributes(data)
    catalogue = data.catalogue()
    features = catalogue.features()
    encoder = new_item_encoder(features, embedding_dim, encoder_config, dtype)
    modalities = encoder.modalities
    inputs = {
        m: keras.Input(shape=tuple(features[m].shape[1:]), dtype=_DTYPES[m], name=m)
        for m in modalities
    }
    hidden = keras.layers.Dense(embedding_dim, activation="relu", name="hidden", dtype=dtype)(
        encoder(inputs)
    )
    heads = {
        name: keras.layers.Dense(classes, name=name, dtype="float32")(hidden)
        for name, classes in num_classes(attributes).items()
    }
    classifier = keras.Model(inputs, heads, name="item_classifier")
    train_ids, held_out_ids = judge_split(catalogue.num_items)
    steps = epochs * -(-len(train_ids) // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    classifier.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss={n: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for n in heads},
        metrics={n: ["accuracy"] for n in heads},
    )

    def split(ids):
        content = {m: np.asarray(features[m])[ids] for m in modalities}
        return content, {n: np.asarray(catalogue.labels[n])[ids] for n in heads}

    history = classifier.fit(
        *split(train_ids), batch_size=batch_size, epochs=epochs, verbose=verbose
    )
    content, labels = split(held_out_ids)
    predicted = classifier.predict(content, batch_size=512, verbose=0)
    accuracy = {
        n: round(float(np.mean(np.argmax(predicted[n], axis=-1) == labels[n])), 4) for n in heads
    }
    train_accuracy = {n: round(float(history.history[f"{n}_accuracy"][-1]), 4) for n in heads}
    report = {
        "held_out_accuracy": accuracy,
        "train_accuracy": train_accuracy,  # the last epoch's, with the model in training mode
        "epochs": epochs,
        "steps": steps,
        "train_items": len(train_ids),
        "held_out_items": len(held_out_ids),
    }
    return encoder, report


@register_conditioning("item")
class ItemConditioning(Conditioning):
    """Condition on an item's content: its image and/or audio (captioning).

    Auxiliary heads (`add_attribute_heads`, trained with the generator) make the
    content embedding predict the item's attributes: a caption names them, and
    one word of a sentence is a weak signal for an image encoder on its own.

    Trains on the chosen items' content (``generation_pairs`` carry the target's
    ``image`` and ``audio``); serves those content inputs (``image`` uint8
    ``[B, H, W, 3]``, ``audio`` float32 ``[B, samples]``); ``generate`` takes a
    dict of content arrays or an array of images.

    Args:
        network: a `keras.Model` from content inputs to float32 ``[B, D]``
            (`item_content_network`).
        attributes: the items' attributes (what evaluation checks the captions for).

    Example:

    ```python
    conditioning = ItemConditioning.from_dataset(data)                 # a new image+audio encoder
    frozen = ItemConditioning.from_dataset(data, item_encoder=rec.item_encoder)  # the recommender's
    ```
    """

    pretrains_encoder = True

    def __init__(self, network, attributes, **kwargs):
        super().__init__(network, attributes, **kwargs)
        self.add_attribute_heads()
        self.modalities = [m for m in CAPTION_MODALITIES if m in self.network.input]
        if not self.modalities or set(self.network.input) - set(CAPTION_MODALITIES):
            raise ValueError(
                f"Expected a network over the modalities {list(CAPTION_MODALITIES)} (captioning "
                f"writes the text). Received: inputs {sorted(self.network.input)}"
            )

    @classmethod
    def from_dataset(
        cls, data, item_encoder=None, embedding_dim=64, dtype=None, pretrain_epochs=None
    ):
        """Over a dataset's image and audio (whichever it has).

        Args:
            item_encoder: ``None`` for a new, trained `MultimodalItemEncoder`; or an
                item encoder over image/audio (e.g. ``recommender.item_encoder`` of a
                recommender trained without text, or `pretrain_item_encoder`'s), used
                as a frozen copy.
            pretrain_epochs: with no ``item_encoder``, first train a new one as an
                attribute classifier for this many epochs (`pretrain_item_encoder`)
                and use it frozen.
        """
        if pretrain_epochs is not None:
            if item_encoder is not None:
                raise ValueError(
                    "Expected either item_encoder or pretrain_epochs (which trains a new "
                    "encoder). Received: both"
                )
            item_encoder, _ = pretrain_item_encoder(
                data, epochs=pretrain_epochs, embedding_dim=embedding_dim, dtype=dtype
            )
        attributes = dataset_attributes(data)
        features = data.catalogue().features()
        shapes = {m: tuple(v.shape[1:]) for m, v in features.items()}
        if item_encoder is None:
            item_encoder = new_item_encoder(features, embedding_dim, dtype=dtype)
        else:
            if not isinstance(item_encoder, MultimodalItemEncoder):
                raise ValueError(
                    "Expected item_encoder to be a MultimodalItemEncoder (e.g. "
                    f"recommender.item_encoder). Received: {type(item_encoder).__name__}"
                )
            if "text" in item_encoder.modalities:
                raise ValueError(
                    "Expected an item encoder without the text modality: a caption must come "
                    "from the image and audio (train the recommender with "
                    "modalities=('image', 'audio')). Received: modalities="
                    f"{list(item_encoder.modalities)}"
                )
            copy = MultimodalItemEncoder.from_config(item_encoder.get_config())
            copy.set_weights(item_encoder.get_weights())
            copy.trainable = False
            item_encoder = copy
        network = item_content_network(item_encoder, shapes, embedding_dim, dtype)
        return cls(network, attributes, name="conditioning", dtype=dtype)

    # --- training -----------------------------------------------------------------------------

    def batch_keys(self):
        return list(self.modalities)

    def training_inputs(self, batch, labels):
        return {m: batch[m] for m in self.modalities}

    # --- serving, sampling --------------------------------------------------------------------

    def serving_inputs(self):
        return {m: (tuple(self.network.input[m].shape[1:]), _DTYPES[m]) for m in self.modalities}

    def example_inputs(self):
        served = self.serving_inputs().items()
        return {m: np.zeros((2, *shape), dtype=dtype) for m, (shape, dtype) in served}

    def resolve(self, inputs, sample):
        return {m: inputs[m] for m in self.modalities}, {}

    def describe_condition(self):
        images = " or an array of images [N, H, W, 3] ([H, W, 3] for one)"
        return f"an item's content: a dict {{modality: array [N, ...]}} over {self.modalities}" + (
            images if self.modalities == ["image"] else ""
        )

    def parse(self, condition, num, seed_generator, temperature=1.0):
        if not isinstance(condition, dict):
            if self.modalities != ["image"]:
                return super().parse(condition, num, seed_generator, temperature)
            condition = {"image": condition}
        missing = [m for m in self.modalities if m not in condition]
        if missing:
            raise ValueError(
                f"Expected condition to be {self.describe_condition()}. "
                f"Received: a dict without {missing}"
            )
        shapes = self.serving_inputs()
        arrays = {m: np.asarray(condition[m]) for m in self.modalities}
        single = arrays[self.modalities[0]].ndim == len(shapes[self.modalities[0]][0])
        out = {}
        for m, array in arrays.items():
            array = array[None] if single else array
            if tuple(array.shape[1:]) != tuple(shapes[m][0]):
                raise ValueError(
                    f"Expected {m} content of shape [N, {', '.join(map(str, shapes[m][0]))}]. "
                    f"Received: shape {list(array.shape)}"
                )
            out[m] = np.repeat(array.astype(shapes[m][1]), num, axis=0)
        return out, single

    # --- evaluation ---------------------------------------------------------------------------

    def item_content(self, data, item_ids):
        """The content of catalogue items, as `parse` takes it."""
        features = data.catalogue().features()
        return {m: np.asarray(features[m])[np.asarray(item_ids)] for m in self.modalities}

    def evaluation_conditions(self, model, data, item_ids, num, seed, temperature, diversity):
        """Captions of the held-out items: they should name the items' attributes."""
        labels = data.catalogue().labels
        requested = {n: np.repeat(labels[n][item_ids], num) for n in self.attributes}
        content = self.item_content(data, item_ids)
        return EvaluationConditions(
            content, num, requested, self.item_content(data, item_ids[:diversity])
        )

    @classmethod
    def grid_conditions(cls, data, rows=None):
        features = data.catalogue().features()
        return {
            m: np.asarray(features[m])[: rows or 8] for m in CAPTION_MODALITIES if m in features
        }
