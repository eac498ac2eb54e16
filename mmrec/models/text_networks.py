"""The text generator's network: a causal transformer language model with a soft prompt.

Where it sits in the data flow: a conditioning network (`mmrec.models.conditioning`)
turns what a description is asked to say (attributes, an item, a user) into one
vector; `TextDecoder` turns that vector into ``prefix_length`` learned embeddings
(a *soft prompt*) placed before the token embeddings, and predicts the next
WordPiece token at every position. Built from keras-hub layers
(`TokenAndPositionEmbedding`, `TransformerDecoder`); `generate_token_ids` runs a
keras-hub sampler (greedy, top-k, top-p, beam, random) over it.

``keras.ops`` only: the network and the sampling loop run under any Keras
backend, and compile into an exported TensorFlow graph (the ``generate_text``
signature). A pretrained keras-hub language model with the same contract is
`mmrec.models.pretrained_text.PretrainedTextDecoder`.
"""

from __future__ import annotations

import keras
import keras_hub
from keras import ops

from mmrec.layers.dtypes import resolve_policy, serialize_policy
from mmrec.models.attributes import check_positive_int

SAMPLERS = ("greedy", "top_k", "top_p", "random", "beam")


@keras.saving.register_keras_serializable(package="mmrec")
class TextDecoder(keras.Model):
    """A causal transformer language model conditioned by a soft prompt.

    Inputs: ``{"token_ids": int32 [B, T], "condition": float [B, condition_dim]}``
    with ``T <= sequence_length``. Output: float32 logits ``[B, T, vocabulary_size]``;
    ``logits[:, t]`` predicts token ``t + 1``. The condition becomes
    ``prefix_length`` embeddings before the tokens (a learned projection); every
    position attends to the prefix and to the tokens before it (causal mask), so
    padding after a text is never attended to and needs no mask.

    Args:
        vocabulary_size: number of token ids.
        condition_dim: width of the conditioning vector.
        sequence_length: the longest token sequence (position embeddings).
        prefix_length: condition tokens in the soft prompt.
        hidden_dim: width of the embeddings and the transformer.
        num_layers: `keras_hub.layers.TransformerDecoder` blocks.
        num_heads: attention heads per block.
        intermediate_dim: width of each block's feed-forward layer
            (``None``: ``2 * hidden_dim``).
        dropout: dropout rate in the blocks.
        dtype: the dtype policy (``None``: the global policy); logits are float32.

    Example:

    >>> decoder = TextDecoder(vocabulary_size=40, condition_dim=8, sequence_length=12,
    ...                       hidden_dim=16, num_layers=1, num_heads=2)
    >>> logits = decoder({"token_ids": np.zeros((2, 5), "int32"),
    ...                   "condition": np.ones((2, 8), "float32")})
    >>> tuple(logits.shape), str(logits.dtype)
    ((2, 5, 40), 'float32')
    """

    def __init__(
        self,
        vocabulary_size,
        condition_dim,
        sequence_length=32,
        prefix_length=4,
        hidden_dim=64,
        num_layers=2,
        num_heads=4,
        intermediate_dim=None,
        dropout=0.0,
        dtype=None,
        **kwargs,
    ):
        for name, value in (
            ("vocabulary_size", vocabulary_size),
            ("condition_dim", condition_dim),
            ("sequence_length", sequence_length),
            ("prefix_length", prefix_length),
            ("hidden_dim", hidden_dim),
            ("num_layers", num_layers),
            ("num_heads", num_heads),
        ):
            check_positive_int(name, value)
        if hidden_dim % num_heads:
            raise ValueError(
                "Expected hidden_dim to be a multiple of num_heads. "
                f"Received: hidden_dim={hidden_dim}, num_heads={num_heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Expected 0 <= dropout < 1. Received: dropout={dropout}")
        policy = resolve_policy(dtype)
        width = intermediate_dim or 2 * hidden_dim

        # === Layers ===
        self.prefix = keras.layers.Dense(prefix_length * hidden_dim, name="prefix", dtype=policy)
        self.prefix_tokens = keras.layers.Reshape(
            (prefix_length, hidden_dim), name="prefix_tokens", dtype=policy
        )
        self.embedding = keras_hub.layers.TokenAndPositionEmbedding(
            vocabulary_size, sequence_length, hidden_dim, name="token_embedding", dtype=policy
        )
        self.concat = keras.layers.Concatenate(axis=1, name="prompt_and_tokens", dtype=policy)
        self.blocks = [
            keras_hub.layers.TransformerDecoder(
                width,
                num_heads,
                dropout=dropout,
                normalize_first=True,
                name=f"decoder_block_{i}",
                dtype=policy,
            )
            for i in range(num_layers)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm", dtype=policy)
        self.logits = keras.layers.Dense(vocabulary_size, name="logits", dtype="float32")

        # === Functional Model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        condition = keras.Input(shape=(condition_dim,), dtype="float32", name="condition")
        prompt = self.prefix_tokens(self.prefix(condition))
        x = self.concat([prompt, self.embedding(token_ids)])
        for block in self.blocks:
            x = block(x)  # no encoder sequence: causal self-attention only
        x = self.norm(x)[:, prefix_length:]
        outputs = self.logits(x)
        super().__init__(
            inputs={"token_ids": token_ids, "condition": condition}, outputs=outputs, **kwargs
        )
        self.dtype_policy = policy

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.condition_dim = condition_dim
        self.sequence_length = sequence_length
        self.prefix_length = prefix_length
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout = dropout

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocabulary_size": self.vocabulary_size,
            "condition_dim": self.condition_dim,
            "sequence_length": self.sequence_length,
            "prefix_length": self.prefix_length,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "dtype": serialize_policy(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def check_text_decoder(decoder) -> None:
    """Raises unless ``decoder`` has the `TextDecoder` contract (see its docstring)."""
    missing = [
        name
        for name in ("vocabulary_size", "condition_dim", "sequence_length", "prefix_length")
        if not isinstance(getattr(decoder, name, None), int)
    ]
    if not isinstance(decoder, keras.Model) or missing:
        raise ValueError(
            "Expected a text decoder: a keras.Model {'token_ids', 'condition'} → logits "
            "[B, T, V] with int vocabulary_size, condition_dim, sequence_length and "
            f"prefix_length (e.g. TextDecoder). Received: {type(decoder).__name__}"
            + (f" without {missing}" if missing else "")
        )


def get_sampler(sampler, temperature=1.0, k=5, p=0.9, num_beams=4, seed=None):
    """A keras-hub sampler from a name in `SAMPLERS` (or a `keras_hub.samplers.Sampler`)."""
    if isinstance(sampler, keras_hub.samplers.Sampler):
        return sampler
    if not temperature > 0:
        raise ValueError(f"Expected temperature > 0. Received: temperature={temperature!r}")
    samplers = keras_hub.samplers
    if sampler == "greedy":
        return samplers.GreedySampler(temperature=temperature)
    if sampler == "top_k":
        return samplers.TopKSampler(k=k, seed=seed, temperature=temperature)
    if sampler == "top_p":
        return samplers.TopPSampler(p=p, seed=seed, temperature=temperature)
    if sampler == "random":
        return samplers.RandomSampler(seed=seed, temperature=temperature)
    if sampler == "beam":
        return samplers.BeamSampler(num_beams=num_beams, temperature=temperature)
    raise ValueError(
        f"Expected sampler to be one of {list(SAMPLERS)} or a keras_hub.samplers.Sampler. "
        f"Received: sampler={sampler!r}"
    )


def generate_token_ids(
    decoder, condition, start_token_id, end_token_id, sampler, length=None, perturb=None
):
    """Samples token ids from ``decoder`` for conditioning vectors ``[B, condition_dim]``.

    Every row starts with ``start_token_id``; the loop (a keras-hub sampler, which
    compiles to a while loop) stops when every row has produced ``end_token_id``
    or after ``length`` positions (``None``: the decoder's ``sequence_length``).
    There is no key/value cache: each step runs the decoder over the prefix so far,
    which at description length (tens of tokens) costs less than a cache's
    bookkeeping.

    Args:
        perturb: optional ``(logits [B, V], index) -> logits`` applied before the
            sampler (export adds per-row seeded Gumbel noise there, so that a greedy
            sampler draws reproducible samples).

    Returns:
        int32 ``[B, length]``: the start token, the sampled tokens, then whatever
        follows the first end token (see `text_lengths`).
    """
    length = length or decoder.sequence_length
    batch = ops.shape(condition)[0]
    # Positions still to sample hold a placeholder that is not the end token (the
    # sampler's stop test looks at every position it may write).
    placeholder = 0 if end_token_id != 0 else 1
    prompt = ops.concatenate(
        [
            ops.full((batch, 1), start_token_id, dtype="int32"),
            ops.full((batch, length - 1), placeholder, dtype="int32"),
        ],
        axis=1,
    )
    fixed = ops.concatenate(
        [ops.ones((batch, 1), dtype="bool"), ops.zeros((batch, length - 1), dtype="bool")], axis=1
    )

    # The beam sampler runs num_beams rows per request (each request's beams adjacent).
    beams = getattr(sampler, "num_beams", 1)
    rows = condition if beams == 1 else ops.repeat(condition, beams, axis=0)

    def next_logits(prompt, cache, index):
        logits = decoder({"token_ids": prompt, "condition": rows}, training=False)
        logits = ops.cast(ops.take(logits, index - 1, axis=1), "float32")
        if perturb is not None:
            logits = perturb(logits, index)
        return logits, None, cache

    ids = sampler(next_logits, prompt, index=1, mask=fixed, stop_token_ids=(end_token_id,))
    return ops.cast(ids, "int32")


def text_lengths(ids, end_token_id):
    """Tokens between the start token and the first end token, per row (int32 ``[B]``)."""
    body = ops.cast(ops.equal(ids[:, 1:], end_token_id), "int32")
    seen = ops.cumsum(body, axis=1)
    return ops.cast(ops.sum(ops.cast(ops.equal(seen, 0), "int32"), axis=1), "int32")
