"""Serving signatures: the named functions an exported mmrec SavedModel answers.

Where it sits in the data flow: between a trained model (`Recommender`,
`ConditionalGAN`, `ConditionalVAE`, `ConditionalTextGenerator`,
`ConditionalAudioGenerator` or any functional `keras.Model`) and
`mmrec.export.export_saved_model`, which registers these functions with
`keras.export.ExportArchive`. Each `Endpoint` is one signature: a function of a
dict of named tensors returning a dict of named tensors, its input specs (whose
names become the signature's input names), and a small example request used as
warm-up record and for validation.

Everything here runs inside the exported graph, so it uses only TensorFlow and
tensorflow-text ops (TF Serving runs no Python): text is tokenised in the graph,
PNG bytes are encoded with `tf.io.encode_png`, generated token ids are
detokenised with tensorflow-text, spectrograms become waveforms by Griffin-Lim
(``tf.signal``) and WAV bytes with `tf.audio.encode_wav`, and generator noise
(and a text generator's sampling) is drawn with stateless random ops from a
per-row seed, so that one request always gives the same images, texts and sounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mmrec.layers.preprocessing import TextTokenizer
from mmrec.layers.user import PAD_ID
from mmrec.models.attributes import label_key, num_classes
from mmrec.models.audio_generation import ConditionalAudioGenerator
from mmrec.models.image_generation import ConditionalImageModel
from mmrec.models.item_generation import MultimodalItemGenerator
from mmrec.models.recommender import Recommender, top_k_excluding
from mmrec.models.seeding import seeded_categorical, seeded_noise
from mmrec.models.text_generation import ConditionalTextGenerator


@dataclasses.dataclass
class Endpoint:
    """One serving signature.

    Attributes:
        name: the signature name (``recommend``, ``generate_image``, …).
        fn: ``dict[str, tf.Tensor] -> dict[str, tf.Tensor]``, traced into the graph.
        input_signature: input name → `tf.TensorSpec` (the spec's name is the input name).
        example: input name → NumPy array, a valid request (warm-up and validation).
    """

    name: str
    fn: Callable
    input_signature: dict
    example: dict


def build_endpoints(model, k=10):
    """The signatures for ``model``, first one first (it is also ``serving_default``).

    Returns:
        ``(endpoints, vocabulary)``: a list of `Endpoint`, and the WordPiece
        vocabulary the graph tokenises with (a list of tokens), or None.
    """
    if isinstance(model, Recommender):
        return recommender_endpoints(model, k), _vocabulary(model.tokenizer)
    if isinstance(model, ConditionalImageModel):
        tokenizer = getattr(model.conditioner, "tokenizer", None)
        return generator_endpoints(model), _vocabulary(tokenizer)
    if isinstance(model, ConditionalTextGenerator):
        tokenizer = model.tokenizer if isinstance(model.tokenizer, TextTokenizer) else None
        return text_generator_endpoints(model), _vocabulary(tokenizer)
    if isinstance(model, ConditionalAudioGenerator):
        return audio_generator_endpoints(model), None
    if isinstance(model, MultimodalItemGenerator):
        tokenizer = model.text_generator.tokenizer
        tokenizer = tokenizer if isinstance(tokenizer, TextTokenizer) else None
        return item_generator_endpoints(model), _vocabulary(tokenizer)
    if isinstance(model, keras.Model) and getattr(model, "inputs", None):  # functional
        return [functional_endpoint(model)], None
    raise ValueError(
        "Expected a Recommender, a ConditionalGAN, a ConditionalVAE, a "
        "ConditionalTextGenerator, a ConditionalAudioGenerator, a "
        "MultimodalItemGenerator or a functional "
        f"keras.Model with named inputs. Received: {type(model).__name__}"
    )


def _vocabulary(tokenizer):
    return None if tokenizer is None else tokenizer.get_vocabulary()


def _spec(shape, dtype, name):
    return tf.TensorSpec(shape, dtype, name=name)


def _float32(tensor):
    return tf.cast(tensor, tf.float32)


# --- histories --------------------------------------------------------------------------


def fit_history(history, length=None, num_items=None):
    """Padded histories ``int32 [B, L]`` (-1 = padding) → ``[B, length]``, in the graph.

    Padding is removed and the ``length`` most recent (right-most) items of each
    row are kept, padded on the right with -1 — what `Recommender.recommend` does
    in Python. With ``num_items``, ids outside ``[0, num_items)`` other than -1
    fail the request with a message that names the valid range.
    """
    history = tf.cast(history, tf.int32)
    valid_low = tf.reduce_all(history >= PAD_ID)
    message = f"Expected history item ids >= 0, or {PAD_ID} for padding."
    checks = [tf.debugging.Assert(valid_low, [message])]
    if num_items is not None:
        message = f"Expected history item ids in [0, {num_items}) or {PAD_ID} for padding."
        checks = [tf.debugging.Assert(valid_low & tf.reduce_all(history < num_items), [message])]
    with tf.control_dependencies(checks):
        history = tf.identity(history)
    if length is None:
        return history
    kept = tf.ragged.boolean_mask(history, history != PAD_ID)[:, -length:]
    return kept.to_tensor(default_value=PAD_ID, shape=[None, length])


def _example_histories(num_items, width=4):
    ids = list(range(min(3, num_items)))
    first = ids + [PAD_ID] * (width - len(ids))
    second = [ids[-1]] + [PAD_ID] * (width - 1)
    return np.array([first, second], dtype="int32")


# --- recommender --------------------------------------------------------------------------


def recommender_endpoints(rec, k=10):
    """``recommend``, ``embed_user``, ``embed_item`` (and ``lookup_item_ids``) for a `Recommender`.

    Users are embedded by `Recommender.build_user_encoder` — the model's one user
    encoder, whose item-embedding table (the catalogue embedded once) is also the
    table ``recommend`` ranks — so serving a user costs one user-tower pass and
    one matrix product, not a pass over the whole catalogue.

    * ``recommend``: ``history`` int32 ``[B, L]`` (padded with -1) → ``item_ids``
      int32 ``[B, k]`` and ``scores`` float32 ``[B, k]`` (the model's logits,
      ``cos / temperature + item_bias``), best first, the history's items excluded;
      plus ``item_keys`` tf.string ``[B, k]``, the items' external keys, when the
      model has `Recommender.item_keys`;
    * ``embed_user``: ``history`` → ``user_embedding`` float32 ``[B, D]``;
    * ``embed_item``: the item's content (``image`` uint8 ``[B, H, W, 3]``,
      ``text`` tf.string ``[B]`` tokenised in the graph, ``audio`` float32
      ``[B, samples]`` — whichever modalities the model has — and ``item_id``
      int32 ``[B]`` when it has an item-id embedding) → ``item_embedding``
      float32 ``[B, D]``;
    * ``lookup_item_ids``, only for a model with item keys: ``item_keys``
      tf.string ``[B, L]`` (padded with ``""``) → ``item_ids`` int32 ``[B, L]``
      (padding → -1): a history of external keys becomes ``recommend``'s input.
      A key the catalogue lacks fails the request with a message naming it.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"Expected k to be a positive int. Received: k={k!r}")
    k = min(k, rec.num_items)
    user_encoder = rec.build_user_encoder(frozen=True)
    items = user_encoder.get_layer("item_embeddings").embeddings
    bias = None
    if rec.item_bias is not None:
        bias = tf.Variable(ops.convert_to_numpy(rec.item_bias), trainable=False, name="item_bias")
    history_spec = {"history": _spec([None, None], tf.int32, "history")}
    history_example = {"history": _example_histories(rec.num_items)}

    def users(history):
        history = fit_history(history, rec.max_history, rec.num_items)
        return history, _float32(user_encoder({"history": history}, training=False))

    keys = None if rec.item_keys is None else np.array(rec.item_keys, dtype=object)

    def recommend(inputs):
        history, user = users(inputs["history"])
        ids, scores = top_k_excluding(user / rec.temperature, items, history, k, item_bias=bias)
        outputs = {"item_ids": tf.cast(ids, tf.int32), "scores": _float32(scores)}
        if keys is not None:
            outputs["item_keys"] = tf.gather(tf.constant(keys, tf.string), ids)
        return outputs

    def embed_user(inputs):
        return {"user_embedding": users(inputs["history"])[1]}

    item_spec, item_example = _item_inputs(rec)

    def embed_item(inputs):
        return {"item_embedding": _float32(rec.embed_items(inputs, inputs.get("item_id")))}

    endpoints = [
        Endpoint("recommend", recommend, history_spec, history_example),
        Endpoint("embed_user", embed_user, history_spec, history_example),
        Endpoint("embed_item", embed_item, item_spec, item_example),
    ]
    if keys is not None:
        endpoints.append(key_lookup_endpoint(rec.item_keys))
    return endpoints


# Fingerprints of item keys: FarmHash64 modulo this (TF's StringToHashBucketFast).
_FINGERPRINT_BUCKETS = 2**63 - 1


def key_lookup_endpoint(item_keys):
    """``lookup_item_ids``: external item keys → item ids, in the graph.

    Resource-free (no lookup table to track): the keys' fingerprints are sorted
    into a constant, a request's keys are fingerprinted and binary-searched
    (``tf.searchsorted``), and a hit counts only if the key there is the same
    string, so an unknown key is never mistaken for an item.
    """
    fingerprints = tf.strings.to_hash_bucket_fast(item_keys, _FINGERPRINT_BUCKETS).numpy()
    order = np.argsort(fingerprints, kind="stable")
    sorted_fingerprints = fingerprints[order]
    if np.any(sorted_fingerprints[1:] == sorted_fingerprints[:-1]):
        raise ValueError("Expected item keys with distinct 64-bit fingerprints (two collide).")
    sorted_keys = np.array(item_keys, dtype=object)[order]
    # No quotes: TensorFlow escapes them in an assertion's message.
    message = (
        f". Expected keys from the catalogue ({len(item_keys)} items), or empty strings to pad."
    )

    def lookup_item_ids(inputs):
        requested = tf.reshape(inputs["item_keys"], [-1])
        fingerprint = tf.strings.to_hash_bucket_fast(requested, _FINGERPRINT_BUCKETS)
        position = tf.searchsorted(tf.constant(sorted_fingerprints), fingerprint)
        position = tf.minimum(position, len(item_keys) - 1)
        found = tf.equal(tf.gather(tf.constant(sorted_keys, tf.string), position), requested)
        padding = tf.equal(requested, "")
        unknown = tf.boolean_mask(requested, tf.logical_not(found | padding))
        text = tf.strings.reduce_join(unknown[:10], separator=", ")
        error = tf.strings.join(["Unknown item keys: ", text, message])
        with tf.control_dependencies([tf.debugging.Assert(tf.size(unknown) == 0, [error])]):
            ids = tf.where(found, tf.gather(tf.constant(order.astype("int32")), position), PAD_ID)
        return {"item_ids": tf.reshape(ids, tf.shape(inputs["item_keys"]))}

    rows = [item_keys[:3], item_keys[-1:]]
    example = np.full((2, 3), "", dtype=object)
    for i, row in enumerate(rows):
        example[i, : len(row)] = row
    spec = {"item_keys": _spec([None, None], tf.string, "item_keys")}
    return Endpoint("lookup_item_ids", lookup_item_ids, spec, {"item_keys": example})


def _item_inputs(rec):
    """Input specs and an example request (two blank items) for ``embed_item``."""
    specs = {}
    example = {m: ops.convert_to_numpy(v) for m, v in rec.blank_content(2).items()}
    for m in rec.modalities:
        spec = rec.content_spec[m]
        specs[m] = _spec([None, *spec["shape"]], tf.as_dtype(spec["dtype"]), m)
        if spec["dtype"] == "string":
            example[m] = np.array(["" for _ in range(2)], dtype=object)
    example = {m: example[m] for m in rec.modalities}
    if rec.item_ids is not None:
        specs["item_id"] = _spec([None], tf.int32, "item_id")
        example["item_id"] = np.arange(min(2, rec.num_items), dtype="int32")
    return specs, example


# --- generators ---------------------------------------------------------------------------


def encode_png(images):
    """Images in [-1, 1] ``[B, H, W, 3]`` → PNG bytes ``tf.string [B]`` (rounded to 8 bits)."""
    pixels = tf.cast(tf.round((tf.clip_by_value(images, -1.0, 1.0) + 1.0) * 127.5), tf.uint8)
    return tf.map_fn(tf.io.encode_png, pixels, fn_output_signature=tf.string)


def condition_inputs(conditioning):
    """A conditioning's served inputs: ``(input specs, example request)`` (`Endpoint` parts)."""
    specs = {
        name: _spec([None, *shape], tf.as_dtype(dtype), name)
        for name, (shape, dtype) in conditioning.serving_inputs().items()
    }
    return specs, dict(conditioning.example_inputs())


def checked_condition(conditioning, inputs):
    """The served inputs with the history and attribute-id contracts asserted in the graph.

    A ``history`` is fitted to the conditioning's history length (`fit_history`);
    ``label_<attribute>`` ids outside ``[0, classes)`` fail the request with a
    message that names the range.
    """
    return checked_inputs(
        inputs, conditioning.attributes, getattr(conditioning, "history_length", None)
    )


def checked_inputs(inputs, attributes, history_length=None):
    """`checked_condition` for any model: ``attributes`` (name → classes or vocabulary)."""
    out = dict(inputs)
    if "history" in out:
        out["history"] = fit_history(out["history"], history_length)
    for name, classes in num_classes(attributes).items():
        if label_key(name) in out:
            ids = tf.cast(out[label_key(name)], tf.int32)
            valid = tf.reduce_all((ids >= 0) & (ids < classes))
            message = f"Expected {label_key(name)} in [0, {classes})."
            with tf.control_dependencies([tf.debugging.Assert(valid, [message])]):
                out[label_key(name)] = tf.identity(ids)
    return out


def resolve_condition(conditioning, inputs, seeds):
    """Served inputs → ``(network inputs, sampled)``, checked; draws from row i's seed only."""
    return conditioning.resolve(
        checked_condition(conditioning, inputs),
        lambda logits, stream: seeded_categorical(seeds, logits, stream),
    )


def generator_endpoints(model):
    """``generate_image`` for a `ConditionalGAN` or `ConditionalVAE`.

    Inputs, one row per image (every input has the same first dimension B):

    * the condition's served inputs, as its conditioning declares them
      (`Conditioning.serving_inputs`): ``label_<attribute>`` int32 ``[B]`` for each
      attribute (attributes), ``text`` tf.string ``[B]`` (text, tokenised in the
      graph) or ``history`` int32 ``[B, L]`` padded with -1 (users);
    * ``seed`` int64 ``[B]``: row i's noise (and anything the conditioning samples,
      e.g. a user's attributes) depends on ``seed[i]`` only. For N images of one
      condition, send N rows with N different seeds.

    Outputs: ``images`` float32 ``[B, H, W, 3]`` in [-1, 1] and
    ``images_png_bytes`` tf.string ``[B]`` (8-bit PNGs, base64 over REST), plus
    what the conditioning sampled (users: ``label_<attribute>`` int32 ``[B]``).
    Attribute ids out of range and malformed histories fail the request with a
    message that names the valid range.
    """
    conditioning = model.conditioning
    specs, example = condition_inputs(conditioning)
    specs["seed"] = _spec([None], tf.int64, "seed")
    example["seed"] = np.array([0, 1], dtype="int64")

    def generate_image(inputs):
        seeds = inputs["seed"]
        noise = seeded_noise(seeds, model.latent_dim)
        network_inputs, sampled = resolve_condition(conditioning, inputs, seeds)
        images = _float32(model.decode(noise, network_inputs))
        return {**sampled, "images": images, "images_png_bytes": encode_png(images)}

    return [Endpoint("generate_image", generate_image, specs, example)]


def text_generator_endpoints(model):
    """``generate_text`` for a `ConditionalTextGenerator`.

    Inputs, one row per text (every input has the same first dimension B):

    * the condition's served inputs, as for ``generate_image``:
      ``label_<attribute>`` int32 ``[B]`` (attributes) or ``history`` int32
      ``[B, L]`` padded with -1 (users);
    * ``seed`` **int32** ``[B]`` (``generate_image``'s is int64): row i's text (and
      what the conditioning samples, e.g. a user's attributes) depends on
      ``seed[i]`` only. ``model.generate(condition, num, seed=s)`` writes what this
      signature writes for seeds ``s, s + 1, …`` (for a user, given the attributes
      the signature sampled).

    Outputs: ``text`` tf.string ``[B]`` (sampled with the model's sampler and
    detokenised in the graph; a JSON string over REST), plus what the conditioning
    sampled (users: ``label_<attribute>`` int32 ``[B]``). Attribute ids out of
    range and malformed histories fail the request with a message that names the
    valid range.
    """
    conditioning = model.conditioning
    specs, example = condition_inputs(conditioning)
    specs["seed"] = _spec([None], tf.int32, "seed")
    example["seed"] = np.array([0, 1], dtype="int32")

    def generate_text(inputs):
        seeds = inputs["seed"]
        network_inputs, sampled = resolve_condition(conditioning, inputs, seeds)
        condition = conditioning(network_inputs, training=False)
        text = model.detokenize(model.sample_ids(condition, seeds))
        return {**sampled, "text": text}

    return [Endpoint("generate_text", generate_text, specs, example)]


# WAV outputs end in "_bytes", as PNG outputs do: TF Serving's REST API base64-encodes
# only the outputs whose alias ends in "_bytes"; other strings go out as JSON text,
# which binary data does not survive.
WAV_OUTPUT = "audio_wav_bytes"
PNG_OUTPUT = "image_png_bytes"


def encode_wav(sounds, sample_rate):
    """Waveforms float32 ``[B, samples]`` in [-1, 1] → 16-bit PCM mono WAV ``tf.string [B]``."""
    return tf.map_fn(
        lambda sound: tf.audio.encode_wav(sound[:, None], sample_rate),
        tf.clip_by_value(sounds, -1.0, 1.0),
        fn_output_signature=tf.string,
    )


def audio_generator_endpoints(model):
    """``generate_audio`` for a `ConditionalAudioGenerator`.

    Inputs, one row per sound (every input has the same first dimension B), as
    for ``generate_image``: the condition's served inputs (``label_<attribute>``
    int32 ``[B]`` for attributes, ``history`` int32 ``[B, L]`` padded with -1 for
    users) and ``seed`` int64 ``[B]``: row i's noise (and what the conditioning
    samples, e.g. a user's attributes) depends on ``seed[i]`` only;
    ``model.generate(condition, num, seed=s)`` makes, for row i, the sound this
    signature makes for ``seed = s + i`` (for a user, given the attributes it sampled).

    Outputs: ``audio`` float32 ``[B, samples]`` in [-1, 1] (the generator's
    spectrogram, inverted by Griffin-Lim in the graph), ``audio_wav_bytes`` tf.string
    ``[B]`` (16-bit PCM mono WAV at the model's sample rate), plus what the
    conditioning sampled (users: ``label_<attribute>`` int32 ``[B]``). Attribute
    ids out of range and malformed histories fail the request with a message that
    names the valid range.
    """
    conditioning = model.conditioning
    specs, example = condition_inputs(conditioning)
    specs["seed"] = _spec([None], tf.int64, "seed")
    example["seed"] = np.array([0, 1], dtype="int64")
    sample_rate = int(model.sample_rate)

    def generate_audio(inputs):
        seeds = inputs["seed"]
        network_inputs, sampled = resolve_condition(conditioning, inputs, seeds)
        audio = _float32(
            model.decode_waveforms(seeded_noise(seeds, model.latent_dim), network_inputs)
        )
        return {**sampled, "audio": audio, WAV_OUTPUT: encode_wav(audio, sample_rate)}

    return [Endpoint("generate_audio", generate_audio, specs, example)]


def item_generator_endpoints(model):
    """``generate_item`` for a `MultimodalItemGenerator`: one complete item per row.

    Inputs, one row per item: ``history`` int32 ``[B, L]`` padded with -1 (an item
    generator with a preference model; L is free, the most recent items are kept)
    or ``label_<attribute>`` int32 ``[B]`` for every attribute (one without), and
    ``seed`` int32 ``[B]``: row i (its attributes, image noise, text sampling and
    sound noise) depends on ``seed[i]`` only, so
    ``model.generate_item(histories, num=1, seed=s)`` returns what this signature
    returns for seeds ``s, s + 1, …``.

    Outputs: ``image_png_bytes`` (PNG), ``text`` (UTF-8) and ``audio_wav_bytes``
    (16-bit PCM mono WAV at the audio model's rate), tf.string ``[B]`` each, and
    ``label_<attribute>`` int32 ``[B]``: the ONE attribute set the three were made
    of (sampled from the user's predicted preferences, or the given ones). Binary
    outputs end in ``_bytes`` so that TF Serving's REST API base64-encodes them.
    """
    takes_users = model.takes_users
    if takes_users:
        length = model.preference_model.history_length
        specs = {"history": _spec([None, None], tf.int32, "history")}
        example = {"history": np.array([[0, 1, 2], [2, PAD_ID, PAD_ID]], dtype="int32")}
    else:
        length = None
        specs = {label_key(n): _spec([None], tf.int32, label_key(n)) for n in model.attributes}
        example = {label_key(n): np.array([0, 1 % c], "int32") for n, c in _classes(model)}
    specs["seed"] = _spec([None], tf.int32, "seed")
    example["seed"] = np.array([0, 1], dtype="int32")
    sample_rate = model.sample_rate

    def generate_item(inputs):
        seeds = inputs["seed"]
        checked = checked_inputs(
            {k: v for k, v in inputs.items() if k != "seed"}, model.attributes, length
        )
        items = model.sample_items(checked, seeds)
        return {
            **{label_key(n): items[label_key(n)] for n in model.attributes},
            PNG_OUTPUT: encode_png(items["image"]),
            "text": items["text"],
            WAV_OUTPUT: encode_wav(items["audio"], sample_rate),
        }

    return [Endpoint("generate_item", generate_item, specs, example)]


def _classes(model):
    return num_classes(model.attributes).items()


# --- any functional model -----------------------------------------------------------------


def functional_endpoint(model):
    """``serve`` for a functional `keras.Model`: its named inputs → its named outputs.

    Floating outputs are cast to float32 (mixed-precision models included).
    """
    structure = model.input
    tensors = keras.tree.flatten(structure)
    specs, example = {}, {}
    for tensor in tensors:
        dtype = tf.as_dtype(tensor.dtype)
        specs[tensor.name] = _spec(list(tensor.shape), dtype, tensor.name)
        shape = [2] + [1 if d is None else d for d in tensor.shape[1:]]
        if dtype == tf.string:
            example[tensor.name] = np.full(shape, b"", dtype=object)
        else:
            example[tensor.name] = np.zeros(shape, dtype=dtype.as_numpy_dtype)
    output_names = list(model.output_names)

    def serve(inputs):
        if isinstance(structure, dict):
            args = {key: inputs[t.name] for key, t in structure.items()}
        elif isinstance(structure, (list, tuple)):
            args = [inputs[t.name] for t in tensors]
        else:
            args = inputs[tensors[0].name]
        outputs = model(args, training=False)
        if isinstance(outputs, dict):
            named = dict(outputs)
        else:
            named = dict(zip(output_names, keras.tree.flatten(outputs)))
        return {
            name: _float32(value) if value.dtype.is_floating else value
            for name, value in named.items()
        }

    return Endpoint("serve", serve, specs, example)
