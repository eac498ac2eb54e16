"""Fusion layers: per-modality embeddings → one item embedding.

Where they sit in the data flow: after the per-modality encoders, before the
item embedding is normalised. The four layers are the fusion strategies of the
article, behind one call signature::

    fused = fusion(embeddings, mask=None)   # -> [B, output_dim], float32

* ``embeddings``: ``dict[str, Tensor [B, D_m]]``, keyed by modality name;
* ``mask``: optional ``dict[str, Tensor [B]]`` (bool or 0/1), ``True`` where the
  modality is present for that row.

**Missing modalities.** A layer is built for a fixed tuple of ``modalities``
(all of them must be present in the first call, which creates the weights).
Afterwards a modality can be missing for some rows (``mask`` 0) or for the
whole batch (its key absent from ``embeddings``); both are the same thing.
The output shape never changes, a missing modality's embedding is never read
(NaN placeholders are fine), and a row with every modality missing gives a
finite output. What "missing" means exactly is each layer's *contract*, stated
in its docstring and checked in ``tests/test_fusion.py``:

* `ConcatFusion`: a missing embedding counts as a zero vector;
* `WeightedFusion` and `AttentionFusion`: the result equals that of the same
  layer built without the modality (same remaining weights);
* `GatedFusion`: the gate gives the modality weight 0 and renormalises over
  the others.
"""

import keras
from keras import ops

from mmrec.layers.sequence import MaskedMeanPooling, TransformerBlock

# Added to the logits of missing modalities. Finite (not -inf) so that a row
# with no modality at all gives a uniform softmax, then zeroed, instead of NaN.
_LARGE_NEGATIVE = -1e9


class Fusion(keras.layers.Layer):
    """Base class of the fusion layers: argument checks and mask handling.

    Subclasses implement ``build_fusion(dims)`` (``dims``: modality → input
    width) and ``fuse(embeddings, present)`` with ``embeddings`` a list of
    ``[B, D_m]`` tensors in ``modalities`` order (missing rows zeroed) and
    ``present`` a float32 ``[B, M]`` 0/1 matrix.
    """

    def __init__(self, modalities, output_dim, **kwargs):
        super().__init__(**kwargs)
        if isinstance(modalities, str) or not modalities:
            raise ValueError(
                "Expected modalities to be a non-empty list of modality names. "
                f"Received: modalities={modalities!r}"
            )
        modalities = tuple(modalities)
        if len(set(modalities)) != len(modalities):
            raise ValueError(
                f"Expected modalities to be unique names. Received: modalities={modalities!r}"
            )
        if not isinstance(output_dim, int) or output_dim <= 0:
            raise ValueError(
                f"Expected output_dim to be a positive int. Received: output_dim={output_dim!r}"
            )
        self.modalities = modalities
        self.output_dim = output_dim
        # `mask` is the modality mask of the call signature; declaring masking
        # support stops Keras from warning that it is consumed (see compute_mask).
        self.supports_masking = True

    def build(self, input_shape):
        missing = [m for m in self.modalities if m not in input_shape]
        if missing:
            raise ValueError(
                f"Expected the first call to include every modality of {list(self.modalities)} "
                f"(their widths define the weights). Received: keys {sorted(input_shape)}, "
                f"missing {missing}"
            )
        self._input_dims = {m: input_shape[m][-1] for m in self.modalities}
        self.build_fusion(self._input_dims)

    def build_fusion(self, dims):
        raise NotImplementedError

    def fuse(self, embeddings, present):
        raise NotImplementedError

    def call(self, embeddings, mask=None):
        unknown = sorted(set(embeddings) - set(self.modalities))
        if unknown:
            raise ValueError(
                f"Expected embeddings for modalities among {list(self.modalities)}. "
                f"Received: unknown modalities {unknown}"
            )
        mask = mask or {}
        unknown = sorted(set(mask) - set(self.modalities))
        if unknown:
            raise ValueError(
                f"Expected mask keys among {list(self.modalities)}. "
                f"Received: unknown modalities {unknown}"
            )
        reference = next(iter(embeddings.values()))
        batch_size = ops.shape(reference)[0]

        values, present = [], []
        for name in self.modalities:
            if name not in embeddings:
                # Absent for the whole batch: a zero placeholder, masked out.
                shape = (batch_size, self._input_dims[name])
                values.append(ops.zeros(shape, dtype=self.compute_dtype))
                present.append(ops.zeros((batch_size,), dtype="bool"))
                continue
            x = ops.cast(embeddings[name], self.compute_dtype)
            if mask.get(name) is None:
                is_present = ops.ones((batch_size,), dtype="bool")
            else:
                is_present = ops.reshape(ops.cast(mask[name], "bool"), (-1,))
            # `where`, not a product: a missing embedding (maybe NaN) is never read.
            values.append(ops.where(is_present[:, None], x, ops.zeros_like(x)))
            present.append(is_present)
        present = ops.cast(ops.stack(present, axis=1), "float32")
        return ops.cast(self.fuse(values, present), "float32")

    def compute_output_shape(self, input_shape):
        return (next(iter(input_shape.values()))[0], self.output_dim)

    def compute_mask(self, inputs, mask=None):
        # The fused embedding exists for every row: it carries no mask.
        return None

    def get_config(self):
        config = super().get_config()
        config.update({"modalities": list(self.modalities), "output_dim": self.output_dim})
        return config


# name → Fusion subclass: what `MultimodalItemEncoder(fusion=name)` builds.
FUSIONS: dict[str, type] = {}


def register_fusion(name, package="mmrec"):
    """Class decorator: makes a `Fusion` subclass available as ``fusion=name``.

    It also registers the class for `.keras` saving under ``package``.
    """

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Fusion)):
            raise ValueError(f"Expected a Fusion subclass. Received: {cls!r}")
        if FUSIONS.get(name, cls) is not cls:
            raise ValueError(
                f"Expected a new fusion name. Received: {name!r}, already registered by "
                f"{FUSIONS[name].__name__}"
            )
        FUSIONS[name] = cls
        return keras.saving.register_keras_serializable(package=package)(cls)

    return decorate


def _masked_softmax(logits, present):
    """Softmax over the present modalities of each row; all-missing rows → all zeros."""
    if logits.shape[-1] == 1:  # a single modality: weight 1 where present
        return present
    logits = ops.where(present > 0, ops.cast(logits, "float32"), _LARGE_NEGATIVE)
    return ops.softmax(logits, axis=-1) * present


@register_fusion("concat")
class ConcatFusion(Fusion):
    """Feature-level fusion: concatenate the embeddings, then a dense projection.

    ``y = W [x_1; …; x_M] + b``.

    Contract for a missing modality: its embedding is replaced by zeros, so the
    result equals that of a ``ConcatFusion`` built without the modality whose
    kernel is this one's without that modality's rows (same bias).

    Args:
        modalities: the modality names, in concatenation order.
        output_dim: size of the fused embedding.

    Example:

    >>> fusion = ConcatFusion(["image", "text"], output_dim=4)
    >>> embeddings = {"image": np.ones((2, 3), "float32"), "text": np.ones((2, 5), "float32")}
    >>> tuple(fusion(embeddings, mask={"text": np.array([True, False])}).shape)
    (2, 4)
    """

    def build_fusion(self, dims):
        self.projection = keras.layers.Dense(
            self.output_dim, name="projection", dtype=self.dtype_policy
        )
        self.projection.build((None, sum(dims.values())))

    def fuse(self, embeddings, present):
        return self.projection(ops.concatenate(embeddings, axis=-1))


@register_fusion("weighted")
class WeightedFusion(Fusion):
    """Weighted fusion, the article's ``X = Σ_i w_i P_i X_i``.

    ``P_i`` is a learned linear projection per modality to ``output_dim``; the
    weights ``w = softmax(logits)`` are learned scalars, one per modality
    (equal at initialisation); `modality_weights()` reads them.

    Contract for a missing modality: its weight is 0 and the softmax is taken
    over the present ones, which is exactly a ``WeightedFusion`` built without
    that modality (same remaining projections and logits). A row with every
    modality missing fuses to zeros.

    Args:
        modalities: the modality names.
        output_dim: size of the fused embedding.

    Example:

    >>> fusion = WeightedFusion(["image", "text"], output_dim=4)
    >>> embeddings = {"image": np.ones((2, 3), "float32"), "text": np.ones((2, 5), "float32")}
    >>> tuple(fusion(embeddings).shape)
    (2, 4)
    >>> fusion.modality_weights()
    {'image': 0.5, 'text': 0.5}
    """

    def build_fusion(self, dims):
        self.projections = {
            m: keras.layers.Dense(
                self.output_dim, use_bias=False, name=f"projection_{m}", dtype=self.dtype_policy
            )
            for m in self.modalities
        }
        for m, layer in self.projections.items():
            layer.build((None, dims[m]))
        self.logits = self.add_weight(
            name="logits", shape=(len(self.modalities),), initializer="zeros"
        )

    def fuse(self, embeddings, present):
        weights = _masked_softmax(self.logits[None, :], present)  # [B, M]
        projected = ops.stack(
            [self.projections[m](x) for m, x in zip(self.modalities, embeddings, strict=True)],
            axis=1,
        )  # [B, M, output_dim]
        weights = ops.cast(weights, projected.dtype)
        return ops.sum(projected * weights[:, :, None], axis=1)

    def modality_weights(self):
        """The learned weights ``softmax(logits)`` with all modalities present, as a dict."""
        weights = ops.convert_to_numpy(ops.softmax(ops.convert_to_tensor(self.logits)))
        return {m: round(float(w), 6) for m, w in zip(self.modalities, weights, strict=True)}


@register_fusion("gated")
class GatedFusion(Fusion):
    """Decision-level fusion: per-modality heads combined by an input-dependent gate.

    Each modality has its own head (a one-hidden-layer MLP to ``output_dim``),
    i.e. its own "decision"; a gate network reads all the embeddings and
    outputs ``g = softmax(G [x_1; …; x_M])``; the result is ``Σ_i g_i head_i(x_i)``.

    Contract for a missing modality: its head is not used, its gate is 0 and
    the gate renormalises over the present modalities; the gate network reads
    zeros in its place. So the result equals a ``GatedFusion`` built without it
    whose gate kernel lacks that modality's rows and column. A row with every
    modality missing fuses to zeros.

    Args:
        modalities: the modality names.
        output_dim: size of the fused embedding (and of the heads' hidden layer).

    Example:

    >>> fusion = GatedFusion(["image", "text"], output_dim=4)
    >>> embeddings = {"image": np.ones((2, 3), "float32"), "text": np.ones((2, 5), "float32")}
    >>> tuple(fusion(embeddings).shape)
    (2, 4)
    """

    def build_fusion(self, dims):
        self.heads = {}
        for m in self.modalities:
            hidden = keras.layers.Dense(
                self.output_dim, activation="relu", name=f"head_{m}_hidden", dtype=self.dtype_policy
            )
            output = keras.layers.Dense(
                self.output_dim, name=f"head_{m}_output", dtype=self.dtype_policy
            )
            hidden.build((None, dims[m]))
            output.build((None, self.output_dim))
            self.heads[m] = [hidden, output]
        self.gate = keras.layers.Dense(len(self.modalities), name="gate", dtype=self.dtype_policy)
        self.gate.build((None, sum(dims.values())))

    def fuse(self, embeddings, present):
        gates = _masked_softmax(self.gate(ops.concatenate(embeddings, axis=-1)), present)
        decisions = ops.stack(
            [
                self.heads[m][1](self.heads[m][0](x))
                for m, x in zip(self.modalities, embeddings, strict=True)
            ],
            axis=1,
        )  # [B, M, output_dim]
        gates = ops.cast(gates, decisions.dtype)
        return ops.sum(decisions * gates[:, :, None], axis=1)


@register_fusion("attention")
class AttentionFusion(Fusion):
    """Model-level fusion: self-attention across one token per modality.

    Each embedding is projected to ``output_dim`` and gets a learned
    modality-type embedding; the ``M`` tokens go through a transformer block
    (multi-head self-attention + MLP) in which missing modalities are masked
    out; the present tokens are mean-pooled and projected.

    Contract for a missing modality: it is neither attended to nor pooled, so
    the result equals that of an ``AttentionFusion`` built without it (same
    remaining projections, type embeddings and shared weights). A row with
    every modality missing gives the output projection's bias.

    Args:
        modalities: the modality names.
        output_dim: size of the tokens and of the fused embedding.
        num_heads: attention heads; ``output_dim`` must be divisible by it.

    Example:

    >>> fusion = AttentionFusion(["image", "text"], output_dim=4)
    >>> embeddings = {"image": np.ones((2, 3), "float32"), "text": np.ones((2, 5), "float32")}
    >>> tuple(fusion(embeddings, mask={"image": np.array([1, 0])}).shape)
    (2, 4)
    """

    def __init__(self, modalities, output_dim, num_heads=2, **kwargs):
        super().__init__(modalities, output_dim, **kwargs)
        if not isinstance(num_heads, int) or num_heads <= 0 or output_dim % num_heads:
            raise ValueError(
                "Expected num_heads to be a positive int that divides output_dim. "
                f"Received: num_heads={num_heads!r}, output_dim={output_dim}"
            )
        self.num_heads = num_heads

    def build_fusion(self, dims):
        self.projections = {
            m: keras.layers.Dense(self.output_dim, name=f"projection_{m}", dtype=self.dtype_policy)
            for m in self.modalities
        }
        for m, layer in self.projections.items():
            layer.build((None, dims[m]))
        self.type_embeddings = {
            m: self.add_weight(
                name=f"type_embedding_{m}",
                shape=(self.output_dim,),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
            )
            for m in self.modalities
        }
        token_shape = (None, len(self.modalities), self.output_dim)
        self.block = TransformerBlock(
            self.num_heads, 2 * self.output_dim, name="block", dtype=self.dtype_policy
        )
        self.block.build(token_shape)
        self.pooling = MaskedMeanPooling(name="pooling", dtype=self.dtype_policy)
        self.output_projection = keras.layers.Dense(
            self.output_dim, name="output_projection", dtype=self.dtype_policy
        )
        self.output_projection.build((None, self.output_dim))

    def fuse(self, embeddings, present):
        tokens = ops.stack(
            [
                self.projections[m](x) + ops.cast(self.type_embeddings[m], self.compute_dtype)
                for m, x in zip(self.modalities, embeddings, strict=True)
            ],
            axis=1,
        )  # [B, M, output_dim]
        tokens = self.block(tokens, padding_mask=present > 0)
        return self.output_projection(self.pooling(tokens, mask=present > 0))

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads})
        return config
