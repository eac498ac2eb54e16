"""TLS for the server from TF Serving's ``--ssl_config_file``: an ``SSLConfig`` text proto.

TF Serving's file (``tensorflow_serving/config/ssl_config.proto``) holds the PEM
texts themselves, not paths::

    server_key: "-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----\\n"
    server_cert: "-----BEGIN CERTIFICATE-----\\n...\\n-----END CERTIFICATE-----\\n"
    custom_ca: "..."          # optional: the CA that signs client certificates
    client_verify: true       # optional: require a client certificate signed by custom_ca

The ``tensorflow-serving-api`` wheel does not ship that message, so it is built
here from the same four fields and parsed with protobuf's own text-format
parser (strings may be split across lines and use escapes, as in any text proto).
The same configuration secures gRPC and, unlike TF Serving, the REST port too.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from dataclasses import dataclass

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_FIELDS = (
    ("server_key", descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
    ("server_cert", descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
    ("custom_ca", descriptor_pb2.FieldDescriptorProto.TYPE_STRING),
    ("client_verify", descriptor_pb2.FieldDescriptorProto.TYPE_BOOL),
)


def _ssl_config_class():
    """The ``tensorflow.serving.SSLConfig`` message class, from its field list."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="mmrec_ssl_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    message = file_proto.message_type.add(name="SSLConfig")
    for number, (name, kind) in enumerate(_FIELDS, start=1):
        message.field.add(
            name=name,
            number=number,
            type=kind,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.SSLConfig")
    )


@dataclass(frozen=True)
class SSLConfig:
    """The PEM texts of an ``--ssl-config-file``."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False

    @classmethod
    def from_file(cls, path):
        """Parses TF Serving's text proto; ValueError says what is wrong with it."""
        with open(path) as f:
            text = f.read()
        message = _ssl_config_class()()
        try:
            text_format.Parse(text, message)
        except text_format.ParseError as e:
            raise ValueError(
                f"Expected {path} to be an SSLConfig text proto (server_key, server_cert, "
                f"custom_ca, client_verify). Received a parse error: {e}"
            ) from e
        config = cls(
            message.server_key, message.server_cert, message.custom_ca, message.client_verify
        )
        if not config.server_key or not config.server_cert:
            raise ValueError(f"Expected {path} to set server_key and server_cert (PEM texts).")
        if config.client_verify and not config.custom_ca:
            raise ValueError(
                f"{path} sets client_verify: true without custom_ca; expected the PEM of the CA "
                "that signs client certificates."
            )
        return config

    def grpc_credentials(self):
        """`grpc.ServerCredentials` for `grpc.Server.add_secure_port`."""
        import grpc

        return grpc.ssl_server_credentials(
            [(self.server_key.encode(), self.server_cert.encode())],
            root_certificates=self.custom_ca.encode() or None,
            require_client_auth=self.client_verify,
        )

    def ssl_context(self):
        """A server-side `ssl.SSLContext` for the REST port."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # The standard library loads keys from files only; the files live for this call.
        with tempfile.TemporaryDirectory() as folder:
            cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            with open(cert, "w") as f:
                f.write(self.server_cert)
            with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(self.server_key)
            context.load_cert_chain(cert, key)
        if self.custom_ca:
            context.load_verify_locations(cadata=self.custom_ca)
        if self.client_verify:
            context.verify_mode = ssl.CERT_REQUIRED
        return context
