"""mmrec: multimodal content generation for recommender systems (Keras 3 on TensorFlow).

Sub-packages follow the data flow: ``data`` (TFRecords and tf.data) → ``layers``
(preprocessing, encoders, fusion, user tower) → ``models`` (recommender, GAN, VAE)
→ ``evaluation`` / ``training`` / ``export`` → ``serving``.

They are imported on first use (``mmrec.models.Recommender`` works after a plain
``import mmrec``), so that ``mmrec.serving`` stays free of model code, as TF
Serving's contract requires.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("data", "layers", "models", "evaluation", "training", "export", "serving")


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"mmrec.{name}")
    raise AttributeError(f"module 'mmrec' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBPACKAGES])
