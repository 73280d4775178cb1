"""The Autobahn TestSuite fuzzing-client cases 1.* to 13.* (517, compression included) against
ferricorn's WebSocket echo: every case must pass (OK, NON-STRICT or INFORMATIONAL). The same
run as `make conformance`, which keeps its report in docs/autobahn/."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.timeout(1200)
def test_autobahn_fuzzingclient_cases_all_pass(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "conformance" / "autobahn.py"), "--out",
         str(tmp_path)], capture_output=True, text=True, timeout=1100)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    assert "autobahn: 517 passed, 0 failed" in output, output[-5000:]
