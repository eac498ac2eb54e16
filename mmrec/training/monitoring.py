"""Callbacks that watch a training run: TensorBoard scalars, NaN guard, a test hook.

Where it sits in the data flow: `mmrec.training.train` passes them to
``model.fit`` next to Keras' own (`BackupAndRestore`, `ModelCheckpoint`,
`CSVLogger`) and `SampleGrid`.
"""

from __future__ import annotations

import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# Test hook: seconds to sleep after every training step (the resume tests kill a run
# mid-epoch; tiny runs would otherwise finish before the kill).
PAUSE_ENV = "MMREC_TRAIN_PAUSE_PER_STEP"


def write_scalar_summary(name, value, step) -> None:
    """A TensorBoard scalar, written with core ``tf.summary.write``.

    ``tf.summary.scalar`` lives in the tensorboard package, which mmrec does not
    need; this writes the same event (the scalars plugin's float32 tensor), so
    TensorBoard shows it either way.
    """
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(name, tf.constant(float(value), tf.float32), step=step, metadata=metadata)


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore`, plus the state of the model's random generators.

    Keras backs up the weights and the optimizer, but not the state of the
    model's `keras.random.SeedGenerator`s (a GAN's noise, a VAE's sampling, dropout
    masks), which are variables outside ``model.weights``: a resumed run would
    draw the noise of the first epochs again. They are saved next to the backup
    (``seed_states.json``) and restored with it, so a resumed run draws what an
    uninterrupted one would.
    """

    def on_epoch_end(self, epoch, logs=None):
        # An epoch that ended on a NaN (TerminateOnNaN) is not backed up: the last good
        # state stays the one to resume from.
        if any(not math.isfinite(_scalar(v)) for v in (logs or {}).values()):
            return
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        super()._save_model()
        states = [keras.ops.convert_to_numpy(v).tolist() for v in _seed_states(self.model)]
        path = os.path.join(self.backup_dir, "seed_states.json")
        with open(f"{path}.tmp", "w") as f:
            json.dump(states, f)
        os.replace(f"{path}.tmp", path)

    def _load_model(self):
        super()._load_model()
        path = os.path.join(self.backup_dir, "seed_states.json")
        if not os.path.exists(os.path.join(self.backup_dir, "training_metadata.json")):
            return
        if not os.path.exists(path):
            return
        with open(path) as f:
            states = json.load(f)
        variables = _seed_states(self.model)
        if len(states) == len(variables):
            for variable, state in zip(variables, states):
                variable.assign(np.asarray(state, dtype=variable.dtype))


def _seed_states(model):
    """The model's `SeedGenerator` state variables (the variables that are not weights)."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights and "seed_generator" in v.path]


class TensorBoardScalars(keras.callbacks.Callback):
    """Epoch metrics as TensorBoard scalars, laid out like `keras.callbacks.TensorBoard`.

    ``<log_dir>/train`` holds ``epoch_<metric>`` (and ``epoch_learning_rate``),
    ``<log_dir>/validation`` the ``val_`` metrics without their prefix, so
    TensorBoard draws training and validation curves on one chart. Works without
    the tensorboard package (`write_scalar_summary`); ``pip install tensorboard``
    to view them (``tensorboard --logdir runs/NAME/logs``).

    Example:

    >>> callback = TensorBoardScalars("/tmp/run/logs")
    """

    def __init__(self, log_dir):
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self._writers = {}

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.log_dir, name))
        return self._writers[name]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and "learning_rate" not in logs:
            try:
                logs["learning_rate"] = float(
                    keras.ops.convert_to_numpy(optimizer.learning_rate).reshape(())
                )
            except (TypeError, ValueError):
                pass
        for split, prefix in (("train", ""), ("validation", "val_")):
            values = {
                k[len(prefix) :]: v
                for k, v in logs.items()
                if (k.startswith("val_") == (split == "validation"))
            }
            if not values:
                continue
            with self._writer(split).as_default():
                for name, value in values.items():
                    write_scalar_summary(f"epoch_{name}", _scalar(value), step=epoch)
            self._writer(split).flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class TerminateOnNaN(keras.callbacks.TerminateOnNaN):
    """Stops training when *any* logged metric becomes NaN or infinite.

    Keras' version watches ``loss`` only; a GAN logs ``d_loss`` and ``g_loss``.
    ``stopped_at`` records ``(epoch, batch, metric)`` of the first bad value.
    """

    def __init__(self):
        super().__init__()
        self.stopped_at = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            value = _scalar(value)
            if math.isnan(value) or math.isinf(value):
                print(f"mmrec: batch {batch}: {name} is {value}; stopping training.", flush=True)
                self.stopped_at = (self._epoch, batch, name)
                self.model.stop_training = True
                return


class PausePerStep(keras.callbacks.Callback):
    """Sleeps ``seconds`` after each training step (test hook, see ``PAUSE_ENV``)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = float(seconds)

    def on_train_batch_end(self, batch, logs=None):
        time.sleep(self.seconds)


def _scalar(value) -> float:
    return float(np.asarray(keras.ops.convert_to_numpy(value)).reshape(-1)[0])
