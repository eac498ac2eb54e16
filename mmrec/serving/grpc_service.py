"""TF Serving's gRPC API: ``PredictionService`` (Predict, GetModelMetadata) and ``ModelService``
(GetModelStatus), with the messages and stubs of ``tensorflow-serving-api``.

Failures abort the call with their canonical code (``NOT_FOUND`` for an unknown
model, version or signature, ``INVALID_ARGUMENT`` for inputs that do not fit
the signature, ``RESOURCE_EXHAUSTED`` for a message over the size limit) and a
message that says what was expected.
"""

from __future__ import annotations

from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mmrec.serving import tensor_protos
from mmrec.serving.errors import ServingError, invalid, log_internal_error


def _version(model_spec):
    if model_spec.WhichOneof("version_choice") == "version_label":
        raise ServingError(
            "UNIMPLEMENTED", "Version labels are not supported by mmrec serve; set version"
        )
    return model_spec.version.value if model_spec.HasField("version") else None


def _guarded(method):
    """Runs a servicer method, turning `ServingError` into an aborted call with its code."""

    def wrapper(self, request, context):
        with self.in_flight:
            try:
                return method(self, request, context)
            except ServingError as e:
                context.abort(e.grpc_code, e.message)
            except Exception as e:  # a bug, not a bad request: logged here, not sent
                context.abort(grpc.StatusCode.INTERNAL, log_internal_error(e))

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``Predict`` and ``GetModelMetadata`` over a `ModelManager`."""

    def __init__(self, manager, in_flight, options):
        self.manager = manager
        self.in_flight = in_flight
        self.options = options

    @_guarded
    def Predict(self, request, context):
        servable = self.manager.get(request.model_spec.name, _version(request.model_spec))
        signature_name = request.model_spec.signature_name or "serving_default"
        # A TensorProto's shape may claim far more values than it carries (a fill):
        # checked before decoding, so that a small request cannot allocate gigabytes.
        batch_limit = self.options.batch_limit(servable.name)
        max_bytes = self.options.max_body_bytes
        inputs = {
            key: tensor_protos.to_array(key, proto, batch_limit, max_bytes)
            for key, proto in request.inputs.items()
        }
        outputs = servable.predict(
            signature_name, inputs, batch_limit, tuple(request.output_filter)
        )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response

    @_guarded
    def GetModelMetadata(self, request, context):
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise invalid(
                "Expected metadata_field to be ['signature_def'] (the only metadata TF Serving "
                f"serves). Received: {fields}"
            )
        servable = self.manager.get(request.model_spec.name, _version(request.model_spec))
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """``GetModelStatus`` (model reloading through ``HandleReloadConfigRequest`` is not offered:
    the server polls its folders instead)."""

    def __init__(self, manager, in_flight):
        self.manager = manager
        self.in_flight = in_flight

    @_guarded
    def GetModelStatus(self, request, context):
        status = self.manager.status(request.model_spec.name, _version(request.model_spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        for entry in status["model_version_status"]:
            item = response.model_version_status.add()
            item.version = int(entry["version"])
            item.state = get_model_status_pb2.ModelVersionStatus.State.Value(entry["state"])
            code = getattr(grpc.StatusCode, entry["status"]["error_code"])
            item.status.error_code = code.value[0]
            item.status.error_message = entry["status"]["error_message"]
        return response


def grpc_server(manager, in_flight, address, options, credentials=None):
    """A `grpc.Server` (not started yet) bound to ``address``; returns ``(server, port)``.

    ``options`` (`ServerOptions`) sets the limits and ``grpc_max_threads``, the
    threads that run the calls (more calls wait their turn); ``credentials``
    (`grpc.ServerCredentials`) serve TLS instead of plain text.
    """
    max_message_bytes = options.max_body_bytes
    channel_options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max(max_message_bytes, 64 << 20)),
        ("grpc.so_reuseport", 0),
    ]
    workers = futures.ThreadPoolExecutor(max_workers=options.grpc_max_threads)
    server = grpc.server(workers, options=channel_options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, in_flight, options), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(manager, in_flight), server
    )
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"Could not bind the gRPC port at {address} (in use?)")
    return server, port
