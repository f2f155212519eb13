"""One agent per status socket: a second one started beside a running agent exits with the reason
and leaves the first one's status socket and pid file alone; a failed drop of root reported as what it
is.  Real agent processes on loopback."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest
from procs import free_udp_port, start_agent
from test_agent_lifecycle import CONFIG, wait_for

from hsflowd_py import status


def test_a_second_agent_leaves_the_first_ones_socket_and_pid_file(tmp_path: Path) -> None:
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=1, port=free_udp_port()))
    sock, pid_file = tmp_path / "status.sock", tmp_path / "hsflowd.pid"
    with start_agent(conf, tmp_path / "hsflowd.auto", "-p", str(pid_file)) as first:
        assert wait_for(lambda: sock.exists() and pid_file.exists(), 10), "".join(first.stderr)
        inode = os.stat(sock).st_ino
        with start_agent(conf, tmp_path / "second.auto", "-p", str(pid_file)) as second:
            second.p.wait(20)
        assert second.p.returncode == 1, "".join(second.stderr)
        err = "".join(second.stderr)
        assert f"another hsflowd-py holds {sock}.lock: not starting" in err and "Traceback" not in err
        assert first.p.poll() is None
        assert os.stat(sock).st_ino == inode
        assert status.query(str(sock))["collectors"], "the first agent still answers on its socket"
        assert pid_file.read_text() == f"{first.p.pid}\n"
        assert not (tmp_path / "second.auto").exists()
    assert first.p.returncode == 0, "".join(first.stderr)
    with start_agent(conf, tmp_path / "hsflowd.auto") as third:  # the lock went with the first agent
        assert wait_for(lambda: status_answers(sock), 10), "".join(third.stderr)
    assert third.p.returncode == 0, "".join(third.stderr)


def status_answers(sock: Path) -> bool:
    try:
        return "collectors" in status.query(str(sock), timeout=1)
    except OSError:
        return False


@pytest.mark.skipif(os.geteuid() != 0 or platform.machine() != "x86_64", reason="needs root, x86_64 seccomp")
def test_a_failed_capset_after_the_setuid_is_reported_as_what_it_is(tmp_path: Path) -> None:
    """The kernel refuses capset (a seccomp filter): the agent is its user by then, not root, and
    says so; it exits all the same rather than run on with capabilities it was to give up."""
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=1, port=free_udp_port()))
    wrapper = (sys.executable, str(Path(__file__).with_name("deny_capset.py")))
    with start_agent(conf, tmp_path / "hsflowd.auto", drop_root=True, wrapper=wrapper) as agent:
        agent.p.wait(20)
    err = "".join(agent.stderr)
    assert agent.p.returncode == 1, err
    assert "became user nobody but could not reduce capabilities to what is kept: [Errno 1] capset" in err
    assert "exiting rather than running on with capabilities it was to give up" in err
    assert "as root" not in err and "Traceback" not in err
