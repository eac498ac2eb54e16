"""The text generator's ``generate_text`` signature: exported, validated, served over REST.

A tiny attribute-conditioned `ConditionalTextGenerator` (one training step) is
exported once and validated in a fresh TensorFlow + tensorflow-text process; a
user-conditioned one is exported beside it. Loaded with `tf.saved_model.load`,
the signature must write what ``model.generate`` writes for the same seeds, and
`mmrec serve` must return its ``text`` as JSON strings.
"""

import http.client
import json
import os

import keras
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

import mmrec
from mmrec.cli import main
from mmrec.export import build_endpoints, export_saved_model
from mmrec.layers import UserEncoder
from mmrec.models.text_generation import ConditionalTextGenerator
from mmrec.serving import Client
from mmrec.testing import serving

TINY_DECODER = {"hidden_dim": 16, "num_layers": 1, "num_heads": 2}
WARMUP = os.path.join("assets.extra", "tf_serving_warmup_requests")
STAR = {"shape": 4, "colour": 0, "pattern": 2, "size": 2}  # a large red star with dots


@pytest.fixture(scope="module")
def data(tiny_shapes):
    return mmrec.data.load(tiny_shapes)


def tiny_text_generator(data, **kwargs):
    keras.utils.set_random_seed(0)
    model = ConditionalTextGenerator.from_dataset(
        data, decoder=TINY_DECODER, embedding_dim=4, seed=0, **kwargs
    )
    model.compile()
    model.fit(
        data.generation_pairs("train", batch_size=8, repeat=True), steps_per_epoch=1, verbose=0
    )
    return model


def tiny_user_encoder(num_items, dim=8):
    history = keras.Input(shape=(None,), dtype="int32", name="history")
    items = keras.layers.Embedding(num_items, dim)(keras.ops.maximum(history, 0))
    user = UserEncoder(name="pool")(items, item_ids=history)
    return keras.Model({"history": history}, user, name="user_encoder")


@pytest.fixture(scope="module")
def attribute_model(data):
    return tiny_text_generator(data, condition="attributes")


@pytest.fixture(scope="module")
def exported(attribute_model, tmp_path_factory):
    """``(base folder, version folder)`` of the attribute model, exported and validated."""
    base = tmp_path_factory.mktemp("savedmodels")
    return base, export_saved_model(attribute_model, base, name="text_generator")


@pytest.fixture(scope="module")
def signature(exported):
    return tf.saved_model.load(exported[1]).signatures["generate_text"]


def labels(values, rows):
    return {f"label_{k}": tf.constant([v] * rows, tf.int32) for k, v in values.items()}


def texts(outputs):
    return [t.decode("utf-8") for t in outputs["text"].numpy().tolist()]


def test_export_writes_generate_text_with_the_vocabulary_and_a_warmup_request(
    attribute_model, exported
):
    base, path = exported
    assert path == os.path.join(base, "text_generator", "1")
    with open(os.path.join(path, "assets", "vocab.txt")) as f:
        assert f.read().splitlines() == attribute_model.tokenizer.get_vocabulary()
    records = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(os.path.join(path, WARMUP))
    ]
    requests = [r.predict_log.request for r in records]
    assert [r.model_spec.signature_name for r in requests] == ["generate_text"]
    assert set(requests[0].inputs) == {"seed", *(f"label_{a}" for a in STAR)}
    assert requests[0].inputs["seed"].dtype == tf.int32.as_datatype_enum
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"generate_text", "serving_default"}
    inputs = loaded.signatures["generate_text"].structured_input_signature[1]
    assert inputs["seed"].dtype == tf.int32 and inputs["label_shape"].shape.as_list() == [None]


def test_the_signature_writes_seeded_strings_equal_to_generate(attribute_model, signature):
    out = signature(**labels(STAR, 4), seed=tf.constant([3, 4, 3, 9], tf.int32))
    assert out["text"].dtype == tf.string and out["text"].shape == (4,)
    written = texts(out)
    assert all(written) and written[0] == written[2]  # same condition and seed → same text
    again = texts(signature(**labels(STAR, 2), seed=tf.constant([9, 3], tf.int32)))
    assert again == [written[3], written[0]]  # row i depends on seed[i] only
    assert len(set(texts(signature(**labels(STAR, 6), seed=tf.range(6))))) > 1
    assert attribute_model.generate(STAR, num=2, seed=3) == written[:2]
    # Names and ids alike; a batch of conditions is a list of lists.
    named = {"shape": "star", "colour": "red", "pattern": "dots", "size": "large"}
    assert attribute_model.generate(named, num=1, seed=9) == [written[3]]


def test_greedy_endpoint_equals_greedy_generate(data, attribute_model):
    greedy = ConditionalTextGenerator.from_config(
        {**attribute_model.get_config(), "sampler": "greedy"}
    )
    greedy.set_weights(attribute_model.get_weights())
    endpoints, vocabulary = build_endpoints(greedy)
    assert [e.name for e in endpoints] == ["generate_text"]
    assert vocabulary == attribute_model.tokenizer.get_vocabulary()
    endpoint = tf.function(endpoints[0].fn)
    out = endpoint({**labels(STAR, 2), "seed": tf.constant([5, 6], tf.int32)})
    assert texts(out) == greedy.generate(STAR, num=2, seed=5)


def test_out_of_range_labels_fail_naming_the_range(signature):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"Expected label_shape in \[0, 8\)"):
        signature(**labels({**STAR, "shape": 8}, 1), seed=tf.constant([0], tf.int32))


def test_user_conditioned_export_samples_attributes_and_validates(data, tmp_path):
    encoder = tiny_user_encoder(data.metadata.num_items)
    model = tiny_text_generator(data, condition="user", user_encoder=encoder)
    path = export_saved_model(model, tmp_path, name="user_text")  # validated
    signature = tf.saved_model.load(path).signatures["generate_text"]
    history = tf.constant([[3, 17, 42, -1], [3, 17, 42, -1], [5, -1, -1, -1]], tf.int32)
    out = signature(history=history, seed=tf.constant([7, 7, 8], tf.int32))
    assert set(out) == {"text", *(f"label_{a}" for a in STAR)}
    assert out["text"].dtype == tf.string and out["text"].shape == (3,)
    written = texts(out)
    assert written[0] == written[1]
    for row in range(3):  # the text is what generate writes for the sampled attributes
        sampled = {a: int(out[f"label_{a}"][row]) for a in STAR}
        seed = [7, 7, 8][row]
        assert model.generate(sampled, num=1, seed=seed) == [written[row]]
    with pytest.raises(tf.errors.InvalidArgumentError, match="Expected history item ids >= 0"):
        signature(history=tf.constant([[3, -2]], tf.int32), seed=tf.constant([0], tf.int32))


def test_explanation_export_takes_a_history_and_an_item(data, tmp_path):
    model = tiny_text_generator(data, condition="explanation")
    path = export_saved_model(model, tmp_path, name="explainer")  # validated
    signature = tf.saved_model.load(path).signatures["generate_text"]
    out = signature(
        history=tf.constant([[3, 17, 42], [5, -1, -1]], tf.int32),
        item_id=tf.constant([7, 9], tf.int32),
        seed=tf.constant([1, 2], tf.int32),
    )
    assert set(out) == {"text"}
    assert texts(out)[0] == model.generate(([3, 17, 42], 7), num=1, seed=1)[0]
    assert texts(out)[1] == model.generate(([5], 9), num=1, seed=2)[0]


# --- served by `mmrec serve`, queried by `mmrec predict` ------------------------------------


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    base, _ = exported
    yield from serving(base, tmp_path_factory.mktemp("server") / "server.log")


def test_rest_returns_the_signatures_text_as_json_strings(served, signature):
    host, port = served["rest"].rsplit(":", 1)
    body = {
        "signature_name": "generate_text",
        "inputs": {**{f"label_{k}": [v, v] for k, v in STAR.items()}, "seed": [3, 11]},
    }
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request("POST", "/v1/models/text_generator:predict", json.dumps(body))
        response = connection.getresponse()
        status, payload = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 200, payload
    expected = texts(signature(**labels(STAR, 2), seed=tf.constant([3, 11], tf.int32)))
    assert payload["outputs"] == expected  # one output: the bare list of strings
    with Client(served["rest"]) as client:
        out = client.predict("text_generator", {**labels(STAR, 1), "seed": [3]}, "generate_text")
    assert out["text"].tolist() == [expected[0].encode("utf-8")]


def test_a_request_without_seed_is_answered_with_seeds_0_to_b(served, signature):
    with Client(served["rest"]) as client:
        out = client.predict("text_generator", labels(STAR, 3), "generate_text")
    expected = texts(signature(**labels(STAR, 3), seed=tf.constant([0, 1, 2], tf.int32)))
    assert [t.decode("utf-8") for t in out["text"].tolist()] == expected


def test_mmrec_predict_prints_the_served_descriptions(served, signature, capsys):
    attributes = ",".join(f"{k}={v}" for k, v in STAR.items())
    args = ["predict", "--server", served["rest"], "--model", "text_generator"]
    assert main([*args, "--attributes", attributes, "--count", "3", "--seed", "4"]) == 0
    expected = texts(signature(**labels(STAR, 3), seed=tf.constant([4, 5, 6], tf.int32)))
    assert capsys.readouterr().out.splitlines() == expected
    assert main([*args, "--attributes", attributes, "--png", "x.png"]) == 2
    assert "generates descriptions, not images: drop --png" in capsys.readouterr().err
