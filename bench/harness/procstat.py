"""CPU time, memory and open descriptors of a server's whole process tree, from /proc.

Owns the /proc readers that the drivers call around a run: ``tree_cpu_seconds``,
``tree_rss_mib``, ``tree_socket_count``, ``tree_fd_count`` (a tree, since Granian runs its
worker as a child process). Linux only. Must not start or stop processes, nor decide when to
sample: the drivers do.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (field 3 onward), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants (Granian runs its worker as a child process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _read_stat(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User+system CPU seconds of the process tree, plus children it has already reaped."""
    ticks = 0
    for pid in process_tree(root):
        fields = _read_stat(pid)
        if fields is None:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if pid == root:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


def tree_socket_count(root: int) -> int:
    """Sockets open in the process tree (listening socket and connections)."""
    count = 0
    for pid in process_tree(root):
        try:
            entries = list(os.scandir(f"/proc/{pid}/fd"))
        except OSError:
            continue
        for entry in entries:
            try:
                count += os.readlink(entry.path).startswith("socket:")
            except OSError:
                pass
    return count


def tree_fd_count(root: int) -> int:
    """Open file descriptors of the process tree (cheaper than telling the sockets apart)."""
    count = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            count += len(os.listdir(f"/proc/{pid}/fd"))
    return count


def tree_rss_mib(root: int) -> float:
    """Resident memory of the process tree, in MiB."""
    total_kib = 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            total_kib += int(match.group(1))
    return total_kib / 1024
