"""Throwaway TLS certificates for tests and local trials of ``mmrec serve --ssl-config-file``.

`write_tls_files` makes a CA, a server certificate for ``localhost`` and
``127.0.0.1`` and a client certificate, both signed by the CA, and writes them
with the server's ``SSLConfig`` text proto: what a TLS test needs, on both
sides. The keys are unencrypted and the certificates last one day; never use
them for anything real. Needs the ``cryptography`` package (not a dependency
of mmrec; the tests have it).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
from dataclasses import dataclass


def certificate(name, issuer_key=None, issuer_name=None, ca=False):
    """A key and certificate for ``name`` (and localhost, 127.0.0.1 unless ``ca``).

    Signed by ``issuer_key`` / ``issuer_name``, or by itself when they are None.
    Returns ``(key, subject, key_pem, cert_pem)``: the key and subject to sign
    further certificates with, and the PEM texts.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key, subject, key_pem.decode(), cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class TLSFiles:
    """Paths of the files `write_tls_files` wrote."""

    ssl_config: str  # the server's SSLConfig text proto (PEM texts inside)
    ca: str  # the CA's certificate: what clients trust
    client_cert: str
    client_key: str


def write_tls_files(folder, client_verify=True):
    """Writes a CA, the server's ``ssl.config`` and a client certificate into ``folder``.

    With ``client_verify``, the server requires a client certificate signed by the CA.

    Example:

    ```python
    files = write_tls_files("tls")
    # mmrec serve --ssl-config-file tls/ssl.config
    Client("127.0.0.1:8501", ssl_ca=files.ca, ssl_cert=files.client_cert,
           ssl_key=files.client_key)
    ```
    """
    os.makedirs(folder, exist_ok=True)
    ca_key, ca_name, _, ca_pem = certificate("mmrec test CA", ca=True)
    _, _, server_key, server_cert = certificate("localhost", ca_key, ca_name)
    _, _, client_key, client_cert = certificate("an mmrec client", ca_key, ca_name)
    config = f"server_key: {json.dumps(server_key)}\nserver_cert: {json.dumps(server_cert)}\n"
    if client_verify:
        config += f"custom_ca: {json.dumps(ca_pem)}\nclient_verify: true\n"
    texts = {
        "ssl.config": config,
        "ca.pem": ca_pem,
        "client.pem": client_cert,
        "client.key": client_key,
    }
    for name, text in texts.items():
        path = os.path.join(folder, name)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(text)
    return TLSFiles(*(os.path.join(folder, name) for name in texts))
