"""Measuring generated sounds with an independent judge.

Where it sits in the data flow: after an audio generator
(`ConditionalAudioGenerator`) is trained. `AudioJudge` is the modality
benchmark's audio classifier (`AudioEncoder` over log-mel spectrograms, one
head per attribute) trained on *real* item sounds only, on the items the image
judge trains on (`judge_split`: ``item_id % 5 != 0``); its predictions and its
penultimate features measure

* **conditional accuracy** — the sound carries the attributes it was asked for
  (shapes: colour is the pitch, shape the number of pulses, pattern the timbre;
  size is not in the sound, so its accuracy is chance);
* **personalisation hit-rate** — the judged attributes are among the user's
  favourites (`mmrec.evaluation.personalisation`), next to the random-item base
  rate and the users' own held-out items;
* **an FAD-style Fréchet distance on our judge's features** (``fd_judge``) —
  the Fréchet distance of `mmrec.evaluation.generation.frechet_distance`
  between generated and real sounds in the judge's feature space. It is *not*
  FAD: FAD uses VGGish embeddings, which are not available offline; numbers are
  comparable only between runs with the same judge. It is read against the
  **real-vs-real reference**: two disjoint halves of the real sounds (even and
  odd item ids), the distance a perfect generator would reach with as many
  samples;
* **diversity** — the mean pairwise feature distance among sounds of one condition.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mmrec.evaluation.generation import diversity, frechet_distance, judge_split
from mmrec.evaluation.personalisation import preference_hits, random_item_hit_rate
from mmrec.layers.encoders import AudioEncoder
from mmrec.models.attributes import check_attributes, label_key, num_classes


@keras.saving.register_keras_serializable(package="mmrec")
class AudioJudge(keras.Model):
    """A classifier of an item sound's attributes; the judge of generated sounds.

    Waveforms ``[B, samples]`` float32 in [-1, 1] → `AudioEncoder` (log-mel
    spectrogram, a small CNN) → a dense ``features`` layer with ReLU (the
    penultimate features of the Fréchet distance and diversity) → one logit head
    per attribute: ``{attribute: float32 [B, C]}``. The architecture of the
    audio classifier in ``benchmarks/modality_classifiers.py``. Train it with
    `train_audio_judge`.

    Args:
        attributes: attribute name → number of classes (or list of class names).
        filters: widths of the encoder's conv blocks.
        feature_dim: width of the encoder's embedding and of the features.
        sample_rate: sampling rate of the sounds in Hz.

    Example:

    >>> judge = AudioJudge({"shape": 8, "colour": 8}, filters=(4, 8), feature_dim=8)
    >>> sounds = np.zeros((2, 1600), "float32")
    >>> judge(sounds)["shape"].shape, judge.embed(sounds).shape
    (TensorShape([2, 8]), (2, 8))
    """

    def __init__(
        self, attributes, filters=(16, 32, 64), feature_dim=128, sample_rate=16000, **kwargs
    ):
        attributes = check_attributes(attributes)
        # === Layers ===
        self.encoder = AudioEncoder(feature_dim, filters, sample_rate=sample_rate, name="encoder")
        self.features = keras.layers.Dense(feature_dim, activation="relu", name="features")
        self.heads = {
            name: keras.layers.Dense(classes, name=name, dtype="float32")
            for name, classes in num_classes(attributes).items()
        }

        # === Functional Model ===
        audio = keras.Input(shape=(None,), dtype="float32", name="audio")
        features = self.features(self.encoder(audio))
        outputs = {name: head(features) for name, head in self.heads.items()}
        super().__init__(inputs=audio, outputs=outputs, **kwargs)

        # === Config ===
        self.attributes = attributes
        self.filters = tuple(filters)
        self.feature_dim = feature_dim
        self.sample_rate = sample_rate
        self._feature_model = keras.Model(audio, ops.cast(features, "float32"))

    @classmethod
    def from_dataset(cls, data, **kwargs):
        """A judge for a dataset's attributes and sampling rate."""
        info = data.metadata
        if "audio" not in info.modalities:
            raise ValueError(
                "Expected a dataset with audio (dataset.json modalities). "
                f"Received: modalities={list(info.modalities)}"
            )
        attributes = {name: list(classes) for name, classes in info.attributes.items()}
        return cls(attributes, sample_rate=info.audio_sample_rate, **kwargs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "attributes": self.attributes,
            "filters": list(self.filters),
            "feature_dim": self.feature_dim,
            "sample_rate": self.sample_rate,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def compile(self, optimizer=None, **kwargs):
        """Adam(3e-3) and one sparse softmax cross-entropy per attribute by default."""
        kwargs.setdefault(
            "loss",
            {n: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for n in self.heads},
        )
        kwargs.setdefault("metrics", {n: ["accuracy"] for n in self.heads})
        super().compile(optimizer=optimizer or keras.optimizers.Adam(3e-3), **kwargs)

    def get_compile_config(self):
        # A loaded judge predicts; call `compile()` again to train it further.
        return {}

    def _batches(self, model, sounds, batch_size):
        sounds = np.asarray(ops.convert_to_numpy(sounds), "float32")
        sounds = sounds.reshape((-1, sounds.shape[-1]))
        parts = [
            model(sounds[s : s + batch_size], training=False)
            for s in range(0, len(sounds), batch_size)
        ]
        return keras.tree.map_structure(
            lambda *p: np.concatenate([ops.convert_to_numpy(x) for x in p]), *parts
        )

    def predict_attributes(self, sounds, batch_size=256) -> dict[str, np.ndarray]:
        """Class ids per attribute, ``{attribute: int [N]}``, of waveforms ``[..., samples]``."""
        logits = self._batches(self, sounds, batch_size)
        return {name: np.argmax(values, axis=-1) for name, values in logits.items()}

    def embed(self, sounds, batch_size=256) -> np.ndarray:
        """The penultimate features ``[N, feature_dim]`` (float32) of waveforms ``[N, samples]``."""
        return self._batches(self._feature_model, sounds, batch_size)

    def accuracy(self, sounds, labels, batch_size=256) -> dict[str, float]:
        """Per-attribute accuracy against ``labels`` (``{attribute: ids}``, or
        ``label_<attribute>`` keys); attributes without labels are left out."""
        predicted = self.predict_attributes(sounds, batch_size)
        out = {}
        for name in self.heads:
            key = name if name in labels else label_key(name)
            if key in labels:
                out[name] = float(np.mean(predicted[name] == np.ravel(labels[key])))
        return out


# === Training the judge ======================================================================


def augment_audio(sound, seed):
    """Judge training augmentation: a random gain (0.7–1.2) and added white noise (σ ≤ 0.02).

    Generated sounds are a little louder or quieter and noisier than real ones;
    the judge must not read those differences as a class.
    """
    seeds = tf.random.experimental.stateless_split(seed, 3)
    gain = tf.random.stateless_uniform([], seeds[0], 0.7, 1.2)
    level = tf.random.stateless_uniform([], seeds[1], 0.0, 0.02)
    noise = level * tf.random.stateless_normal(tf.shape(sound), seeds[2])
    return tf.clip_by_value(sound * gain + noise, -1.0, 1.0)


def train_audio_judge(data, epochs=20, batch_size=32, seed=0, verbose=0, **kwargs):
    """Trains an `AudioJudge` on the real sounds of the judge's training items.

    Adam with a cosine-decayed learning rate from 3e-3 (the modality benchmark's
    recipe), sounds augmented with `augment_audio`. Returns ``(judge,
    held_out_accuracy)`` with ``held_out_accuracy`` ``{attribute: accuracy on the
    held-out items}``. ``kwargs`` go to the judge.
    """
    keras.utils.set_random_seed(seed)
    judge = AudioJudge.from_dataset(data, name="audio_judge", **kwargs)
    judge.compile()
    catalogue = data.catalogue()
    ids, _ = judge_split(catalogue.num_items)
    labels = {name: values[ids] for name, values in catalogue.labels.items()}
    ds = tf.data.Dataset.from_tensor_slices((tf.gather(catalogue.audio, ids), labels))
    ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
    ds = ds.map(
        lambda example, s: (augment_audio(example[0], s), example[1]),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    judge.optimizer.learning_rate = keras.optimizers.schedules.CosineDecay(
        3e-3, decay_steps=epochs * -(-len(ids) // batch_size)
    )
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    judge.fit(ds, epochs=epochs, verbose=verbose)
    return judge, audio_held_out_accuracy(judge, data)


def audio_held_out_accuracy(judge, data) -> dict[str, float]:
    """The judge's per-attribute accuracy on the real sounds of its held-out items."""
    catalogue = data.catalogue()
    _, ids = judge_split(catalogue.num_items)
    labels = {name: values[ids] for name, values in catalogue.labels.items()}
    return judge.accuracy(tf.gather(catalogue.audio, ids).numpy(), labels)


# === Distances ===============================================================================


def frechet_audio_judge_distance(judge, sounds_a, sounds_b) -> float:
    """An FAD-style Fréchet distance on our judge's features (not FAD: no VGGish).

    `frechet_distance` between Gaussians fitted to ``judge.embed`` of two sets of
    waveforms. Only comparable between runs with the same judge; read it against
    `real_reference_halves`' real-vs-real distance.
    """
    return frechet_distance(judge.embed(sounds_a), judge.embed(sounds_b))


def real_reference_halves(num_items) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the items, even and odd ids: the real-vs-real reference's sets.

    Example:

    >>> [h.tolist() for h in real_reference_halves(5)]
    [[0, 2, 4], [1, 3]]
    """
    ids = np.arange(num_items)
    return ids[ids % 2 == 0], ids[ids % 2 == 1]


def griffin_lim_round_trip(model, sounds, batch_size=256) -> np.ndarray:
    """Real waveforms → the model's spectrograms → Griffin-Lim → waveforms ``[N, samples]``.

    What a generator that drew every spectrogram perfectly would produce.
    """
    round_trip = tf.function(lambda x: model.spectrogram.invert(model.spectrogram(x)))
    parts = [round_trip(sounds[s : s + batch_size]) for s in range(0, len(sounds), batch_size)]
    return np.concatenate([p.numpy() for p in parts])


# === Reports ==================================================================================


def audio_personalisation_report(judge, data, sounds, requested, user_ids, targets) -> dict:
    """Hit-rates of sounds generated for users, next to the references that make them readable.

    As `mmrec.evaluation.personalisation_report`, for ``sounds`` generated with the
    attributes ``requested`` for ``user_ids`` (``np.repeat(test_users, k)``);
    ``targets``: the test users' own held-out items. Returns ``hit_attributes``,
    ``hit_rate`` (judged sounds), ``hit_rate_held_out_items`` (the targets' real
    sounds, judged; ``..._true_labels``: their labels), ``hit_rate_random_items``,
    ``hit_rate_sampled_attributes`` (what was asked for) and
    ``hit_rate_<attribute>`` per preference attribute (judged sounds).
    """
    strong = list(data.info.strong_preferences)
    users, catalogue = data.users(), data.catalogue()
    user_ids, targets = np.asarray(user_ids), np.asarray(targets)
    owners = user_ids[:: len(user_ids) // len(targets)]
    sets = {
        "hit_rate": (judge.predict_attributes(sounds), user_ids),
        "hit_rate_held_out_items": (
            judge.predict_attributes(tf.gather(catalogue.audio, targets).numpy()),
            owners,
        ),
        "hit_rate_held_out_items_true_labels": (
            {name: catalogue.labels[name][targets] for name in strong},
            owners,
        ),
        "hit_rate_sampled_attributes": (requested, user_ids),
    }
    report = {"hit_attributes": strong}
    for key, (labels, who) in sets.items():
        report[key] = float(np.mean(preference_hits(labels, who, users, strong)))
    report["hit_rate_random_items"] = random_item_hit_rate(catalogue, owners, users, strong)
    judged = sets["hit_rate"][0]
    for name in data.info.user_preferences:
        if name in judged:
            hits = preference_hits(judged, user_ids, users, [name])
            report[f"hit_rate_{name}"] = float(np.mean(hits))
    return report


def evaluate_audio_generation(
    model, data, judge, num_per_condition=2, diversity_conditions=50, seed=0, temperature=1.0
):
    """Scores a trained `ConditionalAudioGenerator` with an independent `AudioJudge`.

    The model's conditioning picks the conditions of the conditional accuracy
    (`Conditioning.evaluation_conditions`): the judge's held-out items' attributes,
    or the test split's users (attributes sampled from their predicted preferences,
    then personalisation hit-rates are reported too).

    The Fréchet distance asks for one sound per item of one half of the catalogue
    (`real_reference_halves`; its attributes, or what the conditioning evaluates on
    those items) and compares them with the real sounds of the other half.

    Returns a dict with ``conditional_accuracy`` (per attribute), ``fd_judge``
    (the FAD-style Fréchet distance on our judge's features),
    ``fd_judge_real_reference`` (real half vs. real half) and their ratio
    ``fd_judge_ratio``; ``griffin_lim_reference`` (the judge's accuracy on the
    held-out items' real sounds after a round trip through the model's
    spectrogram and Griffin-Lim, and the Fréchet distance of the first half so
    reconstructed: what a perfect spectrogram generator would score);
    ``diversity`` and ``diversity_real_reference`` (real items with identical
    attributes); ``num_sounds``; and the hit-rates for users.
    """
    catalogue = data.catalogue()
    _, held_out_ids = judge_split(catalogue.num_items)
    audio = catalogue.audio.numpy()
    labels = catalogue.labels
    attributes = list(model.attributes)
    half_a, half_b = real_reference_halves(catalogue.num_items)
    real_b = judge.embed(audio[half_b])
    report = {
        "condition": model.condition,
        "fd_judge_real_reference": frechet_distance(judge.embed(audio[half_a]), real_b),
    }
    conditioning = model.conditioning
    asked = conditioning.evaluation_conditions(
        model, data, held_out_ids, num_per_condition, seed, temperature, diversity_conditions
    )
    sounds = model.generate(asked.conditions, num=asked.num, seed=seed + 1)
    sounds = sounds.reshape((-1, sounds.shape[-1]))
    report["conditional_accuracy"] = judge.accuracy(sounds, asked.requested)
    if asked.user_ids is not None:
        report.update(
            audio_personalisation_report(
                judge, data, sounds, asked.requested, asked.user_ids, asked.targets
            )
        )
    report.update(asked.report)

    if conditioning.takes_labels:
        half_conditions = {name: labels[name][half_a] for name in attributes}
    else:
        half_conditions = conditioning.evaluation_conditions(
            model, data, half_a, 1, seed, temperature, 1
        ).conditions
    generated = model.generate(half_conditions, num=1, seed=seed + 3)
    report["fd_judge"] = frechet_distance(judge.embed(generated), real_b)
    report["fd_judge_ratio"] = report["fd_judge"] / max(report["fd_judge_real_reference"], 1e-12)

    rebuilt = np.zeros_like(audio)
    needed = np.union1d(held_out_ids, half_a)
    rebuilt[needed] = griffin_lim_round_trip(model, audio[needed])
    report["griffin_lim_reference"] = {
        "conditional_accuracy": judge.accuracy(
            rebuilt[held_out_ids], {n: labels[n][held_out_ids] for n in attributes}
        ),
        "fd_judge": frechet_distance(judge.embed(rebuilt[half_a]), real_b),
    }

    diverse = model.generate(asked.diversity, num=8, seed=seed + 2, **asked.diversity_kwargs)
    groups = np.repeat(np.arange(len(diverse)), diverse.shape[1])
    report["diversity"] = diversity(judge.embed(diverse.reshape(-1, diverse.shape[-1])), groups)
    combo = np.stack([labels[name] for name in attributes], axis=1)
    _, same_attributes = np.unique(combo, axis=0, return_inverse=True)
    report["diversity_real_reference"] = diversity(judge.embed(audio), same_attributes.reshape(-1))
    report["num_sounds"] = int(len(sounds))
    return report
