"""The session check of tests/host_state.py fails a session that leaves a link or a process behind.

(That it passes a session that leaves nothing is every green run of the suite: it checks each one.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from procs import ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a link")

LEAKY = '''
import subprocess
from pathlib import Path


def test_leaves_a_link_and_a_process():
    subprocess.run(["ip", "link", "add", "{link}", "type", "bridge"], check=True)
    p = subprocess.Popen(["sleep", "120"], start_new_session=True)
    Path("{pidfile}").write_text(str(p.pid))
'''


def test_a_session_that_leaves_a_link_and_a_process_fails(tmp_path: Path) -> None:
    link = f"hsfleak{os.getpid() % 100000}"
    pidfile = tmp_path / "pid"
    (tmp_path / "conftest.py").write_text("from host_state import host_left_as_found  # noqa: F401\n")
    (tmp_path / "test_leaky.py").write_text(LEAKY.format(link=link, pidfile=pidfile))
    # the inner session compares the host whoever holds the heavy lock: no lock file for it
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "HSFLOWD_HEAVY_LOCK": str(tmp_path / "no-lock")}
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", str(tmp_path)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 1, r.stdout + r.stderr
        assert pidfile.exists(), r.stdout + r.stderr
        pid = int(pidfile.read_text())
        assert "1 passed, 1 error" in r.stdout
        assert "the session did not leave the host as it found it" in r.stdout
        assert f"links: left behind {link} (bridge)" in r.stdout
        assert f"processes: left behind pid {pid}: sleep 120" in r.stdout
    finally:
        subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
