"""TF Serving's folder layout: numbered versions, atomic publishing and ``models.config``.

Where it sits in the data flow: `export_saved_model` writes a SavedModel into a
temporary folder next to the versions (``savedmodels/<name>/.tmp-<pid>-<id>``,
a name TF Serving ignores because it is not a number), and the functions here
turn that folder into the next version with one ``rename`` and list the model in
``savedmodels/models.config`` (TF Serving's ``ModelServerConfig``, text format).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import uuid

TEMPORARY_PREFIX = ".tmp-"
CONFIG_NAME = "models.config"
# Where `docker run -v $PWD/savedmodels:/models tensorflow/serving` mounts the base
# folder: the base_path written into models.config (see docs/serving.md).
SERVING_ROOT = "/models"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_model_name(name):
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            "Expected a model name of letters, digits, '_', '-' or '.', not starting with "
            f"'.' or '-' (it becomes a folder and a URL part). Received: name={name!r}"
        )
    return name


def versions(model_dir):
    """The numeric version folders under ``model_dir``, ascending (what TF Serving sees)."""
    if not os.path.isdir(model_dir):
        return []
    return sorted(
        int(entry)
        for entry in os.listdir(model_dir)
        if entry.isdigit() and os.path.isdir(os.path.join(model_dir, entry))
    )


def temporary_dir(model_dir):
    """A fresh folder name for an export in progress: ``.tmp-<pid>-<random>``."""
    return os.path.join(model_dir, f"{TEMPORARY_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}")


def remove_stale_temporaries(model_dir):
    """Deletes ``.tmp-<pid>-*`` folders left by exports whose process is gone (e.g. killed)."""
    if not os.path.isdir(model_dir):
        return []
    removed = []
    for entry in os.listdir(model_dir):
        if not entry.startswith(TEMPORARY_PREFIX):
            continue
        pid = entry[len(TEMPORARY_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(os.path.join(model_dir, entry), ignore_errors=True)
        removed.append(entry)
    return removed


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish(temporary, model_dir, version=None):
    """Renames the validated ``temporary`` folder to its version; returns the version.

    ``version=None`` takes the highest existing version + 1, retrying if another
    export takes that number first. The rename is atomic: a server polling the
    folder sees either no new version or the complete one.
    """
    while True:
        taken = [int(entry) for entry in os.listdir(model_dir) if entry.isdigit()]
        number = version if version is not None else max(taken, default=0) + 1
        target = os.path.join(model_dir, str(number))
        if version is not None and os.path.exists(target):
            raise FileExistsError(f"Version {version} already exists: {target}")
        try:
            os.rename(temporary, target)
            return number
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or version is not None:
                raise


@contextlib.contextmanager
def _locked(folder):
    """An exclusive advisory lock on ``folder`` (held while models.config is rewritten)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _config_proto():
    try:
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as e:  # an optional dependency (the "serving" extra)
        raise ImportError(
            "Writing models.config needs tensorflow-serving-api: pip install 'mmrec[serving]'"
        ) from e
    return model_server_config_pb2.ModelServerConfig


def read_models_config(path):
    """Parses a TF Serving ``ModelServerConfig`` text file."""
    from google.protobuf import text_format

    config = _config_proto()()
    with open(path) as f:
        text_format.Parse(f.read(), config)
    return config


def update_models_config(base_dir, name, serving_root=SERVING_ROOT):
    """Adds ``name`` to ``<base_dir>/models.config`` (created if missing); returns its path.

    Each entry is ``config { name: NAME base_path: "<serving_root>/NAME"
    model_platform: "tensorflow" }``; TF Serving then serves each model's latest
    version. Entries already there (and other settings) are kept.
    """
    from google.protobuf import text_format

    path = os.path.join(base_dir, CONFIG_NAME)
    with _locked(base_dir):
        if os.path.exists(path):
            config = read_models_config(path)
            if config.WhichOneof("config") == "custom_model_config":
                raise ValueError(
                    f"Expected {path} to hold a model_config_list. Received: custom_model_config"
                )
        else:
            config = _config_proto()()
        entries = config.model_config_list.config
        if all(entry.name != name for entry in entries):
            entry = entries.add()
            entry.name = name
            entry.base_path = f"{serving_root.rstrip('/')}/{name}"
            entry.model_platform = "tensorflow"
        partial = f"{path}.{uuid.uuid4().hex[:8]}.partial"
        with open(partial, "w") as f:
            f.write(text_format.MessageToString(config))
        os.replace(partial, path)
    return path
