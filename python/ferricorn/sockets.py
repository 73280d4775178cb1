"""Listening sockets: bind from host/port, a UNIX path or an inherited fd.

Owns the socket-level details of binding a `Config`'s address (`bind()`) and the
"running on ..." startup line. Errors (address in use, permission) are
plain OSError for the caller to report.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ferricorn.config import Config

__all__ = ["bind", "bind_tcp", "bind_unix", "from_fd", "describe", "listen_message"]


def bind_tcp(host: str, port: int) -> socket.socket:
    """Bind host:port (IPv4, IPv6 such as "::", or a name); port 0 picks a free port."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def bind_unix(path: str) -> socket.socket:
    """Bind a UNIX stream socket at path (replacing a stale socket file), mode 0o666."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o666)
    except OSError:
        sock.close()
        raise
    return sock


def from_fd(fd: int) -> socket.socket:
    """Adopt an inherited socket (e.g. systemd activation); family and type are detected."""
    return socket.socket(fileno=fd)


def describe(sock: socket.socket, scheme: str = "http") -> str:
    """Where sock listens: "http://127.0.0.1:8000", "https://[::1]:8000", "unix socket /p"."""
    address = sock.getsockname()
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host, port = address[:2]
        host = f"[{host}]" if sock.family == socket.AF_INET6 else host
        return f"{scheme}://{host}:{port}"
    if sock.family == getattr(socket, "AF_UNIX", None):
        return f"unix socket {address}"
    return f"socket {address!r}"


def bind(config: Config) -> socket.socket:
    """A listening, non-blocking socket from fd, else uds, else host/port.
    OSError (e.g. address in use) propagates."""
    if config.fd is not None:
        sock = from_fd(config.fd)
    elif config.uds:
        sock = bind_unix(config.uds)
    else:
        sock = bind_tcp(config.host, config.port)
    sock.listen(config.backlog)
    sock.setblocking(False)
    return sock


def listen_message(sock: socket.socket, tls: bool = False) -> str:
    """Startup line: "Ferricorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)"."""
    where = describe(sock, "https" if tls else "http")
    return f"Ferricorn running on {where} (Press CTRL+C to quit)"
