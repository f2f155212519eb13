"""/proc/net/{tcp,udp}{,6}: parsed from literal lines, then read live for sockets this test opens."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hsflowd_py.modules.systemd.sockets import Endpoints, Socket, parse_address, parse_table, read_sockets
from hsflowd_py.packet import IPPROTO_TCP, IPPROTO_UDP
from hsflowd_py.readers import ReaderError

LOOPBACK = bytes([127, 0, 0, 1])

# Lines as a little-endian kernel (6.x) prints them; headers included, as the files start with one.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 43205 1 0 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D6F2 01 00000000:00000000 00:00000000 00000000     0        0 43300 1 0 20 4 30 10 -1
   2: 0100007F:1F90 0100007F:D6F0 06 00000000:00000000 03:00000D5F 00000000     0        0 0 3 0
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:0016 0000000000000000FFFF00000100007F:A0B2 01 00000000:00000000 02:000AFB47 00000000     0        0 777 2 0 20 4 30 10 -1
"""  # noqa: E501
UDP = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 4985: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 72696 2 0 0
 6719: 0100007F:CC4E 0100007F:0035 01 00000000:00000000 00:00000000 00000000     0        0 73780 2 0 0
"""


def test_addresses_by_byte_order() -> None:
    assert parse_address("0100007F:1F90") == (LOOPBACK, 8080)
    assert parse_address("0100007F:1F90", little_endian=False) == (bytes([1, 0, 0, 127]), 8080)
    assert parse_address("00000000000000000000000001000000:0016") == (bytes(15) + b"\x01", 22)  # ::1
    assert parse_address("0000000000000000FFFF00000100007F:A0B2") == (LOOPBACK, 0xA0B2)  # ::ffff:127.0.0.1
    with pytest.raises(ValueError, match="not an address"):
        parse_address("7F000001")


def test_tables_parse_and_skip_time_wait() -> None:
    tcp = parse_table(TCP, IPPROTO_TCP)
    assert tcp == [
        Socket(IPPROTO_TCP, LOOPBACK, 8080, bytes(4), 0, 0x0A, 43205),
        Socket(IPPROTO_TCP, LOOPBACK, 8080, LOOPBACK, 0xD6F2, 0x01, 43300),
    ]  # the TIME_WAIT line has inode 0: nobody owns it
    assert [s.inode for s in parse_table(TCP, IPPROTO_TCP, {43300})] == [43300]
    tcp6 = parse_table(TCP6, IPPROTO_TCP)
    assert tcp6[0].local == bytes(16) and tcp6[0].local_port == 22
    assert tcp6[1].local == LOOPBACK and tcp6[1].remote_port == 0xA0B2


def test_a_broken_line_names_its_line() -> None:
    broken = TCP.replace("43300", "4x300")
    with pytest.raises(ReaderError, match=r":3: cannot parse") as e:
        parse_table(broken, IPPROTO_TCP)
    assert e.value.line == 3


def test_endpoints_prefer_the_connected_socket_then_the_bound_address() -> None:
    sockets = parse_table(TCP, IPPROTO_TCP) + parse_table(TCP6, IPPROTO_TCP) + parse_table(UDP, IPPROTO_UDP)
    e = Endpoints(sockets)
    # an established connection, and a new one that only the listener can own (its SYN)
    assert e.find(IPPROTO_TCP, LOOPBACK, 8080, LOOPBACK, 0xD6F2) == 43300
    assert e.find(IPPROTO_TCP, LOOPBACK, 8080, LOOPBACK, 0x1111) == 43205
    # the dual-stack listener on [::]:22 takes IPv4 too; its v4-mapped connection matches exactly
    assert e.find(IPPROTO_TCP, bytes([10, 0, 0, 1]), 22, bytes([10, 0, 0, 9]), 5000) == 21
    assert e.find(IPPROTO_TCP, LOOPBACK, 22, LOOPBACK, 0xA0B2) == 777
    # UDP: the wildcard-bound server, and a connected client socket
    assert e.find(IPPROTO_UDP, bytes([192, 0, 2, 2]), 53, bytes([192, 0, 2, 9]), 4000) == 72696
    assert e.find(IPPROTO_UDP, LOOPBACK, 0xCC4E, LOOPBACK, 53) == 73780
    # nothing there
    assert e.find(IPPROTO_TCP, LOOPBACK, 9, LOOPBACK, 1) is None
    assert e.find(IPPROTO_UDP, LOOPBACK, 8080, LOOPBACK, 1) is None


@pytest.fixture
def live_sockets() -> Iterator[dict[str, socket.socket]]:
    """A listener, both ends of a connection over loopback, and a bound UDP socket."""
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    socks = {"listener": listener, "client": client, "server": server, "udp": udp}
    yield socks
    for s in socks.values():
        s.close()


def inode(s: socket.socket) -> int:
    return os.fstat(s.fileno()).st_ino


def test_live_tables_find_this_process_sockets(live_sockets: dict[str, socket.socket]) -> None:
    inodes = {name: inode(s) for name, s in live_sockets.items()}
    found = read_sockets(Path("/"), set(inodes.values()))
    assert {s.inode for s in found} == set(inodes.values())
    e = Endpoints(found)
    port = live_sockets["listener"].getsockname()[1]
    client_port = live_sockets["client"].getsockname()[1]
    udp_port = live_sockets["udp"].getsockname()[1]
    assert e.find(IPPROTO_TCP, LOOPBACK, port, LOOPBACK, client_port) == inodes["server"]
    assert e.find(IPPROTO_TCP, LOOPBACK, client_port, LOOPBACK, port) == inodes["client"]
    assert e.find(IPPROTO_TCP, LOOPBACK, port, LOOPBACK, 1) == inodes["listener"]
    assert e.find(IPPROTO_UDP, LOOPBACK, udp_port, LOOPBACK, 9) == inodes["udp"]


def test_a_root_without_ipv6_tables_reads_the_others(tmp_path: Path) -> None:
    (tmp_path / "proc/net").mkdir(parents=True)
    (tmp_path / "proc/net/tcp").write_text(TCP)
    (tmp_path / "proc/net/udp").write_text(UDP)
    assert {s.inode for s in read_sockets(tmp_path)} == {43205, 43300, 72696, 73780}
