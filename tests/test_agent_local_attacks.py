"""A local user against the agent's files and its drop of root (issue #21, item 5): names planted
in the folders of ``-o`` and ``-p``, links swapped in while the agent hands over, a user it
cannot become. Real agent processes on loopback."""

from __future__ import annotations

import os
import pwd
import threading
from pathlib import Path

import pytest
from procs import free_udp_port, start_agent
from test_agent_lifecycle import CONFIG, proc_status, wait_for

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")


def last_pid() -> int:
    return int(Path("/proc/sys/kernel/ns_last_pid").read_text())


def test_planted_temporary_names_neither_stop_the_start_nor_the_writes(tmp_path: Path) -> None:
    """The old writer used ``.NAME.<pid>.tmp``: names planted for the next pids made the agent exit
    with a traceback (-p) or never write hsflowd.auto (-o)."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=1, port=free_udp_port()))
    auto, pid_file = tmp_path / "hsflowd.auto", tmp_path / "hsflowd.pid"
    start = last_pid()
    for pid in range(start + 1, start + 3000):
        os.symlink(victim, tmp_path / f".hsflowd.auto.{pid}.tmp")
        os.symlink(victim, tmp_path / f".hsflowd.pid.{pid}.tmp")
    with start_agent(conf, auto, "-p", str(pid_file)) as agent:
        assert wait_for(lambda: auto.exists() and pid_file.exists(), 10), "".join(agent.stderr)
        assert agent.p.poll() is None
        assert pid_file.read_text() == f"{agent.p.pid}\n"
        assert "collector=127.0.0.1" in auto.read_text()
    assert not pid_file.exists(), "removed at exit"
    assert victim.read_text() == "precious"
    assert not any("Traceback" in line for line in agent.stderr), "".join(agent.stderr)


@needs_root
def test_a_user_it_cannot_become_makes_the_agent_exit_not_stay_root(tmp_path: Path) -> None:
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=1, port=free_udp_port()).replace("sflow {", "sflow {\n  user = no-such-user"))
    with start_agent(conf, tmp_path / "auto", drop_root=True) as agent:
        assert agent.p.wait(15) == 1
    err = "".join(agent.stderr)
    assert "cannot drop privileges to user no-such-user" in err and "Traceback" not in err


@needs_root
@pytest.mark.parametrize("plant", [os.symlink, os.link], ids=["symlink", "hardlink"])
def test_a_link_swapped_in_during_the_hand_over_neither_keeps_it_root_nor_gives_a_file_away(
    tmp_path: Path, plant
) -> None:
    """-o in a folder a local user can write: whatever is at the name when the agent gives up root,
    the agent ends up nobody (or exits), and no file of root's changes owner."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    auto = shared / "hsflowd.auto"
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=1, port=free_udp_port()))
    nobody = pwd.getpwnam("nobody")
    done = threading.Event()

    def swap() -> None:
        """Put a link to the victim at the name each time the agent has put its file there."""
        planted = shared / "planted"
        while not done.is_set():
            if auto.exists() and not auto.is_symlink() and auto.stat().st_ino != victim.stat().st_ino:
                plant(victim, planted)
                os.replace(planted, auto)

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    try:
        with start_agent(conf, auto, drop_root=True) as agent:
            dropped = wait_for(lambda: proc_status(agent.p.pid)["Uid"].split()[0] == str(nobody.pw_uid), 10)
            assert dropped or agent.p.poll() == 1, "".join(agent.stderr)
            if dropped:
                assert proc_status(agent.p.pid)["Uid"].split() == [str(nobody.pw_uid)] * 4
    finally:
        done.set()
        swapper.join()
    assert victim.stat().st_uid == 0 and victim.read_text() == "precious"
    assert "staying root" not in "".join(agent.stderr)


@needs_root
def test_the_pid_file_leaves_no_stale_pid_after_a_drop(tmp_path: Path) -> None:
    """Written as root in a root-owned folder: the agent, nobody by its exit, may not remove it; it
    empties it through the descriptor it kept, so no init script signals a stale pid."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o755)
    pid_file = folder / "hsflowd.pid"
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(CONFIG.format(polling=1, port=free_udp_port()))
    with start_agent(conf, tmp_path / "auto", "-p", str(pid_file), drop_root=True) as agent:
        nobody = str(pwd.getpwnam("nobody").pw_uid)
        assert wait_for(lambda: proc_status(agent.p.pid)["Uid"].split()[0] == nobody, 10), "".join(agent.stderr)
        assert pid_file.read_text() == f"{agent.p.pid}\n" and pid_file.stat().st_uid == 0
    assert agent.p.returncode == 0, "".join(agent.stderr)
    assert not pid_file.exists() or pid_file.read_text() == ""
