"""`ConditionalTextGenerator`: the language model of the LLM recommender — descriptions on demand.

Where it sits in the data flow: a conditioning (`mmrec.models.conditioning`:
attributes, an item's content, a user, or a user and an item for explanations)
gives one vector per request; a text decoder (`TextDecoder`, or a pretrained
keras-hub model through `PretrainedTextDecoder`) reads it as a soft prompt and
writes WordPiece tokens; the tokenizer turns them back into text. Like
keras-hub's ``CausalLM`` tasks it tokenises in its preprocessing (mapped over the
``tf.data`` pipeline passed to ``fit``), so the training step sees only token ids.

Sampling: ``"greedy"`` and ``"beam"`` are keras-hub's samplers as they are; the
stochastic ones (``"top_k"``, ``"top_p"``, ``"random"``) filter the logits and add
Gumbel noise drawn from a per-row seed, then take the arg-max with keras-hub's
greedy sampler: an exact sample from the filtered distribution that depends on
the row's seed only — so ``generate(..., seed=s)`` writes, for row i, what the
exported ``generate_text`` signature writes for ``seed = s + i``.
"""

from __future__ import annotations

import keras
import keras_hub
import numpy as np
import tensorflow as tf
from keras import ops

from mmrec.layers.preprocessing import TextTokenizer
from mmrec.models.attributes import check_positive_int
from mmrec.models.conditioned import ConditionedGenerator
from mmrec.models.conditioning import conditioning_from_dataset
from mmrec.models.text_networks import (
    SAMPLERS,
    TextDecoder,
    check_text_decoder,
    generate_token_ids,
    get_sampler,
    text_lengths,
)
from mmrec.models.training_utils import mean_over_global_batch

GENERATE_CHUNK = 256  # descriptions sampled per call in `generate`


def sequence_mask(targets, end_token_id):
    """1.0 at target positions up to and including the first end token, else 0.0."""
    is_end = ops.cast(ops.equal(targets, end_token_id), "int32")
    before = ops.cumsum(is_end, axis=1) - is_end
    return ops.cast(ops.equal(before, 0), "float32")


def longest_text(data, tokenizer, conditioning) -> int:
    """Tokens of the longest catalogue description, start and end included, plus what the
    conditioning writes beyond a description (``extra_text_tokens``, e.g. explanations)."""
    lengths = tf.function(lambda t: tokenizer.tokenize(t).row_lengths())(data.catalogue().texts)
    return int(tf.reduce_max(lengths)) + 2 + getattr(conditioning, "extra_text_tokens", 0)


@keras.saving.register_keras_serializable(package="mmrec")
class ConditionalTextGenerator(ConditionedGenerator):
    """Writes descriptions conditioned on attributes, an item or a user; explains recommendations.

    A conditioning turns the condition into a vector; the decoder reads it as a
    soft prompt of ``prefix_length`` learned tokens and writes the text. Trained
    with ``model.fit`` on ``data.generation_pairs(split)`` (each pair: a user's
    history, the chosen item's description, labels and content); teacher-forced
    cross-entropy, with perplexity reported.

    Args:
        decoder: a `TextDecoder` (or any network with its contract, e.g.
            `mmrec.models.pretrained_text.PretrainedTextDecoder`).
        tokenizer: a `mmrec.layers.TextTokenizer` (or a keras-hub tokenizer);
            ``None`` takes ``decoder.tokenizer`` (pretrained decoders carry theirs).
        conditioning: a `Conditioning` whose ``condition_dim`` is the decoder's.
        sampler: one of ``"greedy"``, ``"top_k"``, ``"top_p"``, ``"random"``, ``"beam"``.
        temperature: divides the logits before sampling.
        top_k: ``k`` of the top-k sampler.
        top_p: ``p`` of the top-p (nucleus) sampler.
        max_length: the longest text in tokens, start and end included (``None``:
            the decoder's ``sequence_length``; set it for a pretrained decoder,
            whose context is far longer than a description).
        seed: seeds the model's random draws.

    Example:

    ```python
    data = mmrec.data.load("tf_records/shapes")
    model = mmrec.models.ConditionalTextGenerator.from_dataset(data, condition="attributes")
    model.compile()
    model.fit(data.generation_pairs("train"), epochs=3)
    model.generate({"shape": "star", "colour": "red", "pattern": "dots", "size": "large"}, num=2)
    # ['a large red star on a dotted background', 'large starburst, crimson, spotted backdrop']
    ```
    """

    content_key = "text"

    def __init__(
        self,
        decoder,
        tokenizer,
        conditioning,
        sampler="top_k",
        temperature=1.0,
        top_k=5,
        top_p=0.9,
        max_length=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_text_decoder(decoder)
        if tokenizer is None:
            tokenizer = getattr(decoder, "tokenizer", None)
        # Methods only: a keras-hub tokenizer being deserialised gets its vocabulary (and
        # its special token ids) after the model is constructed.
        missing = [
            n for n in ("tokenize", "detokenize") if not callable(getattr(tokenizer, n, None))
        ]
        if missing:
            raise ValueError(
                "Expected a tokenizer with tokenize/detokenize and start_token_id, end_token_id "
                "and pad_token_id (mmrec.layers.TextTokenizer or a keras-hub tokenizer). "
                f"Received: {type(tokenizer).__name__} without {missing}"
            )
        self._set_conditioning(conditioning, seed)
        if self.conditioning.condition_dim != decoder.condition_dim:
            raise ValueError(
                "Expected the conditioning's condition_dim to equal the decoder's. Received: "
                f"{self.conditioning.condition_dim} and {decoder.condition_dim}"
            )
        get_sampler(sampler, temperature)  # validates
        check_positive_int("top_k", top_k)
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"Expected 0 < top_p <= 1. Received: top_p={top_p!r}")
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.sampler = sampler
        self.temperature = float(temperature)
        self.top_k = int(top_k)
        self.top_p = float(top_p)
        if max_length is not None:
            check_positive_int("max_length", max_length)
            if not 2 < max_length <= decoder.sequence_length + 1:
                raise ValueError(
                    f"Expected 2 < max_length <= {decoder.sequence_length + 1} (the decoder's "
                    f"sequence_length + 1). Received: max_length={max_length}"
                )
        self.max_length = max_length
        self.seed = seed
        self.built = True

    @classmethod
    def from_dataset(
        cls,
        data,
        condition="attributes",
        user_encoder=None,
        decoder=None,
        preset=None,
        lora_rank=None,
        sequence_length=None,
        dtype=None,
        **kwargs,
    ):
        """A text generator over a dataset's vocabulary and attributes, or on a pretrained LM.

        Args:
            data: a `mmrec.data.MultimodalDataset` with texts and attribute labels.
            condition: ``"attributes"``, ``"item"`` (captioning), ``"user"``,
                ``"explanation"`` or any registered kind (or a `Conditioning`).
            user_encoder: for ``"user"`` and ``"explanation"``:
                ``recommender.build_user_encoder()``.
            decoder: ``None`` for a new `TextDecoder`; a dict of `TextDecoder`
                arguments (``hidden_dim``, ``num_layers``, ...); or a decoder network
                (e.g. ``PretrainedTextDecoder(preset=..., condition_dim=...)``), whose
                tokenizer is used.
            preset: a local keras-hub preset directory (GPT-2 or Gemma family) to
                start from a pretrained causal LM (`PretrainedTextDecoder`, frozen;
                its tokenizer replaces the dataset's vocabulary).
            lora_rank: with ``preset``, tune the LM with LoRA factors of this rank.
            sequence_length: the longest text in tokens, start and end included
                (``None``: the longest catalogue description's, plus what the
                conditioning adds).
            dtype: the dtype policy of the networks (``None``: the global policy).
            **kwargs: conditioning arguments (e.g. ``embedding_dim``) and the
                generator's (``sampler``, ``temperature``, ``top_k``, ``top_p``, ``seed``,
                ``name``).
        """
        own = {
            k: kwargs.pop(k)
            for k in ("sampler", "temperature", "top_k", "top_p", "seed", "name")
            if k in kwargs
        }
        if "text" not in data.metadata.modalities or data.vocabulary_path is None:
            raise ValueError(
                "Expected a dataset with item texts and a vocabulary (vocab.txt). Received: "
                f"modalities={list(data.metadata.modalities)}, vocabulary={data.vocabulary_path}"
            )
        conditioning = conditioning_from_dataset(
            data, condition, user_encoder=user_encoder, dtype=dtype, **kwargs
        )
        if lora_rank is not None and preset is None:
            raise ValueError(f"lora_rank={lora_rank} tunes a pretrained LM: give preset=PATH too.")
        if preset is not None and decoder is not None:
            raise ValueError(
                "Expected either preset (a pretrained LM) or decoder (settings or a network). "
                f"Received both: preset={preset!r}, decoder={decoder!r}"
            )
        if preset is not None:
            from mmrec.models.pretrained_text import PretrainedTextDecoder

            decoder = PretrainedTextDecoder(
                preset, conditioning.condition_dim, lora_rank=lora_rank, dtype=dtype, name="decoder"
            )
        if isinstance(decoder, keras.Model):
            tokenizer = decoder.tokenizer
            if sequence_length is None:
                sequence_length = longest_text(data, tokenizer, conditioning)
            max_length = min(sequence_length + 1, decoder.sequence_length + 1)
            return cls(decoder, tokenizer, conditioning, max_length=max_length, **own)
        tokenizer = TextTokenizer(data.vocabulary_path, name="tokenizer")
        if sequence_length is None:
            sequence_length = longest_text(data, tokenizer, conditioning)
        decoder = TextDecoder(
            tokenizer.vocabulary_size(),
            conditioning.condition_dim,
            sequence_length=sequence_length,
            dtype=dtype,
            name="decoder",
            **(decoder or {}),
        )
        return cls(decoder, tokenizer, conditioning, **own)

    # --- preprocessing (tf.data) --------------------------------------------------------------

    @property
    def sequence_length(self) -> int:
        """Token positions the decoder reads: ``max_length - 1`` (start, text, end)."""
        if self.max_length is None:
            return self.decoder.sequence_length
        return self.max_length - 1

    def tokenize(self, texts):
        """``tf.string [B]`` → int32 ``[B, sequence_length + 1]``: start, tokens, end, padding.

        Texts longer than ``sequence_length - 1`` tokens are cut (and lose their end token).
        """
        if tf.executing_eagerly():  # keras-hub tokenizers return Python lists eagerly
            return tf.function(self.tokenize)(tf.convert_to_tensor(texts))
        ids = self.tokenizer.tokenize(tf.convert_to_tensor(texts))
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids, padding=self.tokenizer.pad_token_id)
        ids = tf.cast(ids, tf.int32)[:, : self.sequence_length - 1]
        rows = tf.shape(ids.row_lengths())[0]
        start = tf.fill([rows, 1], self.tokenizer.start_token_id)
        end = tf.fill([rows, 1], self.tokenizer.end_token_id)
        full = tf.concat([start, ids, end], axis=1)
        shape = [None, self.sequence_length + 1]
        return full.to_tensor(default_value=self.tokenizer.pad_token_id, shape=shape)

    def detokenize(self, ids, lengths=None):
        """Sampled ids ``[B, T]`` (from `generate_token_ids`) → ``tf.string [B]``."""
        ids = tf.convert_to_tensor(ids)
        if lengths is None:
            lengths = text_lengths(ids, self.tokenizer.end_token_id)
        body = tf.RaggedTensor.from_tensor(ids[:, 1:], lengths=tf.cast(lengths, tf.int64))
        return self.tokenizer.detokenize(body)

    def target_texts(self, batch):
        """The texts a training batch teaches: the chosen items' descriptions, or what the
        conditioning writes instead (explanations)."""
        writer = getattr(self.conditioning, "write_targets", None)
        if writer is None:
            return batch["text"]
        inputs = [batch[key] for key in self.conditioning.batch_keys()]
        return tf.reshape(tf.numpy_function(writer, inputs, tf.string), [-1])

    def preprocess(self, data):
        """What ``fit`` does to its data: the features the model reads, texts → ``token_ids``.

        ``data``: a ``tf.data.Dataset`` of ``generation_pairs`` batches (or a dict of arrays).
        """
        return self._select_features(data)

    def _select_features(self, data):
        spec = getattr(data, "element_spec", data)
        if isinstance(spec, dict) and "token_ids" in spec:
            return data  # already preprocessed (fit passes validation data to evaluate)
        data = super()._select_features(data)

        def preprocess(batch):
            batch = dict(batch)
            batch["token_ids"] = self.tokenize(self.target_texts(batch))
            batch.pop("text", None)
            return batch

        if isinstance(data, tf.data.Dataset):
            return data.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
        if isinstance(data, dict) and "text" in data:
            return preprocess(data)
        return data

    # --- training ---------------------------------------------------------------------------

    def compile(self, optimizer=None, jit_compile="auto", **kwargs):
        """Configures training; with no arguments, the defaults that train well.

        Args:
            optimizer: default AdamW(2e-3, weight decay 0.01, gradient norm clipped at 1).
            jit_compile: ``True`` compiles the step with XLA; ``"auto"`` lets Keras decide.
            **kwargs: passed to `keras.Model.compile` (e.g. ``steps_per_execution``).
        """
        optimizer = optimizer or keras.optimizers.AdamW(2e-3, weight_decay=0.01, clipnorm=1.0)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.perplexity_tracker = keras_hub.metrics.Perplexity(from_logits=True, name="perplexity")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")
        self.condition_tracker = keras.metrics.Mean(name="condition_loss")
        self._compile_one_optimizer(optimizer, self._trained_variables(), jit_compile, **kwargs)

    @property
    def metrics(self):
        trackers = ["loss_tracker", "perplexity_tracker", "accuracy_tracker"]
        if self.conditioning.reports_condition_loss:
            trackers.append("condition_tracker")
        return [getattr(self, t) for t in trackers if hasattr(self, t)]

    def _trained_variables(self):
        return list(self.decoder.trainable_variables) + self._condition_variables()

    def _batch_losses(self, data, training):
        """Per-example loss, the targets, logits and mask of a batch of token ids."""
        ids = ops.cast(data["token_ids"], "int32")
        inputs, targets = ids[:, :-1], ids[:, 1:]
        mask = sequence_mask(targets, self.tokenizer.end_token_id)
        labels = self._labels(data)
        network_inputs = self.conditioning.training_inputs(data, labels)
        condition = self.conditioning(network_inputs, training=training)
        logits = self.decoder({"token_ids": inputs, "condition": condition}, training=training)
        token_loss = keras.losses.sparse_categorical_crossentropy(
            targets, ops.cast(logits, "float32"), from_logits=True
        )
        per_example = ops.sum(token_loss * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
        auxiliary = self.conditioning.auxiliary_loss(condition, labels)
        total = per_example if auxiliary is None else per_example + auxiliary
        return total, per_example, targets, logits, mask

    def _update_metrics(self, per_example, targets, logits, mask, own):
        self.loss_tracker.update_state(per_example)
        self.perplexity_tracker.update_state(targets, logits, sample_weight=mask)
        self.accuracy_tracker.update_state(targets, logits, sample_weight=mask)
        if own is not None and self.conditioning.reports_condition_loss:
            self.condition_tracker.update_state(own)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        own = self._train_own(data, self._labels(data))
        variables = self._trained_variables()
        with tf.GradientTape() as tape:
            total, per_example, targets, logits, mask = self._batch_losses(data, training=True)
            loss = mean_over_global_batch(total)
            scaled = self.optimizer.scale_loss(loss)
        self.optimizer.apply(tape.gradient(scaled, variables), variables)
        return self._update_metrics(per_example, targets, logits, mask, own)

    def test_step(self, data):
        own = None
        if self.conditioning.reports_condition_loss:
            own = self.conditioning.own_loss(data, self._labels(data))
        _, per_example, targets, logits, mask = self._batch_losses(data, training=False)
        return self._update_metrics(per_example, targets, logits, mask, own)

    def call(self, inputs, training=False):
        """Teacher-forced logits: ``{"token_ids": [B, T], **the conditioning network's inputs}``."""
        network_inputs = {k: v for k, v in inputs.items() if k != "token_ids"}
        condition = self.conditioning(network_inputs, training=training)
        return self.decoder({"token_ids": inputs["token_ids"], "condition": condition}, training)

    # --- generation -------------------------------------------------------------------------

    def sample_ids(self, condition, seeds, sampler=None, temperature=None):
        """Token ids ``[B, sequence_length]`` for conditioning vectors and int seeds ``[B]``.

        What `generate` and the exported ``generate_text`` signature run (see the
        module doc for how the seeds are used).
        """
        sampler = sampler or self.sampler
        temperature = self.temperature if temperature is None else temperature
        perturb = None
        if sampler in ("top_k", "top_p", "random"):
            perturb = self._seeded_perturbation(seeds, sampler, temperature)
            keras_sampler = get_sampler("greedy")
        else:
            keras_sampler = get_sampler(sampler, temperature)
        tokens = self.tokenizer
        return generate_token_ids(
            self.decoder,
            condition,
            tokens.start_token_id,
            tokens.end_token_id,
            keras_sampler,
            length=self.sequence_length,
            perturb=perturb,
        )

    def _seeded_perturbation(self, seeds, sampler, temperature):
        seeds = tf.cast(seeds, tf.int64)
        vocabulary = self.decoder.vocabulary_size

        def perturb(logits, index):
            logits = tf.cast(logits, tf.float32) / temperature
            if sampler == "top_k":
                kth = tf.math.top_k(logits, k=min(self.top_k, vocabulary)).values[:, -1:]
                logits = tf.where(logits < kth, -1e9, logits)
            elif sampler == "top_p":
                ordered = tf.sort(logits, direction="DESCENDING")
                cumulative = tf.cumsum(tf.nn.softmax(ordered), axis=-1, exclusive=True)
                kept = tf.where(cumulative < self.top_p, ordered, 1e9)
                threshold = tf.reduce_min(kept, axis=-1, keepdims=True)
                logits = tf.where(logits < threshold, -1e9, logits)
            step = tf.cast(index, tf.int64)
            uniform = tf.map_fn(
                lambda s: tf.random.stateless_uniform(
                    [vocabulary], seed=tf.stack([s, step]), minval=1e-7, maxval=1.0
                ),
                seeds,
                fn_output_signature=tf.float32,
            )
            return logits - tf.math.log(-tf.math.log(uniform))

        return perturb

    def generate(self, condition=None, num=1, seed=None, sampler=None, temperature=1.0):
        """Writes ``num`` texts for each condition.

        Args:
            condition: what to write about, as the conditioning takes it: a dict of
                attributes (names or ids) for attribute and user models; a history of
                item ids (one user) or a list of them for user models; an item id
                (or a list) for captioning; ``(history, item_id)`` pairs for explanations.
            num: texts per condition.
            seed: an int: row i of the request is sampled with seed ``seed + i`` (as
                the exported signature does); ``None`` draws from the model's seeds.
            sampler: overrides the model's sampler (one of ``SAMPLERS``).
            temperature: for users: divides the preference logits (what to write
                about); the text's own temperature is the model's ``temperature``.

        Returns:
            A list of ``num`` strings for one condition, a list of such lists otherwise.
        """
        if condition is None:
            raise ValueError("Expected a condition (see the docstring). Received: condition=None")
        if sampler is not None and sampler not in SAMPLERS:
            get_sampler(sampler)  # raises with the valid names
        check_positive_int("num", num)
        seed_generator = self._seed(seed)
        inputs, single = self.conditioning.parse(condition, num, seed_generator, temperature)
        total = len(keras.tree.flatten(inputs)[0])
        if seed is None:
            start = keras.random.randint((), 0, 2**30, seed=self.seed_generator)
            seed = int(ops.convert_to_numpy(start))
        seeds = np.arange(total, dtype="int64") + int(seed)
        texts = []
        for begin in range(0, total, GENERATE_CHUNK):
            rows = slice(begin, begin + GENERATE_CHUNK)
            part = keras.tree.map_structure(lambda v, r=rows: ops.convert_to_tensor(v[r]), inputs)
            texts.extend(self._generate_chunk(part, tf.constant(seeds[rows]), sampler))
        grouped = [texts[i : i + num] for i in range(0, total, num)]
        return grouped[0] if single else grouped

    def _generate_chunk(self, network_inputs, seeds, sampler):
        condition = self.conditioning(network_inputs, training=False)
        sampler = sampler or self.sampler
        # One compiled sampling loop per sampler (eagerly, each step is Python).
        compiled = self.__dict__.setdefault("_compiled_samplers", {})
        if sampler not in compiled:
            compiled[sampler] = tf.function(
                lambda c, s, name=sampler: self.detokenize(self.sample_ids(c, s, name)),
                reduce_retracing=True,
            )
        texts = compiled[sampler](condition, seeds)
        # Byte-level tokenizers (GPT-2) can sample byte sequences that are not UTF-8.
        return [t.decode("utf-8", errors="replace") for t in texts.numpy().tolist()]

    # --- Keras ---------------------------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            # A pretrained decoder saves its own tokenizer.
            "tokenizer": None
            if self.tokenizer is getattr(self.decoder, "tokenizer", None)
            else keras.saving.serialize_keras_object(self.tokenizer),
            "conditioning": keras.saving.serialize_keras_object(self.conditioning),
            "sampler": self.sampler,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "max_length": self.max_length,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("decoder", "tokenizer", "conditioning"):
            if config[key] is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
