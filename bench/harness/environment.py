"""The machine, software versions and repository state that a report states beside the
figures.

Owns ``environment_info``, called once before a campaign and saved in results.json. Must not
measure: it only reads /proc, package metadata and a few commands' first line.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import importlib.util
import os
import platform
import subprocess

from . import REPO


def _first_line(command: list[str]) -> str:
    try:
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError:
        return "unavailable"
    text = (completed.stdout or completed.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def environment_info() -> dict[str, object]:
    """Machine, software versions and repository state, for the report."""
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    packages = {}
    for name in (
        "ferricorn", "granian", "uvicorn", "hypercorn", "gunicorn", "h2", "uvloop", "httptools",
        "fastapi", "starlette", "pydantic", "matplotlib",
    ):
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = "not installed"
    git = _first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"])
    # Which build of the engine the servers import (PYTHONPATH may point at the source tree).
    engine = "not found"
    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("ferricorn._ferricorn")
        if spec is not None and spec.origin:
            built = datetime.datetime.fromtimestamp(
                os.path.getmtime(spec.origin), datetime.timezone.utc)
            engine = f"{spec.origin} (built {built:%Y-%m-%d %H:%M} UTC)"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "uname": _first_line(["uname", "-a"]),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": packages,
        "wrk": _first_line(["wrk", "--version"]).split(" Copyright")[0],
        "h2load": _first_line(["h2load", "--version"]),
        "openssl": _first_line(["openssl", "version"]),
        "git": git if "fatal" not in git else "no commit yet",
        "ferricorn_engine": engine,
    }
