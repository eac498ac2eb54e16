"""The multimodal item tower: an item's image, text and audio → one L2-normalised embedding.

Where it sits in the data flow: it reads the feature dicts of ``mmrec.data``
(``image`` uint8 ``[B, H, W, 3]``, ``text`` ``tf.string [B]``, ``audio``
float32 ``[B, samples]``), runs one encoder per modality and a fusion layer.
The recommender's item tower and the generators' conditioning build on it.

The encoders and the fusion are ``keras.ops`` and run under any backend;
tokenising ``tf.string`` text needs tensorflow-text, so with a ``vocabulary``
the encoder needs the TensorFlow backend, and without one (token-id text) it
does not import TensorFlow.
"""

import inspect

import keras

from mmrec.formats import MODALITIES
from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.layers.encoders import AudioEncoder, ImageEncoder, TextEncoder
from mmrec.layers.fusion import FUSIONS

# The encoder of each modality (its constructor arguments are what encoder_config may set).
ENCODERS = {"image": ImageEncoder, "text": TextEncoder, "audio": AudioEncoder}


def encoder_arguments(cls) -> tuple[str, ...]:
    """The keyword arguments of an encoder's constructor (what encoder_config may set)."""
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # not self
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in parameters if p.kind in named and p.name not in ("name", "dtype"))


@keras.saving.register_keras_serializable(package="mmrec")
class MultimodalItemEncoder(keras.Model):
    """Functional item encoder: per-modality encoders → fusion → L2-normalised embedding.

    Inputs (a dict; named ``keras.Input``\\ s, which become the names of an
    exported signature's inputs; other keys of a feature dict are ignored):

    * ``"image"``: uint8 ``[B, H, W, 3]`` → `ImageEncoder`;
    * ``"text"``: ``tf.string [B]`` tokenised inside by `TextTokenizer` when a
      ``vocabulary`` is given, else int token ids ``[B, sequence_length]`` →
      `TextEncoder`;
    * ``"audio"``: float32 ``[B, samples]`` → `AudioEncoder`;
    * with ``use_modality_mask=True``, also ``"<modality>_mask"`` float ``[B]``
      (1 = present, 0 = missing) for each modality, passed to the fusion layer,
      whose docstring states what a missing modality means.

    Output: ``[B, embedding_dim]`` float32, unit L2 norm (named ``item_embedding``).

    Args:
        modalities: the modalities to use, a subset of ``("image", "text", "audio")``.
        fusion: ``"concat"``, ``"weighted"``, ``"gated"`` or ``"attention"``.
        embedding_dim: size of each encoder's output and of the item embedding.
        vocabulary: WordPiece vocabulary (list or ``vocab.txt`` path) for string
            text input; ``None`` for token-id input (then give
            ``encoder_config["text"]["vocabulary_size"]``).
        encoder_config: optional per-modality keyword arguments of the
            encoders (entries for unused modalities are ignored), e.g.
            ``{"image": {"filters": [8, 16]}, "text": {"kind": "lstm"}}``.
        use_modality_mask: add the ``"<modality>_mask"`` inputs.
        dtype: the dtype policy (or its name) of the encoders and the fusion
            (the embedding is float32); ``None`` takes the global policy.

    Example:

    >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "red", "blue", "star", "heart"]
    >>> encoder = MultimodalItemEncoder(
    ...     modalities=("image", "text"), fusion="attention", embedding_dim=8,
    ...     vocabulary=vocab,
    ...     encoder_config={"image": {"filters": [4]}, "text": {"hidden_dim": 8}})
    >>> items = {"image": np.zeros((2, 16, 16, 3), "uint8"),
    ...          "text": np.array(["red star", "blue heart"])}
    >>> embeddings = encoder(items)
    >>> tuple(embeddings.shape), np.linalg.norm(embeddings, axis=-1).round(4).tolist()
    ((2, 8), [1.0, 1.0])
    """

    def __init__(
        self,
        modalities=MODALITIES,
        fusion="concat",
        embedding_dim=64,
        vocabulary=None,
        encoder_config=None,
        use_modality_mask=False,
        dtype=None,
        **kwargs,
    ):
        if isinstance(modalities, str) or not modalities:
            raise ValueError(
                f"Expected modalities to be a non-empty subset of {MODALITIES}. "
                f"Received: modalities={modalities!r}"
            )
        modalities = tuple(modalities)
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown or len(set(modalities)) != len(modalities):
            raise ValueError(
                f"Expected modalities to be distinct names among {MODALITIES}. "
                f"Received: modalities={modalities!r}"
            )
        if fusion not in FUSIONS:
            raise ValueError(
                f"Expected fusion to be one of {tuple(FUSIONS)}. Received: fusion={fusion!r}"
            )
        encoder_config = dict(encoder_config or {})
        unknown = [m for m in encoder_config if m not in MODALITIES]
        if unknown:
            raise ValueError(
                f"Expected encoder_config keys among {MODALITIES}. "
                f"Received: encoder_config keys {sorted(encoder_config)}"
            )
        # Settings of modalities that are not used are ignored (and not stored).
        encoder_config = {m: dict(c) for m, c in encoder_config.items() if m in modalities}
        for m, config in encoder_config.items():
            # A typo would otherwise reach the Layer's **kwargs and train with the defaults.
            valid = encoder_arguments(ENCODERS[m])
            typos = sorted(set(config) - set(valid))
            if typos:
                raise ValueError(
                    f"Expected encoder_config['{m}'] keys among {list(valid)}. "
                    f"Received: unknown keys {typos}"
                )
        text_config = encoder_config.get("text", {})
        if "text" in modalities and vocabulary is None and "vocabulary_size" not in text_config:
            raise ValueError(
                "Expected a vocabulary (for tf.string text) or "
                "encoder_config['text']['vocabulary_size'] (for token-id text). "
                "Received: vocabulary=None and no vocabulary_size"
            )
        if (
            "text" in modalities
            and vocabulary is not None
            and keras.backend.backend() != "tensorflow"
        ):
            raise ValueError(
                "Expected token-id text (encoder_config['text']['vocabulary_size'], no "
                "vocabulary) on a backend other than TensorFlow: tokenising tf.string text needs "
                "tensorflow-text. Tokenise in the tf.data pipeline instead. Received: a "
                f"vocabulary with backend={keras.backend.backend()!r}"
            )

        policy = resolve_policy(dtype)

        # === Layers ===
        self.tokenizer = None
        if "text" in modalities and vocabulary is not None:
            # Imported here: tensorflow-text is needed only for string text.
            from mmrec.layers.preprocessing import TextTokenizer

            self.tokenizer = TextTokenizer(
                vocabulary, sequence_length=text_config.get("sequence_length", 32), name="tokenizer"
            )
            vocabulary = self.tokenizer.get_vocabulary()  # a path becomes the token list
            text_config.setdefault("vocabulary_size", self.tokenizer.vocabulary_size())
        self.encoders = {}
        for m in modalities:
            config = {"embedding_dim": embedding_dim, **encoder_config.get(m, {})}
            if m == "text":
                config = {**config, **text_config}
            self.encoders[m] = ENCODERS[m](**config, name=f"{m}_encoder", dtype=policy)
        self.fusion = FUSIONS[fusion](
            modalities, output_dim=embedding_dim, name="fusion", dtype=policy
        )
        self.normalize = keras.layers.UnitNormalization(
            axis=-1, name="item_embedding", dtype="float32"
        )

        # === Functional Model ===
        inputs = {}
        if "image" in modalities:
            inputs["image"] = keras.Input(shape=(None, None, 3), dtype="uint8", name="image")
        if "text" in modalities:
            if self.tokenizer is not None:
                inputs["text"] = keras.Input(shape=(), dtype="string", name="text")
            else:
                length = self.encoders["text"].sequence_length
                inputs["text"] = keras.Input(shape=(length,), dtype="int32", name="text")
        if "audio" in modalities:
            inputs["audio"] = keras.Input(shape=(None,), dtype="float32", name="audio")
        masks = None
        if use_modality_mask:
            masks = {
                m: keras.Input(shape=(), dtype="float32", name=f"{m}_mask") for m in modalities
            }
            inputs.update({f"{m}_mask": masks[m] for m in modalities})

        embeddings = {}
        for m in modalities:
            x = inputs[m]
            if m == "text" and self.tokenizer is not None:
                x = self.tokenizer(x)
            embeddings[m] = self.encoders[m](x)
        outputs = self.normalize(self.fusion(embeddings, mask=masks))
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # Functional Model.__init__ drops `dtype`; the policy is this model's own.
        self.dtype_policy = policy

        # === Config ===
        self.modalities = modalities
        self.fusion_kind = fusion
        self.embedding_dim = embedding_dim
        self.vocabulary = vocabulary
        self.encoder_config = encoder_config
        self.use_modality_mask = use_modality_mask

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "modalities": list(self.modalities),
            "fusion": self.fusion_kind,
            "embedding_dim": self.embedding_dim,
            "vocabulary": self.vocabulary,
            "encoder_config": self.encoder_config,
            "use_modality_mask": self.use_modality_mask,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
