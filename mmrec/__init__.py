"""mmrec: multimodal content generation for recommender systems (Keras 3 on TensorFlow).

Sub-packages follow the data flow: ``data`` (TFRecords and tf.data) → ``layers``
(preprocessing, encoders, fusion, user tower) → ``models`` (recommender, GAN, VAE)
→ ``evaluation`` / ``export`` / ``serving``.
"""

__version__ = "0.1.0"

from mmrec import data  # noqa: E402,F401
