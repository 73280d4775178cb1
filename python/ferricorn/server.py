"""Serving one process: lifespan, the listening socket, the Rust engine and shutdown.

Owns the order of things in a worker's life: load the app, run lifespan startup, bind,
start the engine (`_ferricorn.Server`), serve until SIGINT/SIGTERM, drain in-flight
requests (up to --timeout-graceful-shutdown), cancel what is left, run lifespan shutdown.
Everything per request happens in Rust; the only Python on the request path is `_run_app`,
the coroutine each request's asyncio Task runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ferricorn import exits, sockets
from ferricorn import logging as ferricorn_logging
from ferricorn._ferricorn import Server, WsgiHost
from ferricorn.config import Config, usable_cores
from ferricorn.gcpolicy import GcPolicy
from ferricorn.importer import AppLoadError, load_app
from ferricorn.lifespan import Lifespan
from ferricorn.loops import new_event_loop
from ferricorn.watchdog import LoopWatchdog
from ferricorn.wsgi import ErrorStream, FileWrapper, WsgiThreads, asgi2_to_asgi3

logger = logging.getLogger("ferricorn.error")

#: How often an engine on the loop thread gets a turn even without I/O, for its timers.
_ENGINE_TICK = 0.05
#: How often request deadlines (--timeout-request) are checked.
_DEADLINE_CHECK = 0.05
#: How often a supervised worker tells its supervisor it is alive.
_HEARTBEAT = 1.0
#: How often `--gc-policy adaptive` follows the requests in flight.
_GC_UPDATE = 0.25
#: How often shutdown checks whether in-flight work has finished.
_DRAIN_POLL = 0.02
#: How often an embedded server (`ferricorn.Server`) looks at `should_exit`.
_EXIT_POLL = 0.1


async def _run_app(app: Any, scope: dict, cycle: Any) -> None:
    """The body of every request's and WebSocket session's Task: run the app, then settle
    what it left (the cycle answers 500, aborts the response, or closes the socket with 1000
    after a return and 1011 after an exception)."""
    try:
        await app(scope, cycle.receive, cycle.send)
    except asyncio.CancelledError as exc:
        cycle.app_failed()
        task = asyncio.current_task()
        if task is not None and not task.cancelling():
            # Nobody cancelled this task: the app raised CancelledError itself (awaited a
            # future someone else cancelled); that is an app failure like any other.
            logger.error("Exception in ASGI application\n", exc_info=exc,
                         extra=ferricorn_logging.request_extra(scope))
        else:
            logger.debug("Request task cancelled: %s %s", scope.get("method", "WebSocket"),
                         scope["path"])
    except BaseException as exc:  # noqa: BLE001 - any app failure must be settled by the cycle
        client_gone = cycle.app_failed()
        if client_gone and _caused_by_os_error(exc):
            logger.debug("Request ended: the client disconnected (%s)", exc)
        else:
            logger.error("Exception in ASGI application\n", exc_info=exc,
                         extra=ferricorn_logging.request_extra(scope))
    else:
        problem = cycle.app_returned()
        if problem:
            logger.error(problem, extra=ferricorn_logging.request_extra(scope))


def _caused_by_os_error(exc: BaseException) -> bool:
    """Whether `exc` is, or was raised while handling, an OSError: frameworks turn the
    client-gone OSError of `send()` into their own exception (Starlette's ClientDisconnect),
    which is then no app failure worth a traceback."""
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 8:
        if isinstance(cause, OSError):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def load_for_serving(config: Config) -> Any | None:
    """The app, ready for `serve()` (an ASGI 2 app wrapped as ASGI 3); None when it cannot
    be loaded, which is logged."""
    try:
        app = load_app(config)
    except AppLoadError as exc:
        logger.error("%s", exc)
        return None
    chosen = " (detected by --interface auto)" if config.interface == "auto" else ""
    logger.info("Application interface: %s%s", config.app_interface, chosen)
    if config.app_interface == "asgi2":
        app = asgi2_to_asgi3(app)
    return app


def run_config(config: Config) -> int:
    """Serve until stopped; returns the process exit code (`exits`)."""
    ferricorn_logging.configure(config)
    app = load_for_serving(config)
    if app is None:
        return exits.FAILED
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    supervised = "FERRICORN_SUPERVISOR_FD" in os.environ
    if config.pid_file and not supervised:
        with open(config.pid_file, "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
    try:
        return loop.run_until_complete(serve(config, app))
    except KeyboardInterrupt:
        return exits.OK
    finally:
        loop.close()
        asyncio.set_event_loop(None)
        if not supervised:
            for path in (config.pid_file, config.uds):
                if path:
                    _remove_quietly(path)


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Control(Protocol):
    """What a caller that runs `serve()` in its own loop sees and sets (`ferricorn.Server`)."""

    started: bool
    should_exit: bool
    force_exit: bool


async def serve(config: Config, app: Any, control: Control | None = None) -> int:
    """Serves `app` until SIGINT/SIGTERM (or `control.should_exit`); returns the exit code.

    With a `control`, the caller owns the loop and the process: signals are taken only on
    the main thread, and `control.should_exit` is looked at every `_EXIT_POLL` seconds.
    """
    loop = asyncio.get_running_loop()
    logger.info("Started server process [%d]", os.getpid())
    # WSGI has no lifespan protocol: the app is set up when imported.
    lifespan = Lifespan(app, "off" if config.wsgi else config.lifespan, logger)
    await lifespan.startup()
    if lifespan.should_exit:  # Lifespan has said why, and "Application startup failed."
        return exits.STARTUP_FAILED
    try:
        sock = sockets.bind(config)
    except OSError as exc:
        logger.error("Could not bind the listening socket: %s", exc)
        await lifespan.shutdown()
        return exits.FAILED

    # From the socket itself: a worker gets it as --fd, without --uds.
    unix_path = (sock.getsockname() or "") if sock.family == socket.AF_UNIX else None
    listen_message = sockets.listen_message(sock, config.tls)
    access_log = ferricorn_logging.access_target(config)
    wsgi_host = None
    if config.wsgi:
        wsgi_host = WsgiHost(app, config.root_path, config.multiprocess, ErrorStream(logger),
                             FileWrapper, logger)
    try:
        server = Server(
            sock.detach(),
            unix_path,
            config,
            loop,
            app,
            _run_app,
            lifespan.state,
            logger,
            access_log,
            wsgi_host,
        )
    except (ValueError, OSError) as exc:
        # A certificate or key that cannot be loaded, a setting the engine refuses: the
        # message names the file or option and the reason.
        logger.error("Could not start the server: %s", exc)
        await lifespan.shutdown()
        return exits.FAILED
    wsgi_threads = None
    if wsgi_host is not None:
        wsgi_threads = WsgiThreads(wsgi_host, config.wsgi_thread_count)
        wsgi_threads.start()
        logger.info("Serving the WSGI app on %d threads", config.wsgi_thread_count)
    doorbell = server.fileno()
    loop.add_reader(doorbell, server.on_readable)
    periodic: list[_Every] = []
    if server.local:
        # The engine's timers (keep-alive, header read) only fire when it turns; the tick
        # also moves it to a thread of its own while streams saturate this one, if a core
        # is spare for it.
        if _spare_core(config):
            server.enable_assist(*_assist_thresholds())
        periodic.append(_Every(loop, _ENGINE_TICK, server.tick))
    watchdog = None
    if config.blocked_loop_warning:
        watchdog = LoopWatchdog(loop, config.blocked_loop_warning, server.add_loop_blocked)
        watchdog.start()
    if config.timeout_request is not None:
        periodic.append(_Every(loop, _DEADLINE_CHECK, server.check_deadlines))
    gc_policy = GcPolicy(config.gc_policy, logger)
    if gc_policy.start():
        periodic.append(_Every(loop, _GC_UPDATE,
                               lambda: gc_policy.update(server.requests_in_flight())))
    logger.info(listen_message)

    stop = asyncio.Event()
    # Certificate renewal: SIGUSR1 (a supervisor passes it to every worker, so a worker
    # always takes it, TLS or not), and SIGHUP in a single process (under a supervisor SIGHUP
    # replaces the workers instead). Set before the supervisor hears this worker is ready.
    supervised = "FERRICORN_SUPERVISOR_FD" in os.environ
    may_take_signals = control is None or threading.current_thread() is threading.main_thread()
    reload_signals: tuple[int, ...] = ()
    if supervised:
        reload_signals = (signal.SIGUSR1,)
    elif config.ssl_certfile and may_take_signals:
        reload_signals = (signal.SIGUSR1, signal.SIGHUP)
    for sig in reload_signals:
        loop.add_signal_handler(sig, _reload_tls, server, signal.Signals(sig).name)
    supervisor_link = _SupervisorLink.from_environment()
    if supervisor_link is not None:

        def heartbeat() -> None:
            supervisor_link.beat()
            # The supervisor reads gauges from the shared metrics file.
            server.publish_gauges()

        periodic.append(_Every(loop, _HEARTBEAT, heartbeat))
    if config.limit_max_requests is not None:
        limit = config.limit_max_requests + random.randint(0, config.limit_max_requests_jitter)

        def check_request_count() -> bool:
            if server.requests_total() < limit:
                return True
            logger.info("Served %d requests (--limit-max-requests): shutting down.", limit)
            stop.set()
            return False

        periodic.append(_Every(loop, _DEADLINE_CHECK, check_request_count))
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        stop.set()

    stop_signals: tuple[int, ...] = ()
    if may_take_signals:
        stop_signals = (signal.SIGINT, signal.SIGTERM)
    for sig in stop_signals:
        loop.add_signal_handler(sig, on_signal)
    forced = lambda: signals_seen > 1  # noqa: E731
    if control is not None:
        control.started = True

        def check_should_exit() -> None:
            if control.should_exit:
                stop.set()

        periodic.append(_Every(loop, _EXIT_POLL, check_should_exit))
        forced = lambda: signals_seen > 1 or control.force_exit  # noqa: E731
    try:
        await stop.wait()
        logger.info("Shutting down")
        server.drain()
        drained = await _wait_for_drain(server, config.timeout_graceful_shutdown, forced)
        if not drained:
            await _cancel_request_tasks()
    finally:
        for sig in (*stop_signals, *reload_signals):
            loop.remove_signal_handler(sig)
        loop.remove_reader(doorbell)
        for repeating in periodic:
            repeating.cancel()
        if watchdog is not None:
            watchdog.stop()
        gc_policy.stop()
        if wsgi_threads is not None:
            # First: with --engine-threads 0 they run the engine, which must outlive them.
            await loop.run_in_executor(None, wsgi_threads.stop)
        # Polls already scheduled find nothing after this and go to sleep.
        server.shutdown(1.0)
    await lifespan.shutdown()
    logger.info("Finished server process")
    return exits.SHUTDOWN_FAILED if lifespan.shutdown_failed else exits.OK


def _reload_tls(server: Any, signal_name: str) -> None:
    """Loads the TLS certificate and key again; a bad file keeps the previous ones."""
    try:
        files = server.reload_tls()
    except (ValueError, OSError) as exc:
        logger.error("%s: the TLS certificate was not reloaded, the previous one stays in "
                     "use: %s", signal_name, exc)
        return
    if files is not None:
        logger.info("%s: reloaded the TLS certificate %s and key %s; new connections use "
                    "them", signal_name, *files)


def _spare_core(config: Config) -> bool:
    """Whether this worker's engine may take a core besides the loop thread's: fewer workers
    than the cores this process may run on."""
    return (config.workers or 1) < usable_cores()


def _assist_thresholds() -> tuple[float, ...]:
    """The assist policy's thresholds (chunks/s to hand over, loop load, chunks/s to take
    back, idle cores to hand over), the engine's defaults unless
    FERRICORN_TEST_ASSIST_THRESHOLDS overrides them. That variable is for the end-to-end
    tests only: how busy a shared machine lets the loop thread get is not theirs to decide,
    so they lower the thresholds."""
    raw = os.environ.get("FERRICORN_TEST_ASSIST_THRESHOLDS")
    return tuple(float(part) for part in raw.split(",")) if raw else ()


class _Every:
    """Calls `fn` on the loop every `interval` seconds until it returns False or `cancel()`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float, fn: Callable[[], Any]
    ) -> None:
        self.loop, self.interval, self.fn = loop, interval, fn
        self._handle = loop.call_later(interval, self._run)

    def _run(self) -> None:
        if self.fn() is not False:
            self._handle = self.loop.call_later(self.interval, self._run)

    def cancel(self) -> None:
        self._handle.cancel()


class _SupervisorLink:
    """A worker's line to its supervisor: "R" once serving, then "H" on every `beat()` (the
    supervisor replaces a worker whose heartbeat stops)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._send(b"R")

    @classmethod
    def from_environment(cls) -> _SupervisorLink | None:
        fd = os.environ.get("FERRICORN_SUPERVISOR_FD")
        return cls(int(fd)) if fd else None

    def _send(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except (BlockingIOError, BrokenPipeError):
            pass  # the supervisor is slow or gone; it has its own way of noticing

    def beat(self) -> None:
        self._send(b"H")


async def _wait_for_drain(server: Server, timeout: float | None, forced: Any) -> bool:
    """Waits until connections and requests are done (True), or the timeout passes or a
    second signal forces the exit (False)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    announced = False
    while server.connections_open() or server.requests_in_flight():
        if not announced:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
            announced = True
        if forced() or (deadline is not None and time.monotonic() >= deadline):
            return False
        await asyncio.sleep(_DRAIN_POLL)
    return True


async def _cancel_request_tasks() -> None:
    """Cancels the tasks still serving requests (found by their coroutine, so no per-request
    bookkeeping is needed); the lifespan task and the app's own tasks are left alone."""
    tasks = [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "cr_code", None) is _run_app.__code__
    ]
    if not tasks:
        return
    logger.warning("Cancelling %d running request(s): graceful shutdown timed out.", len(tasks))
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=5.0)
