"""The asyncio Task a request runs in: a real `asyncio.Task`, listed by `all_tasks()`, with
a context of its own, cancellable and uncancellable (what `asyncio.wait_for`, anyio and
Starlette rely on); and a task factory installed during lifespan startup makes every
request's Task. The server starts Tasks without `loop.create_task` when no factory is set
(cheaper), so both paths are checked, on both loops.

Served apps: tests/apps/tasks_app.py.
"""

from __future__ import annotations

import re
import sys

import pytest
from conftest import http_client

LOOPS = ["uvloop", "asyncio"]
# Python 3.11 formats a name for every Task; the server names its own to skip that. Later
# versions format the default "Task-N" only when asked.
DEFAULT_NAME = re.compile(r"ferricorn-\d+" if sys.version_info < (3, 12) else r"Task-\d+")


@pytest.mark.parametrize("loop", LOOPS)
def test_each_request_runs_in_an_asyncio_task_of_its_own(server, loop):
    srv = server.start("apps.tasks_app:app", "--loop", loop)
    with http_client() as client:
        # Three requests on one keep-alive connection, then one on a new connection.
        seen = [client.get(f"{srv.url}/r{i}").json() for i in range(3)]
    with http_client() as client:
        seen.append(client.get(f"{srv.url}/r3").json())
    for answer in seen:
        assert answer["is_task"] is True
        assert answer["in_all_tasks"] is True
        assert DEFAULT_NAME.fullmatch(answer["name"]), answer["name"]
        # A context variable one request set is not seen by the next one.
        assert answer["context_found"] is None
        assert answer["timeout_works"] is True
        assert answer["cancelling"] == 0
    assert len({answer["name"] for answer in seen}) == 4
    assert srv.stop() == 0


@pytest.mark.parametrize("loop", LOOPS)
def test_task_factory_from_lifespan_startup_makes_every_request_task(server, loop):
    srv = server.start("apps.tasks_app:factory_app", "--loop", loop)
    with http_client() as client:
        seen = [client.get(f"{srv.url}/r{i}").json() for i in range(3)]
    names = [answer["name"] for answer in seen]
    assert all(re.fullmatch(r"factory-\d+", name) for name in names), names
    assert len(set(names)) == 3
    assert all(answer["is_task"] and answer["timeout_works"] for answer in seen)
    assert all(answer["context_found"] is None for answer in seen)
    assert srv.stop() == 0
