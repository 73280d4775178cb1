"""TLS for the tls-* and HTTP/2-over-TLS scenarios: the self-signed certificate made at the
start of a run, each server's TLS flags, and the client side of the readiness checks.

Owns ``make_certificate`` (``openssl req`` into a directory; ``certificates`` wraps it in a
temporary directory that lives as long as the campaign), ``server_tls_flags`` (the flags
that give a server the key and the certificate), ``client_context`` (an ``ssl`` context
that trusts that certificate only) and ``describe_tls`` (version and cipher of a connection,
for the report). Must not start servers nor put load on them.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# The key: ECDSA on P-256, what most sites serve today; cheaper to sign with than RSA 2048, so
# tls-handshakes measures the servers' handshake paths rather than RSA arithmetic. openssl
# writes the key as unencrypted PKCS#8 ("BEGIN PRIVATE KEY"), the only form Granian reads.
TLS_CURVE = "prime256v1"
TLS_KEY_DESCRIPTION = "ECDSA P-256"
# The readiness checks and wrk connect to 127.0.0.1; the certificate names both forms.
TLS_SUBJECT = "/CN=localhost"
TLS_SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1"
TLS_DAYS = 2  # a run lasts hours at most; the files are deleted at its end


@dataclass(frozen=True)
class TlsFiles:
    """A certificate (PEM, self-signed) and its private key (PEM, PKCS#8)."""

    cert: Path
    key: Path


def openssl_command(directory: Path) -> list[str]:
    """The ``openssl req`` command line writing cert.pem and key.pem into ``directory``."""
    return [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
        f"ec_paramgen_curve:{TLS_CURVE}", "-nodes", "-keyout", str(directory / "key.pem"),
        "-out", str(directory / "cert.pem"), "-days", str(TLS_DAYS), "-subj", TLS_SUBJECT,
        "-addext", TLS_SAN,
    ]


def make_certificate(directory: Path) -> TlsFiles:
    """A new self-signed certificate and key in ``directory``; raises RuntimeError when
    openssl is missing or fails."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not on PATH (apt-get install openssl)")
    done = subprocess.run(openssl_command(directory), capture_output=True, text=True,
                          check=False, timeout=60)
    files = TlsFiles(cert=directory / "cert.pem", key=directory / "key.pem")
    if done.returncode != 0 or not files.cert.exists() or not files.key.exists():
        raise RuntimeError(f"openssl req failed ({done.returncode}): {done.stderr.strip()}")
    return files


@contextlib.contextmanager
def certificates() -> Iterator[TlsFiles]:
    """A certificate in a temporary directory, deleted on exit."""
    with tempfile.TemporaryDirectory(prefix="ferricorn-bench-tls-") as directory:
        yield make_certificate(Path(directory))


def server_tls_flags(server: str, files: TlsFiles) -> list[str]:
    """The flags that make ``server`` serve TLS with ``files`` (each with its defaults
    otherwise: protocol versions, ciphers, ALPN)."""
    if server in ("ferricorn", "uvicorn", "hyper"):
        return ["--ssl-keyfile", str(files.key), "--ssl-certfile", str(files.cert)]
    if server == "granian":
        return ["--ssl-keyfile", str(files.key), "--ssl-certificate", str(files.cert)]
    if server in ("hypercorn", "gunicorn"):
        return ["--keyfile", str(files.key), "--certfile", str(files.cert)]
    raise ValueError(f"{server} does not serve TLS here")


def client_context(files: TlsFiles, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context that trusts only ``files.cert`` and checks the host name (the
    certificate names 127.0.0.1); offers ``alpn`` when given (none, like wrk, otherwise)."""
    context = ssl.create_default_context(cafile=str(files.cert))
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def describe_tls(sock: ssl.SSLSocket) -> str:
    """"TLSv1.3 TLS_AES_256_GCM_SHA384": the version and cipher a connection negotiated."""
    cipher = sock.cipher()
    return f"{sock.version()} {cipher[0] if cipher else '?'}"
