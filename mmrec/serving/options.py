"""`ServerOptions`: the limits and tuning of `ModelServer`, checked once, read by REST and gRPC.

Where it sits: ``mmrec serve``'s flags (``mmrec/cli/serving.py``) become one
`ServerOptions`; `ModelServer` hands it to the REST server and the gRPC
services, which ask it for a model's batch limit on every request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def default_num_threads():
    """TF Serving's default for its REST and gRPC thread pools: 4 per CPU."""
    return 4 * (os.cpu_count() or 1)


@dataclass(frozen=True)
class ServerOptions:
    """What a `ModelServer` accepts and how it runs, beside which models and which ports.

    Args:
        max_batch_size: largest batch (first dimension of any input) a request may
            carry, for models without their own limit.
        model_max_batch_size: ``{model name: limit}``, overriding ``max_batch_size``
            for those models (``--max-batch-size rec=8``).
        max_body_bytes: largest REST body / gRPC message accepted (413 /
            RESOURCE_EXHAUSTED), and largest decoded input.
        poll_seconds: how often the folders are checked for new versions.
        rest_api_num_threads: REST handler threads (None: 4 per CPU, as TF Serving).
        rest_api_timeout_ms: longest wait for a REST request's head, then for its
            body, and for an idle keep-alive client (TF Serving's default, 30 s).
        grpc_max_threads: gRPC threads (None: 4 per CPU, as TF Serving).
        ssl_config_file: TF Serving's ``SSLConfig`` text proto: serve gRPC and REST over TLS.

    Example:

    ```python
    options = ServerOptions(max_batch_size=64, model_max_batch_size={"generator": 4})
    options.batch_limit("generator"), options.batch_limit("rec")   # (4, 64)
    ```
    """

    max_batch_size: int = 256
    model_max_batch_size: dict = field(default_factory=dict)
    max_body_bytes: int = 16 << 20
    poll_seconds: float = 1.0
    rest_api_num_threads: int | None = None
    rest_api_timeout_ms: int = 30_000
    grpc_max_threads: int | None = None
    ssl_config_file: str | None = None

    def __post_init__(self):
        # Frozen: the defaults that depend on the machine are filled in here, once.
        for name in ("rest_api_num_threads", "grpc_max_threads"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, default_num_threads())
        object.__setattr__(self, "model_max_batch_size", dict(self.model_max_batch_size))
        limits = [
            ("max_batch_size", self.max_batch_size),
            ("max_body_bytes", self.max_body_bytes),
            ("rest_api_num_threads", self.rest_api_num_threads),
            ("rest_api_timeout_ms", self.rest_api_timeout_ms),
            ("grpc_max_threads", self.grpc_max_threads),
        ]
        limits += [
            (f"model_max_batch_size[{name!r}]", value)
            for name, value in self.model_max_batch_size.items()
        ]
        for name, value in limits:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Expected {name} to be a positive int. Received: {value!r}")
        if not self.poll_seconds > 0:
            raise ValueError(f"Expected poll_seconds > 0. Received: {self.poll_seconds!r}")

    def batch_limit(self, model):
        """The largest batch a request to ``model`` may carry."""
        return self.model_max_batch_size.get(model, self.max_batch_size)
