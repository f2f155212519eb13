"""The docker module inside a real Agent object (counter samples kept instead of sent), following
the real test engine: markTraffic on frames captured from real container traffic, the stats API
fallback, block I/O from processes, and faults of what the engine sends."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import select
import shutil
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from dockerd import SOCKET, Container, Engine, containers
from packets import sampled_packet

from hsflowd_py.agent import Agent
from hsflowd_py.cgroup_counters import KernelSource, ProcDir
from hsflowd_py.config import Settings, parse_config
from hsflowd_py.flow import HEADER_IPV4, SampledPacket
from hsflowd_py.modules.docker import DockerModule
from hsflowd_py.pollers import Poller
from hsflowd_py.readers import cgroup as cg
from hsflowd_py.sflow import records as rec

FIXTURES = Path(__file__).parent / "fixtures"
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1


class Recorder(Agent):
    """The real agent, its counter samples kept as (ds_index, records) instead of encoded and sent."""

    def __init__(self, settings: Settings, root: Path = Path("/")) -> None:
        super().__init__(settings, root=root)
        self.samples: list[tuple[int, list[rec.Record]]] = []

    def _send_counters(self, p: Poller, records: list[rec.Record]) -> None:
        self.samples.append((p.spec.ds_index, records))

    def of(self, ds_index: int) -> list[dict[int, rec.Record]]:
        return [{r.FORMAT: r for r in records} for ds, records in self.samples if ds == ds_index]


def settings(socket_path: Path | str = SOCKET, extra: str = "") -> Settings:
    return parse_config(
        f"sflow {{ polling = 1 collector {{ ip = 127.0.0.1 }} docker {{ socket = {socket_path} {extra} }} }}"
    )


async def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if result := condition():
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def started(agent: Recorder) -> DockerModule:
    m = DockerModule(agent.context, agent.settings)
    await m.start()
    return m


# ------------------------------------------------------------------ markTraffic


def capture(dev: str, macs: set[bytes], count: int, timeout: float) -> list[bytes]:
    """Frames on ``dev`` whose source MAC is one of ``macs`` (AF_PACKET, every frame).

    A bridge shows the frames it forwards between its ports only while promiscuous."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    frames: list[bytes] = []
    try:
        s.bind((dev, ETH_P_ALL))
        mreq = struct.pack("iHH8s", socket.if_nametoindex(dev), PACKET_MR_PROMISC, 0, b"")
        s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        end = time.monotonic() + timeout
        while len(frames) < count and (left := end - time.monotonic()) > 0:
            if select.select([s], [], [], left)[0]:
                frame = s.recv(2048)
                if frame[6:12] in macs and frame[12:14] == b"\x08\x00":
                    frames.append(frame)
    finally:
        s.close()
    return frames


def sampled(frame: bytes, protocol: int = 1) -> SampledPacket:
    return sampled_packet(socket.if_nametoindex("docker0"), frame, protocol=protocol)


def entities(packet: SampledPacket) -> tuple[int, int, int, int] | None:
    found = [r for r in packet.extra if isinstance(r, rec.ExtendedEntities)]
    assert len(found) <= 1
    return tuple(found[0].values()) if found else None  # type: ignore[return-value]


def host_veth_of(c: Container) -> int:
    """ifindex of the host end of a container's eth0, from the host's sysfs (independent of the module)."""
    peer = int(Path(f"/proc/{c.pid}/root/sys/class/net/eth0/iflink").read_text())
    for dev in os.listdir("/sys/class/net"):
        if int(Path(f"/sys/class/net/{dev}/ifindex").read_text()) == peer:
            return peer
    raise AssertionError(f"no host interface with ifindex {peer}")


def test_mark_traffic_between_two_containers(docker_engine: Engine, busybox_image: str) -> None:
    async def body() -> None:
        with containers(docker_engine, "dkmark") as cs:
            b = cs.run("b", "sleep", "60")
            a = cs.run("a", "ping", "-i", "0.2", "-c", "150", b.ip)
            agent = Recorder(settings(extra="markTraffic = on"))
            m = await started(agent)
            try:
                await until(lambda: a.id in m.containers and b.id in m.containers, 10, "both containers tracked")
                ds_a, ds_b = m.containers[a.id].ds_index, m.containers[b.id].ds_index
                (marking,) = m.enrichers()
                macs = {bytes.fromhex(a.mac.replace(":", "")), bytes.fromhex(b.mac.replace(":", ""))}
                frames = await asyncio.to_thread(capture, "docker0", macs, 6, 10)
                assert len(frames) >= 4, "no ping traffic seen on docker0"
                ns_a, ns_b = f"/proc/{a.pid}/ns/net", f"/proc/{b.pid}/ns/net"
                for frame in frames:
                    p = sampled(frame)
                    assert marking.enrich(p) is None
                    if frame[6:12] == bytes.fromhex(a.mac.replace(":", "")):
                        assert entities(p) == (3, ds_a, 3, ds_b) and p.netns == ns_a
                    else:
                        assert entities(p) == (3, ds_b, 3, ds_a) and p.netns == ns_b
                    # without the MAC header the addresses alone identify both ends
                    bare = sampled(frame[14:], HEADER_IPV4)
                    marking.enrich(bare)
                    assert entities(bare) == entities(p)
                # the bridge's own MAC and address to a: one side marked, another module's 2210 kept
                bridge_mac = bytes.fromhex(Path("/sys/class/net/docker0/address").read_text().strip().replace(":", ""))
                a_mac = bytes.fromhex(a.mac.replace(":", ""))
                ip = frames[0][14:]
                gateway = ip[:12] + socket.inet_aton("172.17.0.1") + socket.inet_aton(a.ip) + ip[20:]
                to_a = sampled(a_mac + bridge_mac + b"\x08\x00" + gateway)
                to_a.extra.append(rec.ExtendedEntities(src_ds_class=3, src_ds_index=123456))
                marking.enrich(to_a)
                assert entities(to_a) == (3, 123456, 3, ds_a)
                # nothing known: nothing added
                stranger = sampled(bytes(6) + bytes.fromhex("020000000001") + b"\x86\xdd" + bytes(40))
                marking.enrich(stranger)
                assert entities(stranger) is None and stranger.netns is None
                # the note the tcp module reads, for a packet from outside to b (addresses only)
                to_b = ip[:12] + socket.inet_aton("192.0.2.1") + socket.inet_aton(b.ip) + ip[20:]

                def netns_note() -> str | None:
                    packet = sampled(to_b, HEADER_IPV4)
                    marking.enrich(packet)
                    return packet.netns

                assert netns_note() == ns_b
                # the host ends of the veths
                veths = {host_veth_of(a), host_veth_of(b)}
                assert veths <= agent.container_ifindexes
                cs.remove_all()
                await until(lambda: a.id not in m.containers and b.id not in m.containers, 10, "containers gone")
                assert not veths & agent.container_ifindexes and netns_note() is None
            finally:
                await m.stop()

    asyncio.run(body())


def test_mark_traffic_off_adds_nothing(docker_engine: Engine, busybox_image: str) -> None:
    async def body() -> None:
        with containers(docker_engine, "dkmoff") as cs:
            a = cs.run("a", "sleep", "30")
            agent = Recorder(settings())
            m = await started(agent)
            try:
                await until(lambda: a.id in m.containers, 10, "container tracked")
                assert m.enrichers() == [], "no marking: samples keep the allocation-free path"
            finally:
                await m.stop()

    asyncio.run(body())


# ------------------------------------------------------------------ names and states


def test_names_hostnames_renames_and_pauses(docker_engine: Engine, busybox_image: str) -> None:
    """``hostname = on`` names containers by their hostname, made unique; a rename and a pause show."""

    async def body() -> None:
        with containers(docker_engine, "dknames") as cs:
            first = cs.run("first", "sleep", "60", options=("--hostname", "twin"))
            second = cs.run("second", "sleep", "60", options=("--hostname", "twin"))
            agent = Recorder(settings(extra="hostname = on"))
            m = await started(agent)
            try:
                await until(lambda: first.id in m.containers and second.id in m.containers, 10, "both tracked")

                def latest(c: Container) -> dict[int, rec.Record]:
                    agent.tick()
                    return agent.of(m.containers[c.id].ds_index)[-1]

                await until(lambda: agent.tick() or agent.of(m.containers[second.id].ds_index), 3, "samples")
                names = {latest(first)[2000].hostname, latest(second)[2000].hostname}
                assert names == {"twin", f"twin.{second.id[:12]}"} or names == {"twin", f"twin.{first.id[:12]}"}

                m.reconfigure(settings())  # hostname = off: engine names
                await until(lambda: latest(first)[2000].hostname == first.name, 3, "the engine's name")

                docker_engine.docker("rename", first.name, first.name + "-renamed")
                await until(lambda: latest(first)[2000].hostname == first.name + "-renamed", 5, "the new name")

                docker_engine.docker("pause", second.id)
                await until(lambda: latest(second)[2101].state == 3, 5, "the paused state")
                docker_engine.docker("unpause", second.id)
                await until(lambda: latest(second)[2101].state == 1, 5, "the running state again")
            finally:
                await m.stop()

    asyncio.run(body())


# ------------------------------------------------------------------ sources of counters


def engine_cpu_ms(socket_path: Path, cid: str) -> int:
    """The engine's own figure for a container's CPU time, asked over its socket without the module."""
    conn = http.client.HTTPConnection("localhost", timeout=30)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.connect(str(socket_path))
    conn.request("GET", f"/containers/{cid}/stats?stream=false")
    reply = json.loads(conn.getresponse().read())
    conn.close()
    return reply["cpu_stats"]["cpu_usage"]["total_usage"] // 1_000_000


def test_stats_api_when_the_kernel_view_is_out_of_reach(
    docker_engine: Engine, busybox_image: str, tmp_path: Path
) -> None:
    """An agent whose /proc does not show the engine's pids (here a fixture root) falls back to stats
    calls, and reports what the engine says.  (Engine 20.10's stats come back empty on a host where a
    cgroup v1 hierarchy is listed in /proc/<pid>/cgroup but not mounted, which the kernel readers
    take in their stride: then both sides are 0.)"""
    root = tmp_path / "root"
    shutil.copytree(FIXTURES / "host-debian12", root)

    async def body() -> None:
        with containers(docker_engine, "dkstats") as cs:
            a = cs.run("a", "sh", "-c", "timeout 20 sh -c 'while :; do :; done'; sleep 60")
            agent = Recorder(settings(), root=root)
            m = await started(agent)
            try:
                await until(lambda: a.id in m.containers, 10, "container tracked")
                t = m.containers[a.id]
                assert t.probe.source is None and t.probe.netns is None
                # the engine's record of the network attachment stands in for the namespace
                assert [i.mac.hex() for i in t.probe.interfaces if i.mac] == [a.mac.replace(":", "")]

                def ticked_readings(n: int) -> Callable[[], bool]:
                    goal = t.totals.readings + n

                    def done() -> bool:
                        agent.tick()
                        return t.totals.readings >= goal

                    return done

                before = await asyncio.to_thread(engine_cpu_ms, docker_engine.socket, a.id)
                await until(ticked_readings(2), 20, "two stats readings")  # the second one began after `before`
                reported = t.totals.cpu_ms
                after = await asyncio.to_thread(engine_cpu_ms, docker_engine.socket, a.id)
                assert before <= reported <= after
                samples = agent.of(t.ds_index)
                assert samples and samples[-1][2000].hostname == a.name and samples[-1][2101].state == 1
                assert m.stats["stats_calls"] >= 2
            finally:
                await m.stop()

    asyncio.run(body())


def test_block_io_from_processes_of_a_live_container(docker_engine: Engine, busybox_image: str) -> None:
    """Where the cgroup does not account block I/O, /proc/<pid>/io of its processes does, with fsync."""
    with containers(docker_engine, "dkio") as cs:
        a = cs.run("a", "sh", "-c", "sleep 1; dd if=/dev/zero of=/written bs=1M count=12 conv=fsync; sleep 60")
        root = Path("/")
        dirs = cg.locate(cg.read_mounts(root), cg.read_membership(root, a.pid))
        if not dirs.v1:
            pytest.skip("the per-process fallback serves cgroup v1; this host has none")
        without_blkio = cg.CgroupDirs(None, {k: v for k, v in dirs.v1.items() if k != "blkio"})
        src = KernelSource(root, ProcDir(root, a.pid), without_blkio, own_netns=True)
        try:
            before, _ = src.read(None)
            end = time.monotonic() + 15
            while time.monotonic() < end:
                after, errors = src.read(None)
                assert errors == []
                if after.io and after.io["wr_bytes"] >= 12 << 20:
                    break
                time.sleep(0.2)
            assert src.io_from_tasks
            assert before.io is not None and after.io is not None
            assert after.io["wr_bytes"] - before.io["wr_bytes"] >= 12 << 20
        finally:
            src.close()


# ------------------------------------------------------------------ reloads


def followers() -> list[asyncio.Task[Any]]:
    """The tasks following an engine in the running loop (the module names them docker-follow)."""
    return [t for t in asyncio.all_tasks() if t.get_name() == "docker-follow" and not t.done()]


def container_pollers(agent: Recorder) -> list[tuple[int, int]]:
    return [key for key in agent.pollers if key[0] == 3]


@pytest.mark.parametrize("removed", [False, True], ids=["socket-changed", "block-removed"])
def test_a_reload_then_stop_leaves_nothing_running(
    docker_engine: Engine, busybox_image: str, tmp_path: Path, removed: bool
) -> None:
    """A reload that moves the socket, or that removes docker {} (the socket then falls back to the
    default, so it looks moved too), followed at once by stop() as the core does: nothing follows
    the engine or polls a container afterwards."""
    link = tmp_path / "docker.sock"
    link.symlink_to(SOCKET)  # another path to the same engine

    async def body() -> None:
        with containers(docker_engine, "dkreload") as cs:
            a = cs.run("a", "sleep", "60")
            agent = Recorder(settings(link))
            m = await started(agent)
            await until(lambda: a.id in m.containers, 10, "container tracked")
            m.reconfigure(parse_config("sflow { collector { ip = 127.0.0.1 } }") if removed else settings())
            await m.stop()
            await asyncio.sleep(2)  # time enough for a left-over follower to track the container again
            assert followers() == [] and m.engine is None
            assert m.containers == {} and container_pollers(agent) == []

    asyncio.run(body())


def test_two_quick_socket_changes_leave_one_follower(docker_engine: Engine, busybox_image: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first.sock", tmp_path / "second.sock"
    first.symlink_to(SOCKET)
    second.symlink_to(SOCKET)

    async def body() -> None:
        with containers(docker_engine, "dkmoves") as cs:
            a = cs.run("a", "sleep", "60")
            agent = Recorder(settings())
            m = await started(agent)
            try:
                await until(lambda: a.id in m.containers, 10, "container tracked")
                m.reconfigure(settings(first))
                m.reconfigure(settings(second))
                await until(
                    lambda: m.engine and m.engine.socket_path == str(second) and a.id in m.containers,
                    10,
                    "the container tracked through the last socket",
                )
                await asyncio.sleep(1)
                assert followers() == [m._task]
                assert container_pollers(agent) == [(3, m.containers[a.id].ds_index)]
            finally:
                await m.stop()
            assert followers() == []

    asyncio.run(body())


# ------------------------------------------------------------------ faults of the engine


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """An HTTP server on a unix socket answering like a broken engine: the real one cannot be
    made to send malformed replies.  ``replies`` maps a path prefix to (status, body)."""

    daemon_threads = True

    def __init__(self, path: Path, replies: dict[str, tuple[int, str]], events: list[str]) -> None:
        self.replies = replies
        self.events = events
        super().__init__(str(path), FakeHandler)


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeEngine

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path.endswith("/events"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for line in self.server.events:
                data = (line + "\n").encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            time.sleep(30)  # keep the stream open, as an engine does
            return
        status, body = next((v for k, v in self.server.replies.items() if path.endswith(k)), (404, '{"message":"no"}'))
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_engine(tmp_path: Path) -> Iterator[tuple[Path, FakeEngine]]:
    path = tmp_path / "docker.sock"
    ids = ["a" * 64, "b" * 64, "c" * 64]
    start = json.dumps({"Type": "container", "Action": "start", "Actor": {"ID": ids[2], "Attributes": {}}})
    server = FakeEngine(
        path,
        {
            "/version": (200, json.dumps({"ApiVersion": "1.41", "Version": "20.10.24"})),
            "/containers/json": (200, json.dumps([{"Id": ids[0]}, {"Id": ids[1]}])),
            f"/containers/{ids[0]}/json": (200, "<html>not json</html>"),
            f"/containers/{ids[1]}/json": (200, json.dumps({"Id": ids[1], "Name": "/x", "State": {"Running": True}})),
            f"/containers/{ids[2]}/json": (500, json.dumps({"message": "container is restarting"})),
        },
        ["{not json", "[not json either", json.dumps({"Type": "container", "Action": "start"}), start],
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield path, server
    server.shutdown()
    server.server_close()


def test_malformed_replies_are_logged_once_and_skipped(
    fake_engine: tuple[Path, FakeEngine], caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = fake_engine
    caplog.set_level(logging.INFO, logger="hsflowd.docker")

    async def body() -> None:
        agent = Recorder(settings(path))
        m = await started(agent)
        try:
            await until(lambda: m.stats["malformed_events"] >= 3 and m.stats["inspect_refused"] >= 1, 10, "faults")
            assert m._task is not None and not m._task.done(), "the module must keep following the engine"
            assert m.containers == {} and agent.samples == []
            assert m.stats["malformed_replies"] == 2
        finally:
            await m.stop()

    asyncio.run(body())
    text = caplog.text
    assert "reply is not JSON" in text and "lacks State.Pid" in text and "event is not JSON" in text
    assert "container is restarting" in text
    assert text.count("event is not JSON") == 1  # the second one only counted
    assert "malformed event {'Type': 'container', 'Action': 'start'}" in text
    assert "Traceback" not in text


def test_engine_absent_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hsflowd.docker")

    async def body() -> None:
        m = await started(Recorder(settings(tmp_path / "nobody-here.sock")))
        try:
            await until(lambda: m.stats["engine_unavailable"] >= 2, 10, "two connection attempts")
        finally:
            await m.stop()

    asyncio.run(body())
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "unavailable" in warnings[0].getMessage()
