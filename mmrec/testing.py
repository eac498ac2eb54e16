"""Standard checks for mmrec layers and models, in the style of keras-hub's ``TestCase``.

Plain functions, usable from pytest (or anywhere)::

    from mmrec.testing import run_layer_checks

    def test_image_encoder():
        run_layer_checks(
            ImageEncoder,
            init_kwargs={"embedding_dim": 8, "filters": [4, 8]},
            input_data=np.zeros((2, 16, 16, 3), "uint8"),
            expected_output_shape=(2, 8),
        )

`run_layer_checks` instantiates the layer and verifies, in order:

1. the eager output has ``expected_output_shape``;
2. config round trip: ``get_config`` → ``from_config`` gives an equal config,
   and with the weights copied, the same outputs;
3. a symbolic call on ``keras.Input``\\ s (the layer inside a functional model)
   gives the expected shape;
4. ``.keras`` save and load of that model gives the same outputs;
5. ``fit`` (one step, MSE against random targets, through a ``Dense(1)`` head)
   runs, gives a finite loss and changes every trainable weight of the layer;
6. under ``mixed_float16`` and ``mixed_bfloat16`` the floating outputs are
   float32 and finite and the weights float32 (the global policy is restored);
7. built under ``mixed_bfloat16``, saved to ``.keras`` and reloaded with the
   global policy back at ``float32``, the layer and every sublayer keep their
   dtype policy and the outputs are the same (`check_dtype_round_trip`).

`save_tiny_gpt2_preset` and `save_tiny_gemma_preset` write tiny random keras-hub
language models as local preset directories: stand-ins for downloaded presets
(``PretrainedTextDecoder(preset=...)``) in tests and docs, with no internet.
"""

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf
from keras import tree

from mmrec import compat

MIXED_POLICIES = ("mixed_float16", "mixed_bfloat16")
# InputLayers take the global policy whatever the network's, and compute nothing.
_NO_COMPUTE = (keras.layers.InputLayer,)


def _to_tensors(data):
    """numpy / Python data → tf tensors (Keras refuses mixed numpy/tensor structures)."""
    return tree.map_structure(tf.convert_to_tensor, data)


def _call(layer, input_data, call_kwargs, **extra):
    return layer(input_data, **call_kwargs, **extra)


def _symbolic_inputs(data, prefix):
    """One named ``keras.Input`` per tensor of ``data`` (same structure, batch dim free)."""

    symbolic = []
    for path, x in tree.flatten_with_path(data):
        # Dict keys name the inputs (Keras matches dict inputs by name).
        name = "_".join(str(p) for p in path) if path else prefix
        symbolic.append(keras.Input(shape=tuple(x.shape[1:]), dtype=x.dtype.name, name=name))
    return tree.pack_sequence_as(data, symbolic)


def _assert_allclose(actual, expected, what, atol=1e-5):
    for a, e in zip(tree.flatten(actual), tree.flatten(expected), strict=True):
        a, e = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(e)
        if a.dtype.kind in "fc":
            np.testing.assert_allclose(a, e, atol=atol, rtol=1e-5, err_msg=what)
        else:
            np.testing.assert_array_equal(a, e, err_msg=what)


def _is_float(x):
    return keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype))


def check_config_round_trip(layer, input_data, call_kwargs=None, safe_mode=True):
    """``from_config(get_config())`` has the same config and, with copied weights, outputs."""
    call_kwargs = call_kwargs or {}
    config = layer.get_config()
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer), safe_mode=safe_mode
    )
    assert type(revived) is type(layer), f"from_config gave a {type(revived).__name__}"
    assert revived.get_config() == config, (
        f"config changed in the round trip:\n{config}\n!=\n{revived.get_config()}"
    )
    _call(revived, input_data, call_kwargs)  # build
    revived.set_weights(layer.get_weights())
    _assert_allclose(
        _call(revived, input_data, call_kwargs),
        _call(layer, input_data, call_kwargs),
        "outputs differ after from_config(get_config()) with copied weights",
    )


def functional_model(layer, input_data, call_kwargs=None):
    """Wraps ``layer`` in a functional model whose inputs mirror ``input_data`` and the
    tensors in ``call_kwargs``.

    Returns ``(model, model_inputs)``: ``model_inputs`` is the data to feed it
    (``input_data`` alone, or ``[input_data, call_kwargs]``).
    """
    call_kwargs = call_kwargs or {}
    symbolic_x = _symbolic_inputs(input_data, "inputs")
    symbolic_kwargs = _symbolic_inputs(call_kwargs, "kwargs")
    outputs = layer(symbolic_x, **symbolic_kwargs)
    if call_kwargs:
        return keras.Model([symbolic_x, symbolic_kwargs], outputs), [input_data, call_kwargs]
    return keras.Model(symbolic_x, outputs), input_data


def check_saving(model, model_inputs, tmp_path=None, safe_mode=True):
    """``model.save(…keras)`` then ``keras.saving.load_model`` gives the same outputs."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(os.fspath(tmp_path or tmp), f"{model.name}.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=safe_mode)
    _assert_allclose(loaded(model_inputs), model(model_inputs), "outputs differ after .keras load")


def check_fit(model, layer, model_inputs):
    """One ``fit`` step through a ``Dense(1)`` MSE head: finite loss, all weights of
    ``layer`` updated."""
    head = keras.layers.Dense(1, name="mse_head")(keras.layers.Flatten()(model.output))
    trainer = keras.Model(model.input, head)
    trainer.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-2), loss="mse")
    batch_size = int(tree.flatten(model_inputs)[0].shape[0])
    targets = np.random.default_rng(0).normal(size=(batch_size, 1)).astype("float32")
    before = [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights]
    history = trainer.fit(model_inputs, targets, batch_size=batch_size, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0]), "fit gave a non-finite loss"
    for weight, old in zip(layer.trainable_weights, before, strict=True):
        assert not np.array_equal(keras.ops.convert_to_numpy(weight), old), (
            f"fit did not update the trainable weight {weight.path}"
        )


def check_mixed_precision(cls, init_kwargs, input_data, call_kwargs=None):
    """Under each mixed policy: float outputs are float32 and finite, weights float32."""
    call_kwargs = call_kwargs or {}
    previous = keras.config.dtype_policy()
    try:
        for policy in MIXED_POLICIES:
            keras.config.set_dtype_policy(policy)
            layer = cls(**init_kwargs)
            outputs = _call(layer, input_data, call_kwargs)
            for output in tree.flatten(outputs):
                if _is_float(output):
                    assert output.dtype == tf.float32, f"{policy}: output is {output.dtype.name}"
                    assert np.all(np.isfinite(output.numpy())), f"{policy}: non-finite output"
            for weight in layer.weights:
                if keras.backend.is_float_dtype(weight.dtype):
                    assert weight.dtype == "float32", f"{policy}: {weight.path} is {weight.dtype}"
    finally:
        keras.config.set_dtype_policy(previous)


def dtype_policies(layer):
    """``[(name, policy name)]`` of ``layer`` and of all its sublayers, nested ones included.

    Input layers are left out: they take the global policy and compute nothing.
    """
    return [
        (sublayer.name, sublayer.dtype_policy.name)
        for sublayer in compat.sublayers(layer)
        if not isinstance(sublayer, _NO_COMPUTE)
    ]


def check_dtype_round_trip(
    cls,
    init_kwargs,
    input_data,
    call_kwargs=None,
    policy="mixed_bfloat16",
    safe_mode=True,
    tmp_path=None,
):
    """Built under ``policy``, reloaded from ``.keras`` under ``float32``: same policies.

    ``cls(**init_kwargs)`` is built while the global policy is ``policy``,
    called on ``input_data`` inside a functional model, saved, and loaded back
    after the global policy is reset to ``float32``. The layer and each of its
    sublayers (`dtype_policies`) must have the policy they had when built, and
    the outputs must be the same. This catches networks that rely on the
    global policy: a functional ``Model.__init__`` drops ``dtype``, and a
    sublayer built without ``dtype=`` takes the global policy of the moment.
    The global policy is restored afterwards.
    """
    call_kwargs = call_kwargs or {}
    previous = keras.config.dtype_policy()
    try:
        keras.config.set_dtype_policy(policy)
        layer = cls(**init_kwargs)
        model, model_inputs = functional_model(layer, input_data, call_kwargs)
        expected = model(model_inputs)
        built = dtype_policies(layer)
        keras.config.set_dtype_policy("float32")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(os.fspath(tmp_path or tmp), f"{layer.name}_{policy}.keras")
            model.save(path)
            loaded = keras.saving.load_model(path, safe_mode=safe_mode)
        reloaded = dtype_policies(loaded.get_layer(layer.name))
        # Auto-generated names get fresh suffixes on reload: pair sublayers by position.
        assert len(reloaded) == len(built), (
            f"the reloaded layer has other sublayers: {reloaded} != {built}"
        )
        changed = [
            f"{name}: {before} -> {after}"
            for (name, before), (_, after) in zip(built, reloaded, strict=True)
            if before != after
        ]
        assert not changed, (
            f"dtype policies changed when a model built under {policy} was reloaded under "
            f"float32: {changed}"
        )
        _assert_allclose(
            loaded(model_inputs), expected, f"outputs differ after a {policy} .keras round trip"
        )
    finally:
        keras.config.set_dtype_policy(previous)


def run_layer_checks(
    cls,
    init_kwargs,
    input_data,
    expected_output_shape=None,
    call_kwargs=None,
    run_fit=True,
    run_mixed_precision=True,
    safe_mode=True,
    tmp_path=None,
):
    """Runs the standard checks (module docstring) on ``cls(**init_kwargs)``.

    Args:
        cls: a ``keras.layers.Layer`` or ``keras.Model`` subclass.
        init_kwargs: its constructor arguments.
        input_data: the first call argument (array, tensor, or dict of them).
        expected_output_shape: the eager output shape, batch included.
        call_kwargs: further call arguments (e.g. ``{"mask": ...}``); tensors
            among them become model inputs in the functional checks.
        run_fit: run the ``fit`` check (needs a float output).
        run_mixed_precision: run the mixed-precision checks (6 and 7).
        safe_mode: passed to deserialisation (``False`` for layers that load
            external code, like `HubEncoder`).
        tmp_path: a folder for the ``.keras`` file (e.g. pytest's ``tmp_path``);
            a temporary folder by default.

    Returns:
        The layer, for further assertions.
    """
    input_data = _to_tensors(input_data)
    call_kwargs = _to_tensors(call_kwargs or {})

    layer = cls(**init_kwargs)
    output = _call(layer, input_data, call_kwargs)
    if expected_output_shape is not None:
        assert tuple(output.shape) == tuple(expected_output_shape), (
            f"output shape {tuple(output.shape)} != expected {tuple(expected_output_shape)}"
        )

    check_config_round_trip(layer, input_data, call_kwargs, safe_mode=safe_mode)

    model, model_inputs = functional_model(layer, input_data, call_kwargs)
    symbolic_shape = tuple(model.outputs[0].shape)
    assert symbolic_shape[1:] == tuple(output.shape[1:]), (
        f"symbolic output shape {symbolic_shape} does not match eager {tuple(output.shape)}"
    )
    _assert_allclose(model(model_inputs), output, "functional model output differs from eager")

    check_saving(model, model_inputs, tmp_path=tmp_path, safe_mode=safe_mode)
    if run_fit:
        check_fit(model, layer, model_inputs)
    if run_mixed_precision:
        check_mixed_precision(cls, init_kwargs, input_data, call_kwargs)
        check_dtype_round_trip(
            cls, init_kwargs, input_data, call_kwargs, safe_mode=safe_mode, tmp_path=tmp_path
        )
    return layer


# === A real `mmrec serve` for tests ==============================================================

READY_LINE = "mmrec serve: ready "


def start_server(base, log_path, *extra_args, timeout=120):
    """``mmrec serve`` for ``base`` in a subprocess on free loopback ports, once it is ready.

    ``extra_args`` are further ``mmrec serve`` options. Returns ``(process, ready,
    lines, reader)``: the `subprocess.Popen`, the JSON of its ready line (the
    ports it bound, the models it serves), the list of lines it prints (filled
    as it prints them) and the thread that reads them. Its stderr goes to
    ``log_path``, quoted in the error if it does not start within ``timeout`` s.
    """
    import json
    import queue
    import subprocess
    import sys
    import threading

    args = [sys.executable, "-m", "mmrec.cli", "serve", "--model-base-path", str(base)]
    args += ["--rest-port", "0", "--grpc-port", "0", *map(str, extra_args)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    stderr = open(log_path, "w")  # noqa: SIM115  (closed with the process)
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, bufsize=1
    )
    lines, ready = [], queue.Queue()

    def read():
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(READY_LINE):
                ready.put(json.loads(line[len(READY_LINE) :]))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        return process, ready.get(timeout=timeout), lines, reader
    except queue.Empty:
        process.kill()
        with open(log_path) as f:
            raise AssertionError(f"mmrec serve did not start: {lines} {f.read()[-2000:]}") from None


def serving(base, log_path, *extra_args, timeout=120):
    """`start_server` as a generator for a pytest fixture: yields the ready line's JSON
    (``ready["rest"]``, ``ready["grpc"]``), then stops the server (SIGTERM, then kill).

    Example::

        @pytest.fixture(scope="module")
        def served(exported, tmp_path_factory):
            yield from serving(exported, tmp_path_factory.mktemp("server") / "server.log")
    """
    process, ready, _, _ = start_server(base, log_path, *extra_args, timeout=timeout)
    try:
        yield ready
    finally:
        stop_server(process)


def stop_server(process, timeout=30):
    """Stops a `start_server` process if it still runs: SIGTERM, then kill after ``timeout``."""
    import signal
    import subprocess

    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()


# === Tiny "pretrained" language models, saved as local keras-hub presets ==========================

# GPT-2's pre-tokenizer (words with their leading space, numbers, punctuation runs, spaces),
# with `re`'s classes for \p{L} / \p{N}: close enough to learn merges from.
_GPT2_PRETOKENS = r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+"
_GPT2_END_TOKEN = "<|endoftext|>"


def _gpt2_byte_alphabet():
    """GPT-2's byte → printable character table (a space becomes "Ġ", a newline "Ċ")."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in printable]
    table = {b: chr(b) for b in printable}
    table.update({b: chr(256 + i) for i, b in enumerate(others)})
    return table


def _shapes_texts(num_texts=300, seed=0):
    """Shapes descriptions (every template, with synonyms) and every synonym phrase."""
    from mmrec.data.synthetic import ShapesConfig, attribute_synonyms, describe, sample_items

    items = sample_items(ShapesConfig(num_items=num_texts), np.random.default_rng(seed))
    texts = [describe(items, i) for i in range(num_texts)]
    return texts + [
        p for table in attribute_synonyms().values() for ps in table.values() for p in ps
    ]


def _learn_bpe(texts, max_merges=1000):
    """Byte-level BPE merges learnt from ``texts`` until every word is one token.

    Returns ``(vocabulary, merges)`` for `keras_hub.models.GPT2Tokenizer`: the end
    token (id 0, so the tokenizer's pad id 0 is the end token), all 256 byte
    characters (every text round-trips), then one token per merge.
    """
    import collections
    import re

    alphabet = _gpt2_byte_alphabet()
    words = collections.Counter()
    for text in texts:  # each word with and without its leading space (after "(" it has none)
        for piece in re.findall(_GPT2_PRETOKENS, text) + re.findall(_GPT2_PRETOKENS, " " + text):
            words["".join(alphabet[b] for b in piece.encode("utf-8"))] += 1
    splits = {word: list(word) for word in words}
    merges = []
    while len(merges) < max_merges:
        pairs = collections.Counter()
        for word, count in words.items():
            for pair in zip(splits[word], splits[word][1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))  # most frequent, then sorted
        merges.append(best)
        for word, split in splits.items():
            merged, i = [], 0
            while i < len(split):
                if tuple(split[i : i + 2]) == best:
                    merged.append(best[0] + best[1])
                    i += 2
                else:
                    merged.append(split[i])
                    i += 1
            splits[word] = merged
    vocabulary = {_GPT2_END_TOKEN: 0}
    for token in [*alphabet.values(), *(a + b for a, b in merges)]:
        vocabulary.setdefault(token, len(vocabulary))
    return vocabulary, [f"{a} {b}" for a, b in merges]


def _redraw_weights(model, seed, stddev=0.2):
    """Deterministic random weights without global state: every weight that is not
    constant (norm scales and biases keep their initial ones and zeros) from N(0, stddev).

    Ten times GPT-2's initial 0.02: through a tied embedding of width 16, logits
    then spread (std near 1) as a trained model's do, instead of being all but
    uniform, so that tuning a prefix or LoRA factors visibly moves them."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        value = keras.ops.convert_to_numpy(weight)
        if value.size and np.ptp(value) > 0:
            weight.assign(rng.normal(0.0, stddev, value.shape).astype(value.dtype))


def save_tiny_gpt2_preset(path, texts=None, seed=0):
    """Saves a tiny random GPT-2 with a small BPE vocabulary as a local keras-hub preset.

    A stand-in for a downloaded preset (``gpt2_base_en``) in tests and docs: a
    `keras_hub.models.GPT2CausalLM` (2 layers, 2 heads, hidden size 16, 64
    positions, random weights from ``seed``) with its preprocessor and a
    `keras_hub.models.GPT2Tokenizer` whose byte-level BPE merges are learnt from
    ``texts`` (default: shapes descriptions), so that each of their words is one
    token ("Ġ"-prefixed after a space, as in GPT-2). The vocabulary holds the
    256 byte characters, so any text round-trips; ``"<|endoftext|>"`` is id 0
    (start, end and pad token).

    Args:
        path: the directory to write (created; ``save_to_preset``'s layout).
        texts: strings to learn the merges from (``None``: shapes descriptions).
        seed: the weights' seed.

    Returns:
        ``path``, for ``keras_hub.models.Backbone.from_preset(path)`` or
        ``PretrainedTextDecoder(path, ...)``.

    Example:

    >>> path = save_tiny_gpt2_preset(os.path.join(tmp, "gpt2"))
    >>> tokenizer = keras_hub.tokenizers.Tokenizer.from_preset(path)
    >>> tokenizer.detokenize(tokenizer.tokenize(["a small red circle"]))
    ['a small red circle']
    """
    import keras_hub

    vocabulary, merges = _learn_bpe(_shapes_texts() if texts is None else list(texts))
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=len(vocabulary),
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=64,
    )
    _redraw_weights(backbone, seed)
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=64)
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=preprocessor)
    causal_lm.save_to_preset(os.fspath(path))
    return path


def save_tiny_gemma_preset(path, texts=None, seed=0):
    """Saves a tiny random Gemma with a small SentencePiece vocabulary as a local preset.

    Like `save_tiny_gpt2_preset`, for the Gemma family: a
    `keras_hub.models.GemmaCausalLM` (2 layers, 2 query heads and 1 key/value
    head of size 8, hidden size 16, random weights from ``seed``) and a
    `keras_hub.models.GemmaTokenizer` whose SentencePiece BPE model is trained
    on ``texts`` (default: shapes descriptions), with byte fallback (any text
    round-trips) and Gemma's ``<pad>`` (0), ``<eos>`` (1), ``<bos>`` (2) and
    ``<unk>`` (3). Training the vocabulary needs the ``sentencepiece`` package
    (an optional dependency: `ImportError` without it).

    Returns:
        ``path``.
    """
    import io

    import keras_hub

    try:
        import sentencepiece
    except ImportError as error:
        raise ImportError(
            "save_tiny_gemma_preset trains a SentencePiece vocabulary: `pip install sentencepiece`."
        ) from error
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_shapes_texts() if texts is None else list(texts)),
        model_writer=proto,
        model_type="bpe",
        vocab_size=600,
        hard_vocab_limit=False,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece="<pad>",
        eos_piece="<eos>",
        bos_piece="<bos>",
        unk_piece="<unk>",
        num_threads=1,
        minloglevel=2,
    )
    tokenizer = keras_hub.models.GemmaTokenizer(proto=proto.getvalue())
    backbone = keras_hub.models.GemmaBackbone(
        vocabulary_size=tokenizer.vocabulary_size(),
        num_layers=2,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        head_dim=8,
    )
    _redraw_weights(backbone, seed)
    preprocessor = keras_hub.models.GemmaCausalLMPreprocessor(tokenizer, sequence_length=64)
    causal_lm = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=preprocessor)
    causal_lm.save_to_preset(os.fspath(path))
    return path
