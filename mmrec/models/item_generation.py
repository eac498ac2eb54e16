"""`MultimodalItemGenerator`: one item for a user, as a picture, a description and a sound.

Where it sits in the data flow: after the image, text and audio generators are
trained (each conditioned on attributes, or on users through the recommender's
user tower). For a user's history it samples ONE attribute set from the user's
predicted preferences (`AttributePreferenceModel`, the user conditioning's head)
and drives all three generators with it, so the three describe the same item —
the consistency the article's worked case asks for. Given attributes, it skips
the sampling.

Everything per row is drawn from that row's seed (`mmrec.models.seeding`): the
attributes, the image's noise, the text's sampling and the sound's noise. So
``generate_item(history, num=N, seed=s)`` returns, row for row, what the exported
``generate_item`` signature returns for seeds ``s, s+1, …, s+N-1``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mmrec.formats import pad_histories
from mmrec.models.attributes import attribute_ids, label_key, num_classes
from mmrec.models.conditioning.user import AttributePreferenceModel
from mmrec.models.image_networks import to_uint8
from mmrec.models.seeding import seeded_categorical, seeded_noise

MODALITIES = ("image", "text", "audio")
# Stateless streams of one row's draws: attribute k uses stream k (1, 2, …), as the
# user conditioning's `resolve` does; the sound's noise has its own.
IMAGE_STREAM, AUDIO_STREAM = 0, 1000
GENERATE_CHUNK = 256


@keras.saving.register_keras_serializable(package="mmrec")
class MultimodalItemGenerator(keras.Model):
    """Generates complete items — image, text and sound that agree — for users or attributes.

    Args:
        image_generator: a `ConditionalGAN` or `ConditionalVAE` conditioned on
            attributes or on users (either way its network takes attribute labels).
        text_generator: a `ConditionalTextGenerator`, likewise.
        audio_generator: a `ConditionalAudioGenerator`, likewise.
        preference_model: the `AttributePreferenceModel` that predicts a user's
            attributes from their history; ``None`` takes a user-conditioned
            generator's (the image generator's first). Without one, the generator
            takes attributes only.
        temperature: divides the preference logits before sampling (below 1
            favours each user's favourites).

    Example:

    ```python
    items = MultimodalItemGenerator(gan, text_model, audio_model)   # user-conditioned models
    out = items.generate_item([3, 17, 42], num=2, seed=0)
    out["image"].shape, out["text"], out["audio"].shape, out["attributes"]["colour"]
    # (2, 32, 32, 3), ['a small red star …', …], (2, 8000), array([4, 4], dtype=int32)
    ```
    """

    def __init__(
        self,
        image_generator,
        text_generator,
        audio_generator,
        preference_model=None,
        temperature=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        generators = {"image": image_generator, "text": text_generator, "audio": audio_generator}
        for modality, generator in generators.items():
            conditioning = getattr(generator, "conditioning", None)
            if not getattr(conditioning, "takes_labels", False):
                raise ValueError(
                    f"Expected {modality}_generator to be a generator conditioned on attributes "
                    f"or users (its network takes attribute labels). Received: "
                    f"{type(generator).__name__} conditioned on "
                    f"{getattr(generator, 'condition', None)!r}"
                )
        counts = {m: num_classes(g.attributes) for m, g in generators.items()}
        if len({tuple(sorted(c.items())) for c in counts.values()}) != 1:
            raise ValueError(
                f"Expected the three generators to share attributes. Received: {counts}"
            )
        if not temperature > 0:
            raise ValueError(f"Expected temperature > 0. Received: temperature={temperature!r}")
        if preference_model is not None and not isinstance(
            preference_model, AttributePreferenceModel
        ):
            raise ValueError(
                "Expected preference_model to be an AttributePreferenceModel or None. "
                f"Received: {type(preference_model).__name__}"
            )
        # === Layers ===
        self.image_generator = image_generator
        self.text_generator = text_generator
        self.audio_generator = audio_generator
        self._given_preferences = preference_model
        self.preference_model = preference_model or next(
            (g.preference_model for g in generators.values() if g.preference_model is not None),
            None,
        )
        # === Config ===
        self.temperature = float(temperature)
        self.built = True

    @property
    def attributes(self) -> dict:
        return self.image_generator.attributes

    @property
    def takes_users(self) -> bool:
        return self.preference_model is not None

    @property
    def sample_rate(self) -> int:
        return int(self.audio_generator.sample_rate)

    # --- the graph: what generate_item and the exported signature run -------------------------

    def sample_items(self, inputs, seeds):
        """Condition inputs and int seeds ``[B]`` → one item per row, in the graph.

        Args:
            inputs: ``{"history": int32 [B, L]}`` padded with -1 (needs a preference
                model) or ``{"label_<attribute>": int32 [B]}`` for every attribute.
            seeds: row i is drawn from ``seeds[i]`` alone.

        Returns:
            ``{"label_<attribute>": int32 [B], "image": float32 [B, H, W, 3] in
            [-1, 1], "text": tf.string [B], "audio": float32 [B, S] in [-1, 1]}``.
        """
        seeds = tf.cast(seeds, tf.int64)
        if "history" in inputs:
            if self.preference_model is None:
                raise ValueError(
                    "Expected attribute inputs: this item generator has no preference model "
                    "(none of its generators is user-conditioned)."
                )
            history = tf.cast(inputs["history"], tf.int32)
            logits = self.preference_model({"history": history}, training=False)
            labels = {
                label_key(name): seeded_categorical(seeds, logits[name] / self.temperature, k)
                for k, name in enumerate(self.attributes, start=1)
            }
        else:
            labels = {
                label_key(n): tf.cast(inputs[label_key(n)], tf.int32) for n in self.attributes
            }
        image = self.image_generator.decode(
            seeded_noise(seeds, self.image_generator.latent_dim, IMAGE_STREAM), labels
        )
        text_model = self.text_generator
        condition = text_model.conditioning(labels, training=False)
        text = text_model.detokenize(text_model.sample_ids(condition, seeds))
        audio = self.audio_generator.decode_waveforms(
            seeded_noise(seeds, self.audio_generator.latent_dim, AUDIO_STREAM), labels
        )
        return {
            **labels,
            "image": tf.cast(image, tf.float32),
            "text": text,
            "audio": tf.cast(audio, tf.float32),
        }

    def call(self, inputs, training=False):
        rows = ops.shape(keras.tree.flatten(inputs)[0])[0]
        seeds = keras.random.randint((rows,), 0, 2**30, seed=self.image_generator.seed_generator)
        return self.sample_items(inputs, seeds)

    # --- Python API -----------------------------------------------------------------------------

    def generate_item(self, condition, num=1, seed=None):
        """``num`` complete items for each condition.

        Args:
            condition: a user's history (item ids), a list of histories (a 2-D array
                padded with -1 too), or a dict of attributes (names or ids, lists for
                several).
            num: items per condition.
            seed: row i of the request (conditions × num, condition-major) is drawn
                from seed ``seed + i``; ``None`` draws a random start.

        Returns:
            A dict of rows, condition-major (row ``c * num + j``): ``"image"`` uint8
            ``[R, H, W, 3]``, ``"text"`` a list of R strings, ``"audio"`` float32
            ``[R, S]`` in [-1, 1] (``sample_rate`` Hz), ``"attributes"``
            ``{attribute: int32 [R]}`` (the attribute set each row was made of).
        """
        if num < 1 or int(num) != num:
            raise ValueError(f"Expected num to be a positive int. Received: num={num!r}")
        inputs = self._parse(condition)
        inputs = {k: np.repeat(v, num, axis=0) for k, v in inputs.items()}
        total = len(next(iter(inputs.values())))
        if seed is None:
            seed = int(np.random.default_rng().integers(0, 2**30))
        seeds = np.arange(total, dtype="int64") + int(seed)
        compiled = self.__dict__.setdefault(
            "_compiled", tf.function(self.sample_items, reduce_retracing=True)
        )
        parts = []
        for start in range(0, total, GENERATE_CHUNK):
            rows = slice(start, start + GENERATE_CHUNK)
            chunk = {k: tf.constant(v[rows]) for k, v in inputs.items()}
            parts.append(
                {k: v.numpy() for k, v in compiled(chunk, tf.constant(seeds[rows])).items()}
            )
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        return {
            "image": to_uint8(out["image"]),
            "text": [t.decode("utf-8", errors="replace") for t in out["text"].tolist()],
            "audio": out["audio"],
            "attributes": {n: out[label_key(n)].astype("int32") for n in self.attributes},
        }

    def _parse(self, condition):
        if isinstance(condition, dict):
            ids, _ = attribute_ids(self.attributes, condition)
            return {k: np.asarray(v, "int32") for k, v in ids.items()}
        if not self.takes_users:
            raise ValueError(
                "Expected a dict of attributes: this item generator has no preference model. "
                f"Received: condition={condition!r}"
            )
        history, _ = pad_histories(condition, self.preference_model.history_length)
        return {"history": history}

    # --- Keras ---------------------------------------------------------------------------------

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "image_generator": serialize(self.image_generator),
            "text_generator": serialize(self.text_generator),
            "audio_generator": serialize(self.audio_generator),
            "preference_model": None
            if self._given_preferences is None
            else serialize(self._given_preferences),
            "temperature": self.temperature,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("image_generator", "text_generator", "audio_generator", "preference_model"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
