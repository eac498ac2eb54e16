"""`export_saved_model`: a trained mmrec model → a TF Serving version folder.

Where it sits in the data flow: the last step after training. It builds the
model's signatures (`mmrec.export.signatures`), writes them with
`keras.export.ExportArchive` into a temporary folder, adds the vocabulary and
the warm-up requests, checks the result in a fresh TensorFlow process, then
publishes it as ``<base_dir>/<name>/<version>/`` and lists it in
``<base_dir>/models.config``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time

import keras

from mmrec.export import layout, signatures

# Imported under another name: `warmup` is also an argument of `export_saved_model`.
from mmrec.export import warmup as records

# Test hook: seconds to sleep after validation, right before the folder is renamed
# to its version (the tests kill the process there to prove the export is atomic).
PAUSE_ENV = "MMREC_EXPORT_PAUSE_BEFORE_RENAME"


def export_saved_model(
    model,
    base_dir="savedmodels",
    name=None,
    version=None,
    warmup=True,
    validate=True,
    k=10,
    extra_endpoints=(),
):
    """Exports ``model`` for TF Serving as ``<base_dir>/<name>/<version>/``.

    The folder holds ``saved_model.pb``, ``variables/``, ``assets/`` (the
    tokenizer's ``vocab.txt``, for reference: tensorflow-text's
    ``FastWordpieceTokenizer`` compiles the vocabulary into the graph, so the
    graph reads no asset) and ``assets.extra/tf_serving_warmup_requests`` (one
    ``PredictionLog`` per signature). Signatures, the first also ``serving_default``:

    * `Recommender`: ``recommend`` (``history`` int32 ``[B, L]`` padded with -1 →
      ``item_ids`` int32 ``[B, k]``, ``scores`` float32 ``[B, k]``, history
      excluded), ``embed_user`` (→ ``user_embedding``), ``embed_item`` (the
      model's modalities, ``text`` as ``tf.string`` → ``item_embedding``);
    * `ConditionalGAN` / `ConditionalVAE`: ``generate_image`` (the condition —
      ``label_<attribute>``, ``text`` or ``history`` — and ``seed`` int64 ``[B]``
      → ``images`` float32 and ``images_png_bytes``);
    * `ConditionalTextGenerator`: ``generate_text`` (the condition —
      ``label_<attribute>`` or ``history`` — and ``seed`` int32 ``[B]`` → ``text``
      tf.string ``[B]``, sampled and detokenised in the graph);
    * any functional `keras.Model`: ``serve`` (its named inputs → named outputs).

    Floating outputs are float32, also for mixed-precision models. The export is
    atomic: it is written to ``<base_dir>/<name>/.tmp-…`` (ignored by TF Serving),
    validated, then renamed; a failed or killed export leaves no version folder.

    Args:
        model: the model to export.
        base_dir: the folder served by TF Serving / ``mmrec serve``.
        name: the model's name in URLs and ``models.config``; default ``model.name``.
        version: a positive int; default: the highest existing version + 1.
        warmup: write ``assets.extra/tf_serving_warmup_requests``.
        validate: load the export in a fresh process that imports only
            ``tensorflow`` and ``tensorflow_text`` (the op set TF Serving links),
            reject Python-only or unknown ops, replay the warm-up requests and
            compare with the in-memory model (raises `ExportError`).
        k: how many items ``recommend`` returns (fixed in the graph).
        extra_endpoints: further `Endpoint`s (signatures of your own, see
            docs/extending.md), exported after the model's own; they get
            warm-up records, validation and serving like those.

    Returns:
        The path of the new version folder.

    Example:

    ```python
    rec = mmrec.models.Recommender.from_dataset(data)
    path = mmrec.export.export_saved_model(rec, "savedmodels", name="rec")
    # savedmodels/rec/1, and savedmodels/models.config lists "rec"
    ```
    """
    name = layout.check_model_name(name or _default_name(model))
    if version is not None and (
        not isinstance(version, int) or isinstance(version, bool) or version < 1
    ):
        raise ValueError(f"Expected version to be a positive int. Received: version={version!r}")
    model_dir = os.path.join(os.fspath(base_dir), name)
    if version is not None and os.path.exists(os.path.join(model_dir, str(version))):
        raise FileExistsError(f"Version {version} of '{name}' already exists in {model_dir}")
    endpoints, vocabulary = signatures.build_endpoints(model, k=k)
    endpoints = endpoints + _check_extra_endpoints(extra_endpoints, endpoints)
    os.makedirs(model_dir, exist_ok=True)
    layout.remove_stale_temporaries(model_dir)

    temporary = layout.temporary_dir(model_dir)
    # Requests and expected outputs for the check; a sibling named like the temporary
    # folder, so that a killed export's leftovers are cleaned up with it.
    scratch = f"{temporary}-scratch"
    os.makedirs(scratch)
    try:
        archive = keras.export.ExportArchive()
        functions = {}
        for endpoint in endpoints:
            functions[endpoint.name] = archive.add_endpoint(
                endpoint.name, endpoint.fn, input_signature=[endpoint.input_signature]
            )
        archive.write_out(temporary, verbose=False)
        if vocabulary is not None:
            os.makedirs(os.path.join(temporary, "assets"), exist_ok=True)
            with open(os.path.join(temporary, "assets", "vocab.txt"), "w") as f:
                f.write("".join(f"{token}\n" for token in vocabulary))
        requests = os.path.join(scratch, "requests.tfrecord")
        if warmup or validate:
            records.write_requests(requests, name, endpoints)
        if warmup:
            destination = os.path.join(temporary, records.WARMUP_FILE)
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            shutil.copyfile(requests, destination)
        if validate:
            expected = os.path.join(scratch, "expected.npz")
            records.save_expected(expected, records.reference_outputs(functions, endpoints))
            records.validate_saved_model(temporary, requests, expected)
        _pause_for_tests()
        number = layout.publish(temporary, model_dir, version)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    layout.update_models_config(os.fspath(base_dir), name)
    return os.path.join(model_dir, str(number))


def _check_extra_endpoints(extra, endpoints):
    extra = list(extra)
    names = [e.name for e in endpoints]
    for endpoint in extra:
        if not isinstance(endpoint, signatures.Endpoint):
            raise ValueError(
                "Expected extra_endpoints to be mmrec.export.Endpoint objects. "
                f"Received: {endpoint!r}"
            )
        if endpoint.name in names:
            raise ValueError(
                f"Expected signature names not taken by the model's own {names}. "
                f"Received: {endpoint.name!r}"
            )
        names.append(endpoint.name)
    return extra


def _default_name(model):
    return re.sub(r"[^A-Za-z0-9_.-]", "_", model.name).lstrip(".-") or "model"


def _pause_for_tests():
    seconds = os.environ.get(PAUSE_ENV)
    if seconds:
        print(
            f"mmrec export: validated; pausing {seconds} s before publishing ({PAUSE_ENV})",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(float(seconds))
