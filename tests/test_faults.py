"""Faults of what the agent talks to: it keeps running, logs each fault once, recovers by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from netns import VethNamespace, sh
from procs import Proc, free_udp_port, json_datagrams, python, start_agent, start_collector

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, mounts)")


def host_datagrams(collector: Proc, seconds: float) -> list[dict]:
    return [d for d in json_datagrams(collector, seconds) if any(s["sourceId"] == "2:1" for s in d["samples"])]


def test_collector_without_a_route_and_back(tmp_path: Path) -> None:
    with VethNamespace("flt", subnet=90) as v:
        port = free_udp_port()
        collector = Proc([*v.exec(*python("-m", "hsflowd_py.collector", "-p", str(port), "-j"))])
        conf = tmp_path / "hsflowd.conf"
        conf.write_text(f"sflow {{\n polling = 1\n collector {{ ip = {v.ns_ip} udpport = {port} }}\n}}\n")
        with collector, start_agent(conf, tmp_path / "auto") as agent:
            assert host_datagrams(collector, 5), "".join(collector.stderr)
            # A more specific "unreachable" route: sendto fails at once, and nothing leaves the machine.
            sh("ip", "route", "add", "unreachable", f"{v.ns_ip}/32")
            try:
                time.sleep(3.5)
            finally:
                sh("ip", "route", "del", "unreachable", f"{v.ns_ip}/32")
            assert agent.p.poll() is None
            faults = [line for line in agent.stderr if "send failed" in line]
            assert len(faults) == 1, agent.stderr  # logged once, not once per datagram
            assert "no route to host" in faults[0].lower()
            while host_datagrams(collector, 0.2):
                pass  # drain what arrived before the cut
            assert host_datagrams(collector, 5), "sending resumes when the route is back"
            assert any("sending again" in line for line in agent.stderr)


def test_collector_stopped_and_restarted_on_the_same_port(tmp_path: Path) -> None:
    port = free_udp_port()
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(f"sflow {{\n polling = 1\n collector {{ ip = 127.0.0.1 udpport = {port} }}\n}}\n")
    with start_agent(conf, tmp_path / "auto") as agent:
        with start_collector(port, "-j") as first:
            assert host_datagrams(first, 4)
        time.sleep(2)  # ICMP port unreachable for whatever is sent now
        with start_collector(port, "-j") as second:
            got = host_datagrams(second, 4)
            assert got and agent.p.poll() is None


def test_disk_full_for_the_auto_file(tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(full))
    try:
        filler = full / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=64"], capture_output=True)
        port = free_udp_port()
        conf = tmp_path / "hsflowd.conf"
        conf.write_text(f"sflow {{\n polling = 1\n collector {{ ip = 127.0.0.1 udpport = {port} }}\n}}\n")
        auto = full / "hsflowd.auto"
        with start_collector(port, "-j") as collector, start_agent(conf, auto) as agent:
            assert host_datagrams(collector, 4), "sampling goes on while the auto file cannot be written"
            assert not auto.exists()
            warnings = [line for line in agent.stderr if "cannot write" in line]
            assert len(warnings) == 1 and "No space left" in warnings[0]
            filler.unlink()
            deadline = time.monotonic() + 15  # retried on the next adapter check (checkAdaptors = 10 s)
            while time.monotonic() < deadline and not auto.exists():
                time.sleep(0.5)
            assert auto.exists() and "collector=127.0.0.1" in auto.read_text()
            assert any("wrote" in line and "again" in line for line in agent.stderr)
    finally:
        sh("umount", str(full), check=False)


def test_collector_name_that_stops_resolving(tmp_path: Path) -> None:
    """The agent resolves through the real resolver, reading an /etc/hosts the test controls
    (bind-mounted in the agent's own mount namespace); a name that stops resolving keeps its
    last address, a name that moves is followed."""
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n127.0.0.1 collector.hsflowd.test\n")
    port = free_udp_port()
    conf = tmp_path / "hsflowd.conf"
    conf.write_text(
        "sflow {\n polling = 1\n checkAdaptors = 1\n"
        f" collector {{ ip = collector.hsflowd.test udpport = {port} }}\n}}\n"
    )
    agent_cmd = " ".join(["exec", *python("-m", "hsflowd_py", "-d", "-P", "-f", str(conf))])
    agent_cmd += f" -o {tmp_path / 'auto'} -s {tmp_path / 'status.sock'}"
    script = f"mount --bind {hosts} /etc/hosts && {agent_cmd}"
    with start_collector(port, "-j") as collector, Proc(["unshare", "--mount", "sh", "-c", script]) as agent:
        assert host_datagrams(collector, 5), "".join(agent.stderr)
        with open(hosts, "r+") as f:  # in place: the bind mount follows the inode
            f.truncate(0)
            f.write("127.0.0.1 localhost\n")
        time.sleep(3)
        assert agent.p.poll() is None
        kept = [line for line in agent.stderr if "cannot resolve, keeping 127.0.0.1" in line]
        assert len(kept) == 1, agent.stderr
        assert host_datagrams(collector, 3), "still sending to the last address"


def test_disk_full_never_truncates_the_auto_file_after_the_drop(tmp_path: Path) -> None:
    """Once nobody, the agent rewrites hsflowd.auto in place (its folder is root's). Growing it past
    a page on a full disk used to leave the first 4,096 bytes (rev_start without rev_end); now the
    old file stays whole until there is room, then the new one is written."""
    full = Path(tempfile.mkdtemp(prefix="hsflowd-full-"))  # nobody must reach the config to reload it
    sh("mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(full))
    try:
        port = free_udp_port()
        conf, bigger = full / "hsflowd.conf", full / "bigger.conf"

        def config(apps: int) -> str:
            lines = "".join(f" sampling.app.application-number-{i} = {100 + i}\n" for i in range(apps))
            collector = f" collector {{ ip = 127.0.0.1 udpport = {port} }}\n"
            return f"sflow {{\n polling = 1\n checkAdaptors = 1\n{lines}{collector}}}\n"

        conf.write_text(config(80))
        bigger.write_text(config(140))
        auto = full / "hsflowd.auto"
        with start_collector(port, "-j") as collector, start_agent(conf, auto, drop_root=True) as agent:
            assert host_datagrams(collector, 3)
            old = auto.read_text()
            assert 3000 < len(old) < 4096 and auto.stat().st_uid == 0
            os.replace(bigger, conf)
            filler = full / "filler"
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k", "count=64"], capture_output=True)
            agent.p.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                assert auto.read_text() == old, "the old file, whole, while the disk is full"
                time.sleep(0.05)
            warnings = [line for line in agent.stderr if "cannot write" in line]
            assert len(warnings) == 1 and "No space left" in warnings[0], "".join(agent.stderr)
            filler.unlink()
            deadline = time.monotonic() + 5  # retried on the next adapter check (checkAdaptors = 1 s)
            while time.monotonic() < deadline and auto.read_text() == old:
                time.sleep(0.2)
            new = auto.read_text()
            assert len(new) > 4096 and "application-number-139=239" in new and new.endswith("rev_end=2\n")
            assert agent.p.poll() is None and auto.stat().st_uid == 0
    finally:
        sh("umount", str(full), check=False)
        full.rmdir()
