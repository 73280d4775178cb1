"""Certificates for the TLS tests, made at test time: a CA, a server certificate for
127.0.0.1 and localhost signed by it (its key in several encodings), a client certificate.

conftest.py registers the module-scoped `pki` fixture for every test file; test files import
the helpers: `from pki import client, tls_flags`.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def x509_name(common: str) -> x509.Name:
    """The subject (or issuer) name with this common name only."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _cert(subject: str, key, issuer_key, issuer: str, ca: bool, san: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509_name(subject))
        .issuer_name(x509_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def x509_certificate(subject: str, key, issuer_key, issuer: str) -> x509.Certificate:
    """A client (end-entity) certificate for `subject`, signed by `issuer_key`."""
    return _cert(subject, key, issuer_key, issuer, ca=False, san=False)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """ca.pem; server chain (leaf first, then the CA) with a plain PKCS#8 key, a PKCS#1 RSA
    key, an encrypted PKCS#8 key (password "s3cret"); a client certificate and key; a renewed
    server certificate; a leaf signed by an intermediate CA, with the intermediate after it."""
    d = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test CA", ca_key, ca_key, "test CA", ca=True, san=False)
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = _cert("localhost", server_key, ca_key, "test CA", ca=False, san=True)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _cert("client one", client_key, ca_key, "test CA", ca=False, san=False)
    renewed_key = ec.generate_private_key(ec.SECP256R1())
    renewed = _cert("localhost renewed", renewed_key, ca_key, "test CA", ca=False, san=True)
    # A chain as certbot's fullchain.pem has it: the leaf, then the intermediate that signed
    # it; a client that trusts only the root verifies it only if both are sent.
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = _cert("test intermediate", intermediate_key, ca_key, "test CA", ca=True,
                         san=False)
    issued_key = ec.generate_private_key(ec.SECP256R1())
    issued = _cert("localhost issued", issued_key, intermediate_key, "test intermediate",
                   ca=False, san=True)
    files = {
        "ca": _pem(ca),
        "chain": _pem(server) + _pem(ca),
        "key": server_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()),
        "rsa_key": server_key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption()),
        "encrypted_key": server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret")),
        "client": _pem(client),
        "client_key": client_key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()),
        "not_pem": b"this is not a certificate\n",
        # A renewal: another certificate (and key) for the same names, from the same CA.
        "renewed_chain": _pem(renewed) + _pem(ca),
        "renewed_key": renewed_key.private_bytes(serialization.Encoding.PEM,
                                                 serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()),
        "intermediate_chain": _pem(issued) + _pem(intermediate),
        "intermediate_key": issued_key.private_bytes(serialization.Encoding.PEM,
                                                     serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = d / f"{name}.pem"
        paths[name].write_bytes(data)
    return paths


def tls_flags(pki, key: str = "key", *extra: str) -> tuple[str, ...]:
    return ("--ssl-certfile", str(pki["chain"]), "--ssl-keyfile", str(pki[key]), *extra)


def client(pki, cert: tuple[str, str] | None = None) -> httpx.Client:
    """An httpx client that trusts the test CA (and presents `cert`, when given)."""
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if cert:
        context.load_cert_chain(*cert)
    return httpx.Client(verify=context, trust_env=False, timeout=10.0)
