"""The sock_diag codec against the kernel: header layouts from gcc, answers about real sockets checked with ss,
getsockopt and fstat; and hostile replies.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_traffic import packed

from hsflowd_py import netlink as nl
from hsflowd_py.modules.tcp import inet_diag as diag

TCP_INFO_OPT = 11


def ask(request: bytes) -> list[tuple[int, bytes, int, int]]:
    """(type, datagram, start, end) of every message the kernel answers a request with."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, nl.NETLINK_SOCK_DIAG) as s:
        s.settimeout(2)
        s.send(request)
        data = s.recv(nl.RECV_BYTES)
    return [(t, data, a, b) for t, _, _, a, b in nl.messages(data)]


def ask_one(key: diag.SocketKey) -> diag.DiagReply | int:
    """The decoded reply, or the errno of an NLMSG_ERROR."""
    [(msg_type, data, a, b)] = ask(diag.encode_request(key, 7))
    if msg_type == nl.NLMSG_ERROR:
        return nl.error_code(data, a, b)
    assert msg_type == diag.SOCK_DIAG_BY_FAMILY
    return diag.decode_reply(data, a, b)


def key_of(s: socket.socket, proto: int = diag.IPPROTO_TCP) -> diag.SocketKey:
    local, remote = s.getsockname(), s.getpeername()
    return diag.SocketKey(proto, packed(local[0]), local[1], packed(remote[0]), remote[1])


@pytest.fixture
def connection() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A loopback TCP connection whose client has a small receive buffer, so its two window scales differ."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(server.getsockname())
        accepted, _ = server.accept()
        client.sendall(b"x" * 100_000)
        got = 0
        while got < 100_000:
            got += len(accepted.recv(65536))
        yield client, accepted
        client.close()
        accepted.close()


# ------------------------------------------------------------------ layouts


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_layouts_match_the_kernel_headers(tmp_path: Path) -> None:
    """Every offset this codec uses, against gcc's offsetof on the installed uapi headers."""
    fields = [name for name, _ in diag.TCP_INFO_LAYOUT if name not in ("tcpi_wscale", "tcpi_app_limited_flags")]
    lines = [f'printf("tcp_info.{n} %zu\\n", offsetof(struct tcp_info, {n}));' for n in fields]
    lines += [
        'printf("sizeof.tcp_info %zu\\n", sizeof(struct tcp_info));',
        'printf("sizeof.req %zu\\n", sizeof(struct inet_diag_req_v2));',
        'printf("sizeof.msg %zu\\n", sizeof(struct inet_diag_msg));',
        'printf("req.id %zu\\n", offsetof(struct inet_diag_req_v2, id));',
        'printf("req.states %zu\\n", offsetof(struct inet_diag_req_v2, idiag_states));',
        'printf("msg.uid %zu\\n", offsetof(struct inet_diag_msg, idiag_uid));',
        'printf("msg.inode %zu\\n", offsetof(struct inet_diag_msg, idiag_inode));',
        'printf("id.if %zu\\n", offsetof(struct inet_diag_sockid, idiag_if));',
        'printf("enum.info %d\\n", INET_DIAG_INFO);',
        'printf("enum.cgroup %d\\n", INET_DIAG_CGROUP_ID);',
        'printf("enum.by_family %d\\n", SOCK_DIAG_BY_FAMILY);',
    ]
    src = tmp_path / "layout.c"
    src.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/tcp.h>\n#include <linux/inet_diag.h>\n"
        "#include <linux/sock_diag.h>\nint main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n"
    )
    subprocess.run(["gcc", "-o", str(tmp_path / "layout"), str(src)], check=True)
    out = subprocess.run([str(tmp_path / "layout")], capture_output=True, text=True, check=True).stdout
    truth = {k: int(v) for k, v in (line.split() for line in out.splitlines())}

    ours: dict[str, int] = {}
    offset = 0
    for name, fmt in diag.TCP_INFO_LAYOUT:
        if name in fields:
            ours[f"tcp_info.{name}"] = offset
        offset += struct.calcsize(fmt)
    ours |= {
        "sizeof.tcp_info": diag.TCP_INFO.size,
        "sizeof.req": diag.REQUEST_SIZE,
        "sizeof.msg": diag.MSG_SIZE,
        "req.id": diag.REQ_V2.size,
        "req.states": diag.REQ_V2.size - 4,
        "msg.uid": diag.MSG_SIZE - 8,
        "msg.inode": diag.MSG_SIZE - 4,
        "id.if": diag.SOCKID.size,  # idiag_if and the cookie follow the ports and addresses
        "enum.info": diag.INET_DIAG_INFO,
        "enum.cgroup": diag.INET_DIAG_CGROUP_ID,
        "enum.by_family": diag.SOCK_DIAG_BY_FAMILY,
    }
    assert ours == truth


def test_request_bytes() -> None:
    key = diag.SocketKey(diag.IPPROTO_TCP, packed("192.0.2.1"), 40000, packed("198.51.100.2"), 5201)
    req = diag.encode_request(key, 99, ifindex=7)
    length, msg_type, flags, seq, _ = nl.NLMSGHDR.unpack_from(req)
    assert (length, msg_type, flags, seq) == (len(req), 20, nl.NLM_F_REQUEST, 99) and len(req) == 16 + 56
    body = req[16:]
    assert body[:4] == bytes([socket.AF_INET, 6, 1 << 1, 0])
    assert struct.unpack_from("!HH", body, 8) == (40000, 5201)
    assert body[12:16] == packed("192.0.2.1") and body[28:32] == packed("198.51.100.2")
    assert struct.unpack_from("=III", body, 44) == (7, 0xFFFFFFFF, 0xFFFFFFFF)
    udp = diag.encode_request(key._replace(proto=diag.IPPROTO_UDP), 1)[16:]
    assert struct.unpack_from("!HH", udp, 8) == (5201, 40000), "UDP look-ups take the remote end first"
    assert udp[12:16] == packed("198.51.100.2")


# ----------------------------------------------------------- real answers


def ss_line(port: int) -> str:
    out = subprocess.run(["ss", "-Htin", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    assert out.strip(), f"ss sees no socket on port {port}"
    return out


def test_reply_agrees_with_getsockopt_and_ss(connection: tuple[socket.socket, socket.socket]) -> None:
    client, _ = connection
    reply = ask_one(key_of(client))
    assert isinstance(reply, diag.DiagReply)
    assert reply.state == diag.TCP_ESTABLISHED and reply.family == socket.AF_INET
    assert (reply.local_port, reply.remote_port) == (client.getsockname()[1], client.getpeername()[1])
    assert reply.inode == os.fstat(client.fileno()).st_ino
    assert reply.uid == os.getuid()
    info = reply.tcp_info
    assert info is not None
    own = diag.decode_tcp_info(client.getsockopt(socket.IPPROTO_TCP, TCP_INFO_OPT, 512))
    for name in ("tcpi_state", "tcpi_snd_mss", "tcpi_rcv_mss", "tcpi_pmtu", "tcpi_advmss", "tcpi_total_retrans",
                 "tcpi_wscale", "tcpi_bytes_acked", "tcpi_segs_out"):  # fmt: skip
        assert getattr(info, name) == getattr(own, name), name
    line = ss_line(client.getsockname()[1])
    snd_scale, rcv_scale = (int(x) for x in re.search(r"wscale:(\d+),(\d+)", line).groups())  # type: ignore[union-attr]
    assert snd_scale != rcv_scale, "the test needs different scales to tell the nibbles apart"
    assert (info.tcpi_wscale & 0xF, info.tcpi_wscale >> 4) == (snd_scale, rcv_scale)
    assert info.tcpi_snd_mss == int(re.search(r"\bmss:(\d+)", line).group(1))  # type: ignore[union-attr]
    assert info.tcpi_rcv_mss == int(re.search(r"rcvmss:(\d+)", line).group(1))  # type: ignore[union-attr]
    assert info.tcpi_snd_cwnd == int(re.search(r"cwnd:(\d+)", line).group(1))  # type: ignore[union-attr]
    assert info.tcpi_bytes_acked == int(re.search(r"bytes_acked:(\d+)", line).group(1)) == 100_001  # type: ignore[union-attr]
    ss_rtt = float(re.search(r"\brtt:([\d.]+)/", line).group(1))  # type: ignore[union-attr]
    assert abs(info.tcpi_rtt / 1000 - ss_rtt) <= 0.0015 + ss_rtt * 0.5
    ss_min = float(re.search(r"minrtt:([\d.]+)", line).group(1))  # type: ignore[union-attr]
    assert abs(info.tcpi_min_rtt / 1000 - ss_min) <= 0.001


def cgroup2_mount() -> Path | None:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def test_reply_carries_the_sockets_cgroup() -> None:
    """INET_DIAG_CGROUP_ID is the inode of the cgroup v2 directory of the process that made the socket."""
    mount = cgroup2_mount()
    if mount is None or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup v2 hierarchy")
    group = mount / f"hsfpy-tcp-{os.getpid()}"
    group.mkdir()
    try:
        with socket.create_server(("127.0.0.1", 0)) as server:
            code = (
                "import os, socket, sys, time\n"
                f"open({str(group / 'cgroup.procs')!r}, 'w').write(str(os.getpid()))\n"
                f"s = socket.create_connection(('127.0.0.1', {server.getsockname()[1]}))\n"
                "print(s.getsockname()[1], flush=True)\n"
                "sys.stdin.read()\n"
            )
            child = subprocess.Popen(
                [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
            try:
                assert child.stdout is not None
                child_port = int(child.stdout.readline())
                accepted, _ = server.accept()
                with accepted:
                    key = key_of(accepted)._replace(local_port=child_port, remote_port=accepted.getsockname()[1])
                    reply = ask_one(key)
            finally:
                child.kill()
                child.wait()
        assert isinstance(reply, diag.DiagReply)
        assert reply.cgroup_id == group.stat().st_ino != 1
    finally:
        group.rmdir()


def test_the_other_end_and_the_absent() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            reply = ask_one(key_of(accepted))
            assert isinstance(reply, diag.DiagReply) and reply.inode == os.fstat(accepted.fileno()).st_ino
            absent = key_of(client)._replace(remote_port=1)
            listener = ask_one(key_of(accepted)._replace(remote_port=1))
    assert ask_one(absent) == 2  # ENOENT
    assert (
        isinstance(listener, diag.DiagReply) and listener.state == diag.TCP_LISTEN
    ), "a look-up of an unknown peer on a listening port finds the listener: states must be filtered"


def test_ipv4_lookup_finds_a_dual_stack_socket() -> None:
    with socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        with client, accepted:
            key = diag.SocketKey(6, packed("127.0.0.1"), port, packed("127.0.0.1"), client.getsockname()[1])
            reply = ask_one(key)
            assert isinstance(reply, diag.DiagReply)
            assert reply.family == socket.AF_INET6 and reply.local == packed("::ffff:127.0.0.1")
            assert reply.inode == os.fstat(accepted.fileno()).st_ino and reply.tcp_info is not None


def test_udp_lookup_has_no_tcp_info() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        key = diag.SocketKey(diag.IPPROTO_UDP, packed("127.0.0.1"), s.getsockname()[1], packed("127.0.0.1"), 9)
        reply = ask_one(key)
        assert isinstance(reply, diag.DiagReply)
        assert reply.inode == os.fstat(s.fileno()).st_ino and reply.tcp_info is None


# ----------------------------------------------------------------- hostile


def test_tcp_info_of_other_kernels() -> None:
    full = bytes(range(256))
    assert diag.decode_tcp_info(full) == diag.decode_tcp_info(full[: diag.TCP_INFO.size])
    old = diag.decode_tcp_info(full[:104])  # a 4.x kernel's struct ends after tcpi_total_retrans
    assert old.tcpi_total_retrans == struct.unpack_from("=I", full, 100)[0]
    assert old.tcpi_min_rtt == 0 and old.tcpi_snd_wnd == 0


def test_short_reply_is_an_error() -> None:
    with pytest.raises(diag.DiagError, match="inet_diag_msg of 10 bytes"):
        diag.decode_reply(bytes(10), 0, 10)


def test_attribute_walk_stops_at_a_bad_length() -> None:
    msg = bytes(diag.MSG_SIZE) + struct.pack("=HH", 12, diag.INET_DIAG_CGROUP_ID) + struct.pack("=Q", 5)
    bad = msg + struct.pack("=HH", 200, diag.INET_DIAG_INFO) + bytes(8)
    reply = diag.decode_reply(bad, 0, len(bad))
    assert reply.cgroup_id == 5 and reply.tcp_info is None


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=400))
def test_any_datagram_decodes_or_raises_diag_error(data: bytes) -> None:
    for msg_type, _, _, start, end in nl.messages(data):
        assert 0 <= start <= end <= len(data)
        if msg_type == diag.SOCK_DIAG_BY_FAMILY:
            with contextlib.suppress(diag.DiagError):
                diag.decode_reply(data, start, end)
        nl.error_code(data, start, end)
