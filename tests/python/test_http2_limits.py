"""The `--h2-*` limits reach the wire: the server's first SETTINGS frame carries them, and
the defaults are the documented ones."""

from __future__ import annotations

import h2.events
import pytest
from h2.settings import SettingCodes
from h2client import h2_connection, h2_pump

pytestmark = pytest.mark.timeout(60)


def server_settings(srv) -> dict[int, int]:
    sock, conn = h2_connection(srv.port)
    with sock:
        events = h2_pump(sock, conn, lambda ev: any(
            isinstance(e, h2.events.RemoteSettingsChanged) for e in ev))
    changed = next(e for e in events if isinstance(e, h2.events.RemoteSettingsChanged))
    return {code: s.new_value for code, s in changed.changed_settings.items()}


def test_default_limits(server):
    settings = server_settings(server.start("apps.basic:app"))
    assert settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 100
    assert settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 65536
    assert settings[SettingCodes.INITIAL_WINDOW_SIZE] == 1 << 20
    assert settings[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1


def test_limits_follow_the_flags(server):
    srv = server.start("apps.basic:app", "--h2-max-concurrent-streams", "7",
                       "--h2-max-header-list-size", "20000",
                       "--h2-initial-stream-window-size", "100000",
                       "--h2-initial-connection-window-size", "300000")
    settings = server_settings(srv)
    assert settings[SettingCodes.MAX_CONCURRENT_STREAMS] == 7
    assert settings[SettingCodes.MAX_HEADER_LIST_SIZE] == 20000
    assert settings[SettingCodes.INITIAL_WINDOW_SIZE] == 100000


def test_no_extended_connect_without_websockets(server):
    settings = server_settings(server.start("apps.basic:app", "--ws", "none"))
    assert settings.get(SettingCodes.ENABLE_CONNECT_PROTOCOL, 0) == 0


@pytest.mark.parametrize("flag,value", [
    ("--h2-max-concurrent-streams", "0"),
    ("--h2-initial-stream-window-size", "100"),
    ("--h2-initial-connection-window-size", str(2**31)),
])
def test_out_of_range_limits_stop_startup(server, flag, value):
    srv = server.start("apps.basic:app", flag, value, ready=False)
    assert srv.wait(timeout=20) == 2  # argparse's usage error
    assert flag in srv.logs()
