"""Several workers, or a reloading one: the supervisor process (`--workers`, `--reload`).

Owns what happens before the Rust supervisor takes over: the listening socket is bound here,
once, and made inheritable; the workers are `python -m ferricorn APP --fd N` processes that
get every other option through FERRICORN_* variables. The app is never imported in this
process, and no tokio runtime is started in it: a process that ran tokio must not fork.
The supervising itself (spawning, restarts, signals, file watching, log prefixes) is in
`src/supervisor/`.
"""

from __future__ import annotations

import logging
import os
import sys

from ferricorn import exits, sockets
from ferricorn import logging as ferricorn_logging
from ferricorn.config import Config

logger = logging.getLogger("ferricorn.error")


def run_supervisor(config: Config) -> int:
    """Runs workers until SIGINT/SIGTERM; returns the exit code."""
    from ferricorn._ferricorn import supervise

    ferricorn_logging.configure(config)
    if not isinstance(config.app, str):
        logger.error(
            "To use workers or reload, pass the application as an import string, "
            'e.g. ferricorn.run("main:app", workers=4).'
        )
        return exits.FAILED
    try:
        sock = sockets.bind(config)
    except OSError as exc:
        logger.error("Could not bind the listening socket: %s", exc)
        return exits.FAILED
    sock.set_inheritable(True)
    fd = sock.fileno()
    if config.pid_file:
        with open(config.pid_file, "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
    workers = config.worker_processes
    logger.info(sockets.listen_message(sock, config.tls))
    logger.info(
        "Started supervisor process [%d] with %d worker(s)%s",
        os.getpid(),
        workers,
        " and reload" if config.reload else "",
    )
    command = [sys.executable, "-m", "ferricorn", config.app, "--fd", str(fd)]
    env = config.worker_env()
    env["PYTHONUNBUFFERED"] = "1"
    # A WSGI app's environ says whether other processes serve it (wsgi.multiprocess).
    env["FERRICORN_WORKER_PROCESSES"] = str(workers)
    try:
        # A socket we bound is taken out of service at SIGTERM (new connections fail at once
        # while the workers drain); one handed over with --fd belongs to its owner.
        own_socket = config.fd is None
        listen_path = config.uds if own_socket and config.uds else None
        listen_fd = fd if own_socket and not config.uds else None
        return supervise(command, sorted(env.items()), config, listen_fd, listen_path)
    finally:
        sock.close()
        for path in (config.pid_file, config.uds):
            if path:
                try:
                    os.unlink(path)
                except OSError:
                    pass
