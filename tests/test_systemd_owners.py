"""markTraffic's socket → service maps, on real traffic over loopback to a server in a live cgroup.

The server runs in a cgroup of the test's own (a stand-in for a unit's
ControlGroup: the same kernel objects), the client is the test process, and
the packets are captured from ``lo`` with an AF_PACKET socket, so every
sample is a frame the kernel really sent, with the direction it reported.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from packets import sampled_packet
from test_systemd_service import HOST_MEMORY, LiveCgroup, describe

from hsflowd_py import netlink as nl
from hsflowd_py.flow import (
    DIRECTION_IN,
    DIRECTION_OUT,
    DIRECTION_UNKNOWN,
    DST,
    SRC,
    SampledPacket,
    mark_entity,
)
from hsflowd_py.modules.systemd.owners import LOOPBACK_IFINDEX, SCAN_MIN_S, Owners, scan
from hsflowd_py.modules.systemd.service import Service
from hsflowd_py.modules.tcp import inet_diag
from hsflowd_py.packet import IPPROTO_TCP, parse
from hsflowd_py.readers.cgroup import read_mounts
from hsflowd_py.sflow.records import ExtendedEntities

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
DS_INDEX = 123456
LOOPBACK = bytes([127, 0, 0, 1])
IFINDEX = 2

SERVER = """
import socket, sys, threading
port = int(sys.argv[1])
tcp = socket.create_server(("127.0.0.1", port))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", port))
def echo_udp():
    while True:
        data, peer = udp.recvfrom(2048)
        udp.sendto(data, peer)
def echo(c):
    for data in iter(lambda: c.recv(2048), b""):
        c.sendall(data)
threading.Thread(target=echo_udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, _ = tcp.accept()
    threading.Thread(target=echo, args=(c,), daemon=True).start()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, cgroup: LiveCgroup) -> None:
        self.port = free_port()
        p = cgroup.start("python3", "-c", SERVER, str(self.port))
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        self.service = Service("echo.service", uuid.uuid4(), DS_INDEX, Path("/"), describe, lambda: HOST_MEMORY)
        self.service.place(read_mounts(Path("/")), cgroup.path)


@pytest.fixture
def server() -> Iterator[Server]:
    cgroup = LiveCgroup("sdown")
    try:
        yield Server(cgroup)
    finally:
        cgroup.close()


def capture(port: int, traffic: Callable[[], None], ifindex: int = IFINDEX) -> list[SampledPacket]:
    """The frames to or from ``port`` on lo while ``traffic()`` runs, as samples with the kernel's direction.

    By default they are given as samples of another interface (``IFINDEX``), where the direction names
    the one local end; ``ifindex = LOOPBACK_IFINDEX`` gives them as what they are, samples of ``lo``.
    """
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as cap:
        cap.bind(("lo", 0))
        traffic()
        cap.settimeout(0.3)
        out = []
        try:
            while len(out) < 200:
                frame, addr = cap.recvfrom(65536)
                flow = parse(frame, 1)
                if flow is not None and port in (flow.sport, flow.dport):
                    direction = DIRECTION_OUT if addr[2] == PACKET_OUTGOING else DIRECTION_IN
                    out.append(sampled_packet(ifindex, frame, direction))
        except TimeoutError:
            pass
    assert out, f"nothing captured on lo for port {port}"
    return out


def entities(packet: SampledPacket) -> tuple[int, int, int, int] | None:
    found = [r for r in packet.extra if isinstance(r, ExtendedEntities)]
    assert len(found) <= 1
    return tuple(found[0].values()) if found else None  # type: ignore[return-value]


def expected(packet: SampledPacket, port: int) -> tuple[int, int, int, int] | None:
    """The server's side is marked when it is the packet's local side (on lo both sides are); the client
    (this test) is no service."""
    flow = parse(packet.header, 1)
    assert flow is not None
    if packet.ds_index == LOOPBACK_IFINDEX:
        return (3, DS_INDEX, 0, 0) if flow.sport == port else (0, 0, 3, DS_INDEX)
    if packet.direction == DIRECTION_OUT and flow.sport == port:
        return (3, DS_INDEX, 0, 0)
    if packet.direction == DIRECTION_IN and flow.dport == port:
        return (0, 0, 3, DS_INDEX)
    return None


async def settle(owners: Owners, packet: SampledPacket) -> None:
    if owners.resolve(packet) is None:
        await owners.resolve_after_scan(packet)


def tcp_exchange(port: int, keep: list[socket.socket] | None = None) -> None:
    c = socket.create_connection(("127.0.0.1", port))
    for _ in range(3):
        c.sendall(b"hello")
        assert c.recv(100) == b"hello"
    if keep is None:
        c.close()
    else:
        keep.append(c)


def test_tcp_and_udp_samples_are_marked_by_table_look_up(server: Server) -> None:
    owners = Owners(Path("/"))
    owners.set_services([server.service])
    port = server.port

    def traffic() -> None:
        tcp_exchange(port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"ping", ("127.0.0.1", port))
            u.settimeout(2)
            assert u.recvfrom(100)[0] == b"ping"

    packets = capture(port, traffic, LOOPBACK_IFINDEX)

    async def run() -> None:
        for p in packets:
            await settle(owners, p)

    asyncio.run(run())
    assert [entities(p) for p in packets] == [expected(p, port) for p in packets]
    protos = {parse(p.header, 1).proto for p in packets if entities(p)}  # type: ignore[union-attr]
    assert protos == {IPPROTO_TCP, 17}
    assert owners.stats["marked"] == sum(1 for p in packets if entities(p))
    assert 1 <= owners.stats["scans"] <= 2, owners.stats  # the first unknown socket scans; the rest reuse it


CLIENT = """
import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
for _ in range(3):
    c.sendall(b"hello")
    assert c.recv(100) == b"hello"
print(c.getsockname()[1], flush=True)
time.sleep(60)  # keeps the socket while the test scans; the cgroup's close() kills it
"""


def test_a_request_between_two_services_over_loopback_names_both(server: Server) -> None:
    """Both ends of a packet on lo are this host's: a request from one service to another is marked with
    both, whichever copy of the packet (sent or received) is sampled."""
    cgroup = LiveCgroup("sdcli")
    try:
        client_service = Service("client.service", uuid.uuid4(), DS_INDEX + 1, Path("/"), describe, lambda: HOST_MEMORY)
        client_service.place(read_mounts(Path("/")), cgroup.path)

        def traffic() -> None:
            p = cgroup.start("python3", "-c", CLIENT, str(server.port))
            assert p.stdout is not None and p.stdout.readline().strip().isdigit()

        packets = capture(server.port, traffic, LOOPBACK_IFINDEX)
        owners = Owners(Path("/"))
        owners.set_services([server.service, client_service])

        async def run() -> None:
            for p in packets:
                await settle(owners, p)

        asyncio.run(run())
    finally:
        cgroup.close()
    assert {p.direction for p in packets} == {DIRECTION_IN, DIRECTION_OUT}
    for p in packets:
        flow = parse(p.header, 1)
        assert flow is not None
        server_sent = flow.sport == server.port
        want = (3, DS_INDEX, 3, DS_INDEX + 1) if server_sent else (3, DS_INDEX + 1, 3, DS_INDEX)
        assert entities(p) == want
    assert owners.stats["marked"] == len(packets)


def test_unowned_ends_are_remembered_and_not_scanned_again(server: Server) -> None:
    owners = Owners(Path("/"))
    owners.set_services([server.service])
    packets = [p for p in capture(server.port, lambda: tcp_exchange(server.port)) if expected(p, server.port) is None]

    async def run() -> None:
        await settle(owners, packets[0])  # a client packet: scanned, found to be nobody's
        scans = owners.stats["scans"]
        for p in packets:
            assert owners.resolve(p) is False
        assert owners.stats["scans"] == scans

    asyncio.run(run())
    assert all(entities(p) is None for p in packets)


def kernel_socket(local: bytes, local_port: int, remote: bytes, remote_port: int) -> inet_diag.DiagReply:
    """Ask the kernel (sock_diag, as the tcp module does) for an established TCP socket."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, nl.NETLINK_SOCK_DIAG) as s:
        key = inet_diag.SocketKey(IPPROTO_TCP, local, local_port, remote, remote_port)
        s.send(inet_diag.encode_request(key, 1))
        data = s.recv(nl.RECV_BYTES)
    for msg_type, _, _, start, end in nl.messages(data):
        if msg_type == inet_diag.SOCK_DIAG_BY_FAMILY:
            return inet_diag.decode_reply(data, start, end)
    raise AssertionError("the kernel did not answer the look-up")


def test_the_kernel_cgroup_id_of_a_socket_is_its_cgroup_directory_inode(server: Server) -> None:
    keep: list[socket.socket] = []
    try:
        packets = capture(server.port, lambda: tcp_exchange(server.port, keep))
        client_port = keep[0].getsockname()[1]
        reply = kernel_socket(LOOPBACK, server.port, LOOPBACK, client_port)
    finally:
        for c in keep:
            c.close()
    if reply.cgroup_id is None:
        pytest.skip("this kernel sends no INET_DIAG_CGROUP_ID (before 5.7)")
    assert server.service.dirs.unified is not None
    assert reply.cgroup_id == os.stat(server.service.dirs.unified).st_ino

    owners = Owners(Path("/"))
    owners.set_services([server.service])
    by_id = [p for p in packets if expected(p, server.port)]
    for p in by_id:
        p.cgroup_id = reply.cgroup_id
        assert owners.resolve(p) is True  # settled at once, no scan
    assert owners.stats["scans"] == 0
    assert [entities(p) for p in by_id] == [expected(p, server.port) for p in by_id]


def test_the_socket_inode_note_is_used_after_one_scan(server: Server) -> None:
    keep: list[socket.socket] = []
    try:
        packets = capture(server.port, lambda: tcp_exchange(server.port, keep))
        reply = kernel_socket(LOOPBACK, server.port, LOOPBACK, keep[0].getsockname()[1])
    finally:
        for c in keep:
            c.close()
    owners = Owners(Path("/"))
    owners.set_services([server.service])
    server_side = [p for p in packets if expected(p, server.port)]
    for p in server_side:
        p.socket_inode = reply.inode
        p.cgroup_id = 1  # a cgroup id naming no service (systemd's own sockets) does not settle it

    async def run() -> None:
        for p in server_side:
            await settle(owners, p)

    asyncio.run(run())
    assert [entities(p) for p in server_side] == [expected(p, server.port) for p in server_side]


def test_an_unknown_direction_tries_both_ends(server: Server) -> None:
    owners = Owners(Path("/"))
    owners.set_services([server.service])
    packets = capture(server.port, lambda: tcp_exchange(server.port))
    for p in packets:
        p.direction = DIRECTION_UNKNOWN

    async def run() -> None:
        for p in packets:
            await settle(owners, p)

    asyncio.run(run())
    for p in packets:
        flow = parse(p.header, 1)
        assert flow is not None
        want = (3, DS_INDEX, 0, 0) if flow.sport == server.port else (0, 0, 3, DS_INDEX)
        assert entities(p) == want


def test_mark_shares_the_entity_record_another_module_made() -> None:
    p = sampled_packet(1, b"", DIRECTION_IN, frame_length=64)
    p.extra.append(ExtendedEntities(3, 100007, 0, 0))  # docker named the sending container
    mark_entity(p, DST, 100042)
    mark_entity(p, SRC, 100099)  # a side already named stays as it is
    assert [tuple(r.values()) for r in p.extra] == [(3, 100007, 3, 100042)]


def test_scans_are_spaced_out(server: Server) -> None:
    """An unknown end soon after a scan waits for the next scan, SCAN_MIN_S after the last one.

    The client ends (this test's sockets) are unknown to every scan, and each
    connection has its own, so each asks for a scan of its own.
    """
    owners = Owners(Path("/"))
    owners.set_services([server.service])
    clients = [
        [p for p in capture(server.port, lambda: tcp_exchange(server.port)) if expected(p, server.port) is None]
        for _ in range(2)
    ]

    async def run() -> float:
        await settle(owners, clients[0][0])
        t = time.monotonic()
        await settle(owners, clients[1][0])
        return time.monotonic() - t

    waited = asyncio.run(run())
    assert owners.stats["scans"] == 2
    assert waited >= SCAN_MIN_S * 0.8, f"the second scan came {waited:.2f} s after the first"
    assert entities(clients[1][0]) is None and owners.stats["unowned"] == 2


def test_a_service_that_cannot_be_read_does_not_stop_the_scan(tmp_path: Path) -> None:
    """Two services in a cgroup v1 tree: one's process fd directory cannot be listed, the other's is mapped."""
    root = tmp_path
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(
        "26 25 0:22 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
    )
    services = []
    for name, pid in (("broken.service", 4301), ("dns.service", 4400)):
        cg = root / "sys/fs/cgroup/systemd/system.slice" / name
        cg.mkdir(parents=True)
        (cg / "cgroup.procs").write_text(f"{pid}\n")
        svc = Service(name, uuid.uuid4(), 100000 + pid, root, describe, lambda: HOST_MEMORY)
        svc.place(read_mounts(root), f"/system.slice/{name}")
        services.append(svc)
    (root / "proc/4301").mkdir()
    (root / "proc/4301/fd").write_text("")  # listing it fails (ENOTDIR), as EACCES would without privileges
    (root / "proc/4400/fd").mkdir(parents=True)
    (root / "proc/4400/fd/3").symlink_to("socket:[555]")
    (root / "proc/4400/fd/4").symlink_to("/dev/null")
    (root / "proc/net").mkdir()
    (root / "proc/net/udp").write_text(
        "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "  12: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 555 2 0 0\n"
    )
    by_inode, endpoints, failures = scan(root, services)
    assert by_inode == {555: services[1]}
    assert endpoints.find(17, bytes([10, 0, 0, 1]), 53, bytes([10, 0, 0, 9]), 3333) == 555
    assert [str(f) for f in failures] == [f"{root}/proc/4301/fd: Not a directory"]
