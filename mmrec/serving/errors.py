"""One error type for the server and the client, with TF Serving's codes.

TF Serving reports failures as a canonical status code (the gRPC codes) and maps
it to an HTTP status for REST; `ServingError` carries the code name and the
message, and knows both mappings.
"""

from __future__ import annotations

import logging
import uuid

logger = logging.getLogger("mmrec.serving")

# TF Serving's HTTP mapping of canonical codes (tensorflow_serving/model_servers/
# http_rest_api_handler); the rest map to 500.
HTTP_STATUS = {
    "OK": 200,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class ServingError(Exception):
    """A request that failed, with its canonical code (``"NOT_FOUND"``, …) and message.

    Attributes:
        code: the canonical status code name, as in `grpc.StatusCode`.
        message: what went wrong and what was expected.
        http_status: the HTTP status TF Serving's REST API uses for ``code``
            (or the one a REST response actually had, on the client side).
    """

    def __init__(self, code, message, http_status=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or HTTP_STATUS.get(code, 500)

    def __str__(self):
        return f"{self.code}: {self.message}"

    @property
    def grpc_code(self):
        import grpc

        return getattr(grpc.StatusCode, self.code, grpc.StatusCode.UNKNOWN)


def invalid(message):
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message):
    return ServingError("NOT_FOUND", message)


def log_internal_error(error):
    """Logs an unexpected exception with its traceback; returns the message for the client.

    The client learns that the server failed and an id to find the log entry by,
    not the exception's text (which can hold paths, tensors or other requests' data).
    """
    incident = uuid.uuid4().hex[:12]
    logger.error("internal error %s", incident, exc_info=error)
    return f"Internal error (id {incident}); the server log has the details."
