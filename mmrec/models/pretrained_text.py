"""A pretrained keras-hub causal LM as the decoder network of conditional text generation.

Where it sits in the data flow: a conditioning network (`mmrec.models.conditioning`)
turns what a text is asked to say into one float32 vector ``[B, condition_dim]``;
a *decoder network* turns that vector into a soft prompt and predicts the text's
tokens after it; ``ConditionalTextGenerator`` owns the loss and the sampling.
`PretrainedTextDecoder` is the decoder network whose transformer comes from a
pretrained keras-hub language model (GPT-2 or Gemma), with the same contract as
the from-scratch ``mmrec.models.text_networks.TextDecoder``:

* inputs ``{"token_ids": int32 [B, T], "condition": float [B, condition_dim]}``;
* output float32 logits ``[B, T, vocabulary_size]``, ``logits[:, t]`` predicting
  token ``t + 1`` (causal; the prefix positions are not returned);
* attributes ``vocabulary_size``, ``condition_dim``, ``prefix_length``,
  ``sequence_length`` and ``tokenizer`` (a keras-hub tokenizer).

Soft prompt (prompt tuning, Lester et al. 2021): ``Dense(prefix_length *
hidden_dim)`` maps the condition to ``prefix_length`` vectors in the backbone's
embedding space, placed before the token embeddings. The backbone is frozen by
default (only the prefix projection trains, so a few thousand weights adapt a
model of any size); ``lora_rank`` adds LoRA factors to its attention, and
``trainable_backbone=True`` tunes all of it.

Presets are *local directories* (nothing is downloaded here). Make one on a
machine with internet access, then copy it::

    keras_hub.models.GPT2CausalLM.from_preset("gpt2_base_en").save_to_preset("./gpt2")

(or unpack a Kaggle download of a keras-hub preset) and pass ``preset="./gpt2"``.
Tests and docs use `mmrec.testing.save_tiny_gpt2_preset`, a tiny random GPT-2.
"""

from __future__ import annotations

import math
import os

import keras
import keras_hub
from keras import ops

from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.models.attributes import check_positive_int

# Gemma has rotary positions and no length limit of its own; it was trained on this context.
GEMMA_CONTEXT_LENGTH = 8192


class _GPT2:
    """GPT-2: learned absolute position embeddings, ``TransformerDecoder`` layers."""

    backbone_class = keras_hub.models.GPT2Backbone

    @staticmethod
    def embed_tokens(backbone, token_ids):
        return backbone.token_embedding(token_ids)

    @staticmethod
    def add_positions(backbone, x):
        # Positions run over the whole prefix + text sequence: the soft prompt is
        # read like the first tokens of a prompt, so the text sits at the positions
        # the pretrained model saw text follow a prompt at. (The prefix vectors are
        # learned, so their own position embeddings are absorbed in the projection.)
        # The price is `prefix_length` positions of the context.
        x = backbone.embeddings_add((x, backbone.position_embedding(x)))
        return backbone.embeddings_dropout(x)

    @staticmethod
    def transform(layer, x):
        return layer(x)  # causal by default (`use_causal_mask=True`)

    @staticmethod
    def max_sequence_length(backbone):
        return backbone.max_sequence_length


class _Gemma:
    """Gemma (1 and 2): embeddings scaled by sqrt(hidden_dim), rotary positions, RMS norms."""

    backbone_class = keras_hub.models.GemmaBackbone

    @staticmethod
    def embed_tokens(backbone, token_ids):
        x = backbone.token_embedding(token_ids)
        return x * ops.cast(math.sqrt(backbone.hidden_dim), x.dtype)

    @staticmethod
    def add_positions(backbone, x):
        return x  # rotary embeddings inside the attention number the whole sequence

    @staticmethod
    def transform(layer, x):
        return layer(x)  # no padding mask: the causal mask alone

    @staticmethod
    def max_sequence_length(backbone):
        return GEMMA_CONTEXT_LENGTH


_FAMILIES = (_GPT2, _Gemma)
SUPPORTED_BACKBONES = tuple(family.backbone_class.__name__ for family in _FAMILIES)


def _family(backbone, preset):
    for family in _FAMILIES:
        if isinstance(backbone, family.backbone_class):
            return family
    raise ValueError(
        f"Expected a preset of a supported backbone family ({', '.join(SUPPORTED_BACKBONES)}). "
        f"Received: preset={preset!r}, a {type(backbone).__name__}"
    )


def _check_preset_dir(preset):
    if not isinstance(preset, (str, os.PathLike)) or not os.path.isdir(preset):
        raise ValueError(
            "Expected preset to be a local keras-hub preset directory (saved with "
            "save_to_preset, e.g. keras_hub.models.GPT2CausalLM.from_preset('gpt2_base_en')"
            ".save_to_preset('./gpt2') on a machine with internet access). "
            f"Received: preset={preset!r}"
        )
    if not os.path.exists(os.path.join(preset, "config.json")):
        raise ValueError(
            "Expected preset to be a local keras-hub preset directory (saved with "
            "save_to_preset), with a config.json. "
            f"Received: preset={preset!r}, which has no config.json"
        )


@keras.saving.register_keras_serializable(package="mmrec")
class PretrainedTextDecoder(keras.Model):
    """Soft-prompt conditioning on a pretrained keras-hub causal LM (GPT-2 or Gemma).

    ``condition`` → ``Dense(prefix_length * hidden_dim)`` → ``prefix_length``
    prefix embeddings, concatenated before the token embeddings → the backbone's
    transformer layers (causal over prefix + text) → its final norm → logits
    through the tied token embedding (float32), for the text positions only.

    Inputs: ``{"token_ids": int32 [B, T], "condition": float [B, condition_dim]}``
    with ``T <= sequence_length``. Output: float32 logits ``[B, T, vocabulary_size]``,
    ``logits[:, t]`` predicting token ``t + 1``. Positions after the text need no
    mask: attention is causal, so no text position attends to them.

    Args:
        preset: a local keras-hub preset directory (module docstring) holding a
            GPT-2 or Gemma backbone and its tokenizer.
        condition_dim: width of the conditioning vector.
        prefix_length: number of soft-prompt vectors.
        lora_rank: ``None`` (no LoRA), or the rank of the LoRA factors added to
            the query and value projections of every attention layer; then only
            those factors and the prefix projection train.
        trainable_backbone: tune every backbone weight (full fine-tuning).
            Frozen by default; not together with ``lora_rank``.
        dtype: the dtype policy of the backbone loaded from ``preset`` and of
            the prefix projection (``None``: the global policy; a given
            ``backbone`` keeps its own); the logits are float32 whatever it is.
        backbone, tokenizer: a keras-hub backbone and tokenizer to use instead
            of loading them from ``preset`` (``from_config`` passes them, so a
            ``.keras`` file needs no preset directory to reload). The decoder
            sets the backbone's trainable flags (frozen, LoRA or tuned).

    Attributes:
        backbone: the keras-hub backbone; tokenizer: its tokenizer
            (``tokenize``/``detokenize``, ``start_token_id``, ``end_token_id``,
            ``pad_token_id``; ragged ids in a ``tf.function``, Python lists when
            called eagerly, as every keras-hub tokenizer).

    ``.keras`` files are self-contained: the config holds the backbone's and the
    tokenizer's configs, the file their weights and vocabulary. Keras saves a
    LoRA layer with its factors merged into the kernel, so a reloaded tuned
    decoder gives the same logits, but its LoRA factors come back as zeros (no
    gradient): tune further from the preset, not from the reloaded file.

    Example:

    >>> from mmrec.testing import save_tiny_gpt2_preset
    >>> preset = save_tiny_gpt2_preset(os.path.join(tmp, "tiny_gpt2"))
    >>> decoder = PretrainedTextDecoder(preset, condition_dim=8, prefix_length=4)
    >>> ids = decoder.tokenizer.tokenize(["a small red circle"])
    >>> logits = decoder({"token_ids": np.array(ids, "int32"), "condition": np.ones((1, 8))})
    >>> tuple(logits.shape) == (1, 4, decoder.vocabulary_size), str(logits.dtype)
    (True, "<dtype: 'float32'>")
    >>> len(decoder.trainable_weights)  # the prefix projection's kernel and bias
    2
    """

    def __init__(
        self,
        preset=None,
        condition_dim=128,
        prefix_length=4,
        lora_rank=None,
        trainable_backbone=False,
        dtype=None,
        backbone=None,
        tokenizer=None,
        **kwargs,
    ):
        check_positive_int("condition_dim", condition_dim)
        check_positive_int("prefix_length", prefix_length)
        if lora_rank is not None:
            check_positive_int("lora_rank", lora_rank)
            if trainable_backbone:
                raise ValueError(
                    "Expected either lora_rank (tune LoRA factors) or trainable_backbone=True "
                    "(tune every weight), not both. "
                    f"Received: lora_rank={lora_rank}, trainable_backbone=True"
                )
        if (backbone is None) != (tokenizer is None):
            raise ValueError(
                "Expected both backbone and tokenizer, or neither (to load them from preset). "
                f"Received: backbone={type(backbone).__name__}, "
                f"tokenizer={type(tokenizer).__name__}"
            )
        if backbone is None:
            _check_preset_dir(preset)
            preset = os.fspath(preset)  # keras-hub takes strings only
            backbone = keras_hub.models.Backbone.from_preset(preset, dtype=resolve_policy(dtype))
        # One policy for the whole network: the backbone's (a given backbone keeps its own).
        policy = backbone.dtype_policy
        family = _family(backbone, preset)
        if tokenizer is None:  # after the family check: an unsupported preset may have none
            tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(preset)
        hidden_dim = backbone.hidden_dim
        sequence_length = family.max_sequence_length(backbone) - prefix_length
        if sequence_length < 1:
            raise ValueError(
                f"Expected prefix_length to be below the backbone's context length "
                f"({family.max_sequence_length(backbone)}). Received: prefix_length={prefix_length}"
            )
        # Frozen, LoRA or fully tuned. Freezing first also freezes what LoRA leaves
        # out; keras-hub's `enable_lora` leaves the biases of the LoRA layers
        # trainable, which is bias tuning on top of LoRA: we freeze them, so that
        # only the low-rank factors (and the prefix) move.
        backbone.trainable = trainable_backbone
        if lora_rank is not None:
            backbone.enable_lora(lora_rank)
            for weight in backbone.trainable_weights:
                if weight.name not in ("lora_kernel_a", "lora_kernel_b"):
                    weight.trainable = False

        # === Layers ===
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.prefix_projection = keras.layers.Dense(
            prefix_length * hidden_dim, name="prefix_projection", dtype=policy
        )
        self.prefix_reshape = keras.layers.Reshape(
            (prefix_length, hidden_dim), name="prefix_reshape", dtype=policy
        )
        self.prefix_concat = keras.layers.Concatenate(axis=1, name="prefix_concat", dtype=policy)
        self.logits_float32 = keras.layers.Activation("linear", dtype="float32", name="logits")

        # === Functional Model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        condition = keras.Input(shape=(condition_dim,), dtype="float32", name="condition")
        prefix = self.prefix_reshape(self.prefix_projection(condition))
        x = self.prefix_concat([prefix, family.embed_tokens(backbone, token_ids)])
        x = family.add_positions(backbone, x)
        for layer in backbone.transformer_layers:
            x = family.transform(layer, x)
        # The final norm and the tied output embedding only on the text positions.
        x = backbone.layer_norm(x[:, prefix_length:, :])
        logits = self.logits_float32(backbone.token_embedding(x, reverse=True))
        super().__init__(
            inputs={"token_ids": token_ids, "condition": condition}, outputs=logits, **kwargs
        )
        self.dtype_policy = policy

        # === Config ===
        self.preset = None if preset is None else os.fspath(preset)
        self.condition_dim = condition_dim
        self.prefix_length = prefix_length
        self.lora_rank = lora_rank
        self.trainable_backbone = trainable_backbone
        self.vocabulary_size = backbone.vocabulary_size
        self.sequence_length = sequence_length

    def build(self, input_shape=None):
        # The functional graph built every layer; the tokenizer has no weights and no
        # build of its own (keras-hub's `Task` does the same for its preprocessor).
        self.built = True

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "preset": self.preset,
            "condition_dim": self.condition_dim,
            "prefix_length": self.prefix_length,
            "lora_rank": self.lora_rank,
            "trainable_backbone": self.trainable_backbone,
            "dtype": serialize_policy(self.dtype_policy),
            # The architectures, so that a `.keras` file reloads without the preset
            # directory (the file holds the weights and the tokenizer's vocabulary).
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "tokenizer": keras.saving.serialize_keras_object(self.tokenizer),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("backbone", "tokenizer"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
