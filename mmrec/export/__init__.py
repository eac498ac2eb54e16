"""mmrec.export: trained models → SavedModels that TF Serving (or `mmrec serve`) serves as they are.

``export_saved_model(model, "savedmodels")`` writes
``savedmodels/<name>/<version>/`` (named signatures, in-graph tokenisation,
warm-up requests), validated in a fresh TensorFlow + tensorflow-text process and
published atomically, and lists the model in ``savedmodels/models.config``.
See ``docs/serving.md``.
"""

from mmrec.export.layout import SERVING_ROOT, read_models_config, update_models_config, versions
from mmrec.export.saved_model import export_saved_model
from mmrec.export.signatures import Endpoint, build_endpoints, seeded_noise
from mmrec.export.warmup import ExportError, validate_saved_model

__all__ = [
    "SERVING_ROOT",
    "Endpoint",
    "ExportError",
    "build_endpoints",
    "export_saved_model",
    "read_models_config",
    "seeded_noise",
    "update_models_config",
    "validate_saved_model",
    "versions",
]
