"""The multimodal item encoder backbone (mmrec/layers/item_encoder.py)."""

import doctest

import numpy as np
import pytest
import tensorflow as tf

import mmrec.layers.item_encoder as item_encoder
from mmrec.layers import MultimodalItemEncoder
from mmrec.testing import dtype_policies, run_layer_checks

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "red", "blue", "star", "heart", "on"]
TINY = {
    "image": {"filters": [4], "image_size": 8},
    "text": {"hidden_dim": 8, "sequence_length": 6},
    "audio": {"filters": [4], "num_mel_bins": 8},
}
BATCH = 3


def _items(masks=False):
    rng = np.random.default_rng(0)
    items = {
        "image": rng.integers(0, 256, (BATCH, 16, 16, 3)).astype("uint8"),
        "text": np.array(["a red star", "blue heart on red", ""]),
        "audio": rng.uniform(-1, 1, (BATCH, 800)).astype("float32"),
    }
    if masks:
        items.update(
            {
                "image_mask": np.ones(BATCH, "float32"),
                "text_mask": np.array([1, 0, 1], "float32"),
                "audio_mask": np.array([0, 1, 1], "float32"),
            }
        )
    return items


def test_docstring_examples_run():
    result = doctest.testmod(item_encoder, extraglobs={"np": np, "tf": tf})
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("fusion", ["concat", "weighted", "gated", "attention"])
def test_standard_checks(fusion, tmp_path):
    run_layer_checks(
        MultimodalItemEncoder,
        {
            "fusion": fusion,
            "embedding_dim": 8,
            "vocabulary": VOCAB,
            "encoder_config": TINY,
            "use_modality_mask": True,
        },
        _items(masks=True),
        expected_output_shape=(BATCH, 8),
        # mixed_bfloat16 is slow on CPU; the mixed checks of every part run in their own tests.
        run_mixed_precision=fusion == "attention",
        tmp_path=tmp_path,
    )


def test_dtype_reaches_every_encoder_and_the_fusion():
    encoder = MultimodalItemEncoder(
        fusion="attention",
        embedding_dim=8,
        vocabulary=VOCAB,
        encoder_config=TINY,
        dtype="mixed_bfloat16",
    )
    policies = dtype_policies(encoder)
    # Float32 by design: each encoder's output projection and the item embedding;
    # the tokenizer computes int32 ids.
    exceptions = {"projection": "float32", "item_embedding": "float32", "tokenizer": "int32"}
    for name, policy in policies:
        assert policy == exceptions.get(name, "mixed_bfloat16"), (name, policy)
    assert MultimodalItemEncoder.from_config(encoder.get_config()).dtype_policy.name == (
        "mixed_bfloat16"
    )
    out = encoder(_items())
    assert out.dtype == "float32"
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-3)


def test_embeddings_are_unit_norm_and_inputs_named():
    encoder = MultimodalItemEncoder(embedding_dim=8, vocabulary=VOCAB, encoder_config=TINY)
    assert sorted(i.name for i in encoder.inputs) == ["audio", "image", "text"]
    assert [i.dtype for i in sorted(encoder.inputs, key=lambda i: i.name)] == [
        "float32",
        "uint8",
        "string",
    ]
    out = encoder(_items()).numpy()
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, rtol=1e-5)
    assert encoder.get_config()["vocabulary"] == VOCAB


def test_vocabulary_path_and_token_id_text(tmp_path):
    from mmrec.data.vocabulary import save_vocabulary
    from mmrec.layers import TextTokenizer

    save_vocabulary(VOCAB, tmp_path / "vocab.txt")
    by_path = MultimodalItemEncoder(
        ("text",), embedding_dim=8, vocabulary=str(tmp_path / "vocab.txt"), encoder_config=TINY
    )
    assert by_path.get_config()["vocabulary"] == VOCAB  # portable: the tokens, not the path
    by_ids = MultimodalItemEncoder(
        ("text",),
        embedding_dim=8,
        encoder_config={"text": {**TINY["text"], "vocabulary_size": len(VOCAB)}},
    )
    assert by_ids.inputs[0].dtype == "int32" and tuple(by_ids.inputs[0].shape) == (None, 6)
    by_ids.set_weights(by_path.get_weights())
    texts = _items()["text"]
    ids = TextTokenizer(VOCAB, sequence_length=6)(tf.constant(texts))
    np.testing.assert_allclose(by_ids({"text": ids}), by_path({"text": texts}), atol=1e-6)


@pytest.mark.parametrize("fusion", ["weighted", "attention"])
def test_masked_modality_equals_encoder_without_it(fusion):
    full = MultimodalItemEncoder(
        fusion=fusion,
        embedding_dim=8,
        vocabulary=VOCAB,
        encoder_config=TINY,
        use_modality_mask=True,
    )
    reduced = MultimodalItemEncoder(
        ("image", "text"), fusion=fusion, embedding_dim=8, vocabulary=VOCAB, encoder_config=TINY
    )
    # Same weights for everything the reduced encoder has.
    for m in ("image", "text"):
        reduced.encoders[m].set_weights(full.encoders[m].get_weights())
    fused_full, fused_reduced = full.fusion, reduced.fusion
    if fusion == "weighted":
        fused_full.logits.assign([0.3, -0.2, 0.9])
        for m in ("image", "text"):
            fused_reduced.projections[m].set_weights(fused_full.projections[m].get_weights())
        fused_reduced.logits.assign(fused_full.logits[:2])
    else:
        for m in ("image", "text"):
            fused_reduced.projections[m].set_weights(fused_full.projections[m].get_weights())
            fused_reduced.type_embeddings[m].assign(fused_full.type_embeddings[m])
        fused_reduced.block.set_weights(fused_full.block.get_weights())
        fused_reduced.output_projection.set_weights(fused_full.output_projection.get_weights())

    items = _items(masks=True)
    items["text_mask"] = np.ones(BATCH, "float32")
    items["audio_mask"] = np.zeros(BATCH, "float32")
    items["audio"] = np.full_like(items["audio"], np.nan)  # a missing waveform is never read
    masked = full(items).numpy()
    without = reduced({"image": items["image"], "text": items["text"]}).numpy()
    assert np.isfinite(masked).all()
    np.testing.assert_allclose(masked, without, atol=1e-5)


def test_single_modality_subsets():
    audio_only = MultimodalItemEncoder(
        ("audio",), fusion="gated", embedding_dim=8, encoder_config=TINY
    )
    assert [i.name for i in audio_only.inputs] == ["audio"]
    assert list(audio_only.get_config()["encoder_config"]) == ["audio"]
    out = audio_only({"audio": _items()["audio"]})
    assert tuple(out.shape) == (BATCH, 8)


def test_arguments_are_validated():
    with pytest.raises(ValueError, match=r"Expected fusion to be one of \('concat', 'weighted'"):
        MultimodalItemEncoder(fusion="sum", vocabulary=VOCAB)
    with pytest.raises(ValueError, match=r"Expected modalities to be distinct names among"):
        MultimodalItemEncoder(modalities=("image", "video"))
    with pytest.raises(ValueError, match=r"Expected modalities to be a non-empty subset"):
        MultimodalItemEncoder(modalities="image")
    with pytest.raises(ValueError, match=r"Expected a vocabulary \(for tf.string text\)"):
        MultimodalItemEncoder(modalities=("text",))
    with pytest.raises(ValueError, match=r"Expected encoder_config keys among \('image'"):
        MultimodalItemEncoder(modalities=("image",), encoder_config={"video": {}})
    # A typo inside a modality's settings (once trained silently with the defaults).
    with pytest.raises(ValueError, match=r"keys among \['embedding_dim', 'filters', 'image_si"):
        MultimodalItemEncoder(modalities=("image",), encoder_config={"image": {"filtres": [4]}})


def test_exported_saved_model_serves_the_same_embeddings(tmp_path):
    encoder = MultimodalItemEncoder(
        fusion="attention", embedding_dim=8, vocabulary=VOCAB, encoder_config=TINY
    )
    items = {k: tf.constant(v) for k, v in _items().items()}
    encoder.export(str(tmp_path / "item_encoder"), format="tf_saved_model", verbose=False)
    # Reloaded with TensorFlow alone: tokenisation and log-mel are inside the graph.
    reloaded = tf.saved_model.load(str(tmp_path / "item_encoder"))
    np.testing.assert_allclose(reloaded.serve(items), encoder(items), atol=1e-5)
