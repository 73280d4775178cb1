"""End-to-end lifespan protocol: startup failure (exit code 3), apps without lifespan
support, state shared with requests, and shutdown on stop.

Served apps: tests/apps/lifespan_app.py.
"""

from __future__ import annotations

import signal

import pytest
from conftest import http_client


@pytest.mark.parametrize("mode", ["on", "auto"])
def test_startup_failed_exits_with_3(server, mode):
    result = server.run("apps.lifespan_app:failing_app", "--lifespan", mode)
    assert result.returncode == 3, result.output
    assert "database unreachable: refusing to start" in result.output
    assert "Application startup failed" in result.output
    assert "Ferricorn running on" not in result.output


@pytest.mark.parametrize("app", ["raising_app", "no_lifespan_app"])
def test_exception_in_startup_with_lifespan_on_exits_with_3(server, app):
    result = server.run(f"apps.lifespan_app:{app}", "--lifespan", "on")
    assert result.returncode == 3, result.output
    assert "Exception in 'lifespan' protocol" in result.output
    assert "Traceback (most recent call last)" in result.output
    if app == "raising_app":
        assert "exploded during startup" in result.output
    assert "Ferricorn running on" not in result.output


def test_auto_tolerates_app_without_lifespan(server):
    srv = server.start("apps.lifespan_app:no_lifespan_app")
    with http_client() as client:
        response = client.get(srv.url + "/")
    assert response.status_code == 200
    assert response.text == "served without lifespan"
    assert srv.stop() == 0


def test_state_from_startup_visible_in_requests(server):
    srv = server.start("apps.lifespan_app:app")
    with http_client() as client:
        state = client.get(srv.url + "/").json()["state"]
    assert state == {"greeting": "hello from startup", "counter": 1}
    logs = srv.logs()
    assert logs.index("Application startup complete.") < logs.index("Ferricorn running on")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_shutdown_runs_on_stop(server, tmp_path, sig):
    marker = tmp_path / "marker.txt"
    srv = server.start("apps.lifespan_app:app", env={"FERRI_TEST_MARKER": str(marker)})
    assert marker.read_text() == "startup"
    with http_client() as client:
        assert client.get(srv.url + "/").status_code == 200
    assert srv.stop(sig) == 0
    assert marker.read_text() == "startup shutdown"
    logs = srv.logs()
    assert "Application shutdown complete." in logs
    assert "Finished server process" in logs


def test_lifespan_off_never_runs_lifespan(server, tmp_path):
    marker = tmp_path / "marker.txt"
    srv = server.start("apps.lifespan_app:app", "--lifespan", "off",
                       env={"FERRI_TEST_MARKER": str(marker)})
    with http_client() as client:
        response = client.get(srv.url + "/")
    assert response.status_code == 200
    assert not response.json()["state"]
    assert srv.stop() == 0
    assert not marker.exists()
