"""The benchmark harness behind bench/run.py, one module per concern.

Modules, in the order a run goes through them (each one's docstring says what it owns and
what it leaves to the others):

- ``scenarios``: the scenario table and every parameter of the scenarios (sizes, delays,
  limits, sampling periods). No processes, no formatting.
- ``tls``: the self-signed certificate of the TLS scenarios (made by openssl at the start
  of a run), each server's TLS flags, the client's TLS context.
- ``servers``: which server runs which scenario, the command lines of ferricorn, Granian,
  uvicorn, Hypercorn, gunicorn (WSGI scenarios only) and the hyper ceiling, what a run
  needs, readiness (over HTTP/1.1, TLS or HTTP/2), shutdown, child-process set-up.
- ``procstat``: CPU time, RSS and descriptors of a process tree, from /proc.
- ``results``: ``Run`` (one measured run, as stored in results.json) and the medians across
  rounds.
- ``wrk``, ``h2load``, ``loadgen``, ``robustness``: the drivers; each starts its load
  generator against a running server, samples the server and fills in a ``Run``. ``wrk``,
  ``h2load`` and ``loadgen`` also hold the parsers of their tool's output; ``robustness``
  drives cancel and overload.
- ``campaign``: one measurement (start, check, drive, stop), all rounds, the apps' own cost.
- ``environment``: machine, versions and repository state, recorded with the results.
- ``tables``, ``report``, ``chart``: the rendering, from the results JSON only: table rows,
  the Markdown report and stdout tables, the chart (matplotlib, imported when drawing).
- ``cli``: the command line and the main sequence (measure or reload, then render).

A module imports only the ones listed before it (and the paths below), so nothing imports
``cli``, and the rendering never starts a process. tests/bench/ tests the output parsers and
the rendering on fixed samples, with no server.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
ANALYSIS = REPO / "bench" / "ANALYSIS.md"
OUT_DIR = REPO / "bench" / "out"
LUA_DIR = REPO / "bench" / "lua"
