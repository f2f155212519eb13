"""The agent as a service of a real systemd (PID 1 of a Debian container), reporting its services.

The agent runs inside the container as it would be installed: the checkout
under test is built into a wheel (the build maps ``modules/`` to
``hsflowd_py.modules`` exactly as an install does), the wheel is unpacked
into a directory mounted read-only into the container, and the agent is
started there by ``systemd-run`` with that directory on PYTHONPATH.  It
sends to the bundled collector outside, on the host's address of the
container's bridge network.

One container and one agent serve the whole file; the tests run in order
and the D-Bus restart comes last.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import debian_image
import dockerd
import pytest
from procs import ROOT, Proc, free_udp_port, start_collector

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.slow]

POLLING_S = 2
REFRESH_S = 20
"""Longer than any wait below for a new or stopped service: those must come from systemd's signals."""
SITE = "/opt/hsflowd-py"
STATE_RUNNING, STATE_SHUTOFF = "1", "5"


def installed_tree(work: Path) -> Path:
    """The checkout under test as an installed package tree (a wheel, unpacked); built from a copy so
    that the build leaves nothing in the checkout."""
    src = work / "src"
    for name in ("hsflowd_py", "modules"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(work / "wheel"), str(src)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    site = work / "site"
    (wheel,) = (work / "wheel").glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    return site


@dataclass
class Feed:
    """Every datagram the collector prints, kept with its arrival time (read on a thread)."""

    collector: Proc
    datagrams: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in iter(self.collector.lines.get, None):
            if line.startswith("{"):
                self.datagrams.append((time.monotonic(), json.loads(line)))

    def counters(self, since: float = 0.0) -> Iterator[tuple[float, str, dict[str, dict[str, str]]]]:
        """(arrival, sourceId, records by tag) of each counter sample."""
        for t, d in list(self.datagrams):
            if t < since:
                continue
            for s in d["samples"]:
                if s["sampleType"] == "COUNTERSSAMPLE":
                    yield t, s["sourceId"], {e["counterBlock_tag"]: e for e in s["elements"]}

    def flows(self, since: float = 0.0) -> Iterator[dict[str, dict[str, str]]]:
        for t, d in list(self.datagrams):
            if t >= since:
                for s in d["samples"]:
                    if s["sampleType"] == "FLOWSAMPLE":
                        yield {"sample": s, **{e["flowBlock_tag"]: e for e in s["elements"]}}

    def services(self, since: float = 0.0) -> dict[str, list[tuple[float, str, dict[str, dict[str, str]]]]]:
        """Service samples by unit name, in arrival order."""
        out: dict[str, list[tuple[float, str, dict[str, dict[str, str]]]]] = {}
        for t, source, records in self.counters(since):
            if source.startswith("3:") and "0:2000" in records:
                out.setdefault(records["0:2000"]["hostname"], []).append((t, source, records))
        return out

    def wait(self, what: str, check: Callable[[], Any], timeout: float) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if result := check():
                return result
            time.sleep(0.2)
        raise AssertionError(f"{what}: not within {timeout:g} s")


@dataclass
class Box:
    name: str
    feed: Feed

    def run(self, *args: str, check: bool = True) -> str:
        return dockerd.docker("exec", self.name, *args, check=check).stdout

    def active_services(self) -> set[str]:
        out = self.run("systemctl", "list-units", "--type=service", "--state=active", "--no-legend", "--plain")
        return {line.split()[0] for line in out.splitlines() if line.strip()}

    def journal(self) -> str:
        return self.run("journalctl", "-u", "hsflowd-py", "--no-pager", "-o", "cat", check=False)

    def ip(self) -> str:
        fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        return dockerd.docker("inspect", "-f", fmt, self.name).stdout.strip()


@contextlib.contextmanager
def bridge_network(name: str) -> Iterator[str]:
    """A bridge network of the container's own, so the test needs nothing of the engine's default
    bridge; the engine picks a free subnet (concurrent runs get different ones).  Yields the host's
    address on it, where the collector listens."""
    dockerd.docker("network", "create", "--driver", "bridge", "-o", f"com.docker.network.bridge.name={name[:15]}", name)
    try:
        fmt = "{{range .IPAM.Config}}{{.Gateway}}{{end}}"
        yield dockerd.docker("network", "inspect", "-f", fmt, name).stdout.strip()
    finally:
        dockerd.docker("network", "rm", name, check=False)


@pytest.fixture(scope="module")
def box(debian_systemd_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    work = tmp_path_factory.mktemp("systemd-box")
    site = installed_tree(work)
    port = free_udp_port()
    name = f"hsfpy-sd{os.getpid()}"
    with bridge_network(name) as gateway:
        collector = start_collector(port, "-j")
        config = work / "hsflowd.conf"
        config.write_text(
            f"""sflow {{
  polling = {POLLING_S}
  collector {{ ip = {gateway} udpport = {port} }}
  pcap {{ dev = eth0 sampling = 1 }}
  tcp {{ }}
  systemd {{ markTraffic = on refreshVMs = {REFRESH_S} }}
}}
"""
        )
        try:
            dockerd.docker(
                "run", "-d", "--name", name, "--network", name, *debian_image.SYSTEMD_RUN_ARGS,
                "--cap-add", "DAC_READ_SEARCH",  # kept by the agent after it drops root, to read /proc/<pid>/fd
                "-v", f"{site}:{SITE}:ro", debian_systemd_image,
            )  # fmt: skip
            debian_image.wait_running(name)
            dockerd.docker("cp", str(config), f"{name}:/etc/hsflowd.conf")
            dockerd.docker(
                "exec", name, "systemd-run", "--unit", "hsflowd-py", "-E", f"PYTHONPATH={SITE}",
                "python3", "-m", "hsflowd_py", "-d", "-f", "/etc/hsflowd.conf", "-o", "/run/hsflowd.auto",
            )  # fmt: skip
            b = Box(name, Feed(collector))
            yield b
            assert "Traceback" not in b.journal(), b.journal()[-4000:]
        finally:
            dockerd.docker("rm", "-f", name, check=False)
            collector.stop()


def fail_info(box: Box) -> str:
    return "agent log:\n" + box.journal()[-3000:]


def test_every_active_service_is_a_data_source(box: Box) -> None:
    expected = box.active_services()
    assert "dbus.service" in expected and "hsflowd-py.service" in expected

    def all_seen() -> dict[str, Any] | None:
        seen = box.feed.services()
        return seen if expected <= seen.keys() else None

    seen = box.feed.wait(f"samples of {sorted(expected)}", all_seen, 4 * POLLING_S + 5)
    host_uuid = next(r["0:2000"]["UUID"] for _, s, r in box.feed.counters() if s == "2:1")
    indexes = set()
    for unit in expected:
        _, source, records = seen[unit][-1]
        assert records["0:2000"]["UUID"] == str(uuid.uuid5(uuid.UUID(host_uuid), unit))
        assert (records["0:2002"]["parent_dsClass"], records["0:2002"]["parent_dsIndex"]) == ("2", "1")
        assert records["0:2101"]["vcpu_state"] == STATE_RUNNING
        assert {"0:2102", "0:2103"} <= records.keys()
        ds_class, ds_index = source.split(":")
        assert ds_class == "3" and 100000 <= int(ds_index) < 150000
        indexes.add(source)
    assert len(indexes) == len(expected), "each service has its own dsIndex"
    # the host sample counts the services it tracks
    _, _, host = next((t, s, r) for t, s, r in reversed(list(box.feed.counters())) if s == "2:1")
    assert int(host["0:2100"]["vnode_num_domains"]) == len(box.active_services())


def test_a_service_started_later_appears_and_a_stopped_one_leaves_with_a_final_sample(box: Box) -> None:
    unit = "later.service"
    started = time.monotonic()
    box.run("systemd-run", "--unit", unit, "python3", "-c", "import time; x = b'x' * (8 << 20); time.sleep(600)")
    box.feed.wait(f"a sample of {unit}", lambda: unit in box.feed.services(started), POLLING_S + 6)
    assert time.monotonic() - started < REFRESH_S, "found by the periodic refresh, not from systemd's signals"
    box.feed.wait(f"two samples of {unit}", lambda: len(box.feed.services(started).get(unit, [])) >= 2, 3 * POLLING_S)
    source = box.feed.services(started)[unit][0][1]

    stopped = time.monotonic()
    box.run("systemctl", "stop", unit)

    def final() -> Any:
        samples = box.feed.services(started).get(unit, [])
        return next((r for t, _, r in samples if t >= stopped and r["0:2101"]["vcpu_state"] == STATE_SHUTOFF), None)

    last = box.feed.wait(f"the final sample of {unit}", final, 8)
    before = [r for t, _, r in box.feed.services(started)[unit] if r["0:2101"]["vcpu_state"] == STATE_RUNNING]
    # the last values read, not zeros: the cgroup is gone by the time systemd reports the stop
    assert int(last["0:2102"]["vmem_memory"]) == int(before[-1]["0:2102"]["vmem_memory"]) >= 8 << 20
    assert int(last["0:2101"]["vcpu_cpu_mS"]) >= int(before[-1]["0:2101"]["vcpu_cpu_mS"]) > 0
    time.sleep(2 * POLLING_S + 1)
    after = [t for t, s, _ in box.feed.counters(stopped) if s == source]
    assert len(after) == 1, "the data source must be forgotten after its final sample"


def test_cpu_and_memory_used_by_services_show_in_their_counters(box: Box) -> None:
    started = time.monotonic()
    box.run("systemd-run", "--unit", "burner.service", "python3", "-c", "while True: pass")
    box.run("systemd-run", "--unit", "hog.service", "python3", "-c",
            "import time; x = b'x' * (96 << 20); time.sleep(600)")  # fmt: skip

    def samples(unit: str, n: int) -> list[Any] | None:
        got = box.feed.services(started).get(unit, [])
        return got if len(got) >= n else None

    burner = box.feed.wait("burner samples", lambda: samples("burner.service", 3), 5 * POLLING_S + 5)
    hog = box.feed.wait("hog samples", lambda: samples("hog.service", 2), 3 * POLLING_S + 5)
    (t0, _, r0), (t1, _, r1) = burner[-2], burner[-1]
    cpu_ms = int(r1["0:2101"]["vcpu_cpu_mS"]) - int(r0["0:2101"]["vcpu_cpu_mS"])
    assert cpu_ms >= 0.5 * (t1 - t0) * 1000, f"{cpu_ms} ms of CPU in {t1 - t0:.1f} s of a busy loop"
    assert int(hog[-1][2]["0:2102"]["vmem_memory"]) >= 96 << 20
    assert int(burner[-1][2]["0:2102"]["vmem_memory"]) < 96 << 20
    box.run("systemctl", "stop", "burner.service", "hog.service")


def http_get(host: str, port: int) -> int:
    """One request on its own connection; returns the client's port."""
    c = http.client.HTTPConnection(host, port, timeout=5)
    try:
        c.connect()
        client_port = c.sock.getsockname()[1]
        c.request("GET", "/")
        assert c.getresponse().status == 200
        return client_port
    finally:
        c.close()


def test_requests_to_an_http_server_unit_are_marked_with_its_data_source(box: Box) -> None:
    started = time.monotonic()
    box.run("systemd-run", "--unit", "web.service", "-p", "WorkingDirectory=/tmp", "python3", "-m",
            "http.server", "8080")  # fmt: skip
    web = box.feed.wait("web.service samples", lambda: box.feed.services(started).get("web.service"), POLLING_S + 6)
    web_index = web[0][1].split(":")[1]
    ip = box.ip()
    box.feed.wait("the server to listen", lambda: _connects(ip, 8080), 10)
    http_get(ip, 8080)  # the first connection's first packets may go before the socket maps are built
    time.sleep(1.5)
    asked = time.monotonic()
    clients = {http_get(ip, 8080) for _ in range(5)}

    def samples() -> list[dict[str, Any]] | None:
        got = [f for f in box.feed.flows(asked) if _client_port(f) in clients]
        return got if len({_client_port(f) for f in got}) == len(clients) else None

    time.sleep(2)  # the agent flushes at least once a second
    flows = box.feed.wait("flow samples of the requests", samples, 5)
    for f in flows:
        header = f["0:1"]
        entities = f.get("0:2210")
        assert entities is not None, f"an unmarked sample: {header}\n{fail_info(box)}"
        if header["TCPDstPort"] == "8080":  # a request, received by the server
            assert (entities["entities_dst_class"], entities["entities_dst_index"]) == ("3", web_index)
            assert f["sample"]["outputPort"] == "1073741823"  # to the host itself
        else:  # an answer, sent by the server
            assert (entities["entities_src_class"], entities["entities_src_index"]) == ("3", web_index)
    assert len(flows) >= 5 * 4, "each request is several packets, all sampled at 1-in-1"


def _connects(host: str, port: int) -> bool:
    try:
        http_get(host, port)
        return True
    except OSError:
        return False


def _client_port(flow: dict[str, Any]) -> int | None:
    header = flow.get("0:1", {})
    if header.get("TCPDstPort") == "8080":
        return int(header["TCPSrcPort"])
    if header.get("TCPSrcPort") == "8080":
        return int(header["TCPDstPort"])
    return None


def test_restarting_dbus_leaves_the_agent_running_and_services_reported(box: Box) -> None:
    pid = box.run("systemctl", "show", "-p", "MainPID", "--value", "hsflowd-py").strip()
    restarted = time.monotonic()
    box.run("systemctl", "restart", "dbus")
    unit = "after-dbus.service"
    box.run("systemd-run", "--unit", unit, "sleep", "600")
    box.feed.wait(f"{unit} reported after the bus restart", lambda: unit in box.feed.services(restarted),
                  REFRESH_S - 2)  # fmt: skip
    assert box.run("systemctl", "show", "-p", "MainPID", "--value", "hsflowd-py").strip() == pid
    assert box.run("systemctl", "is-active", "hsflowd-py", check=False).strip() == "active"
    # services known before kept being polled through the outage
    agent = [t for t, _, _ in box.feed.services(restarted).get("hsflowd-py.service", [])]
    assert agent and agent[0] - restarted < POLLING_S + 2
    log = box.journal()
    assert log.count("D-Bus unavailable") == 1, fail_info(box)
    assert "D-Bus answers again" in log
