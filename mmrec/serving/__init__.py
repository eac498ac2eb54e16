"""mmrec.serving: a local, TF-Serving-compatible model server (REST + gRPC) and its client.

``mmrec serve --model-base-path savedmodels`` serves what `mmrec.export` wrote,
with TF Serving's REST API and gRPC ``PredictionService``; `Client` calls it (or
the real TF Serving). The package needs only TensorFlow, tensorflow-text, grpc
and the ``tensorflow-serving-api`` protos — no mmrec model code. See
``docs/serving.md``, which also shows the same folder under the real
``tensorflow/serving`` image and KServe.
"""

from mmrec.serving.client import Client
from mmrec.serving.errors import ServingError
from mmrec.serving.options import ServerOptions
from mmrec.serving.servables import ModelManager, Servable
from mmrec.serving.server import ModelServer

__all__ = ["Client", "ModelManager", "ModelServer", "Servable", "ServerOptions", "ServingError"]
