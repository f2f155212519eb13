"""The sampled-header parser: frames captured off a real veth, table cases for layers Linux will not emit here, and
hostile bytes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netns import VethNamespace, sh
from tcp_traffic import Capture, Frame

from hsflowd_py.packet import Flow, parse

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and AF_PACKET")

MAC = bytes.fromhex("020000000001020000000002")
V4A, V4B = socket.inet_aton("192.0.2.1"), socket.inet_aton("198.51.100.7")
V6A, V6B = socket.inet_pton(socket.AF_INET6, "2001:db8::1"), socket.inet_pton(socket.AF_INET6, "2001:db8::2")


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, options: bytes = b"", frag: int = 0) -> bytes:
    ihl = 5 + len(options) // 4
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(payload), 1, frag, 64, proto, 0, src, dst)
    return head + options + payload


def ipv6(src: bytes, dst: bytes, nxt: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nxt, 64, src, dst) + payload


def ports(sport: int, dport: int) -> bytes:
    return struct.pack("!HH", sport, dport) + bytes(16)


def ether(ethertype: int, payload: bytes, vlans: tuple[int, ...] = ()) -> bytes:
    tags = b"".join(struct.pack("!HH", tpid, 100) for tpid in vlans)
    return MAC + tags + struct.pack("!H", ethertype) + payload


# ------------------------------------------------------------------ table


def test_ethernet_ipv4_tcp() -> None:
    frame = ether(0x0800, ipv4(V4A, V4B, 6, ports(40000, 5201)))
    assert parse(frame, 1) == Flow(4, V4A, V4B, 6, 40000, 5201)


@pytest.mark.parametrize("vlans", [(0x8100,), (0x88A8, 0x8100)])
def test_vlan_tags_are_skipped(vlans: tuple[int, ...]) -> None:
    frame = ether(0x86DD, ipv6(V6A, V6B, 17, ports(53, 3333)), vlans)
    assert parse(frame, 1) == Flow(6, V6A, V6B, 17, 53, 3333)


def test_three_vlan_tags_are_too_many() -> None:
    assert parse(ether(0x0800, ipv4(V4A, V4B, 6, ports(1, 2)), (0x8100,) * 3), 1) is None


def test_ip_header_protocols_without_ethernet() -> None:
    assert parse(ipv4(V4A, V4B, 6, ports(1, 2)), 11) == Flow(4, V4A, V4B, 6, 1, 2)
    assert parse(ipv6(V6A, V6B, 6, ports(3, 4)), 12) == Flow(6, V6A, V6B, 6, 3, 4)
    assert parse(ipv4(V4A, V4B, 6, ports(1, 2)), 12) is None
    assert parse(ipv4(V4A, V4B, 6, ports(1, 2)), 2) is None


def test_ipv6_authentication_header_counts_in_words() -> None:
    ah = struct.pack("!BBH", 6, 4, 0) + bytes(20)  # (4 + 2) * 4 = 24 bytes
    assert parse(ipv6(V6A, V6B, 51, ah + ports(7, 8)), 12) == Flow(6, V6A, V6B, 6, 7, 8)


def test_ipv6_extension_chain_is_bounded() -> None:
    hop = struct.pack("!BB6x", 0, 0)  # hop-by-hop pointing at another hop-by-hop, forever
    assert parse(ipv6(V6A, V6B, 0, hop * 20), 12) is None


def test_non_transport_protocols_have_no_ports() -> None:
    assert parse(ipv4(V4A, V4B, 1, bytes(8)), 11) == Flow(4, V4A, V4B, 1, 0, 0)


def test_truncated_transport_header_gives_nothing() -> None:
    assert parse(ipv4(V4A, V4B, 6, b"\x01"), 11) is None


def test_tunnels_only_when_asked() -> None:
    inner = ipv6(V6A, V6B, 6, ports(443, 50000))
    ipip = ipv4(V4A, V4B, 41, inner)
    assert parse(ipip, 11) == Flow(4, V4A, V4B, 41, 0, 0)
    assert parse(ipip, 11, tunnel=True) == Flow(6, V6A, V6B, 6, 443, 50000, tunnelled=True)
    four_in_six = ipv6(V6A, V6B, 4, ipv4(V4B, V4A, 17, ports(9, 10)))
    assert parse(four_in_six, 12, tunnel=True) == Flow(4, V4B, V4A, 17, 9, 10, tunnelled=True)


def test_vxlan_without_the_vni_flag_is_plain_udp() -> None:
    vxlan = struct.pack("!HHHH", 5555, 4789, 0, 0) + bytes(8) + ether(0x0800, ipv4(V4A, V4B, 6, ports(1, 2)))
    assert parse(ipv4(V4B, V4A, 17, vxlan), 11, tunnel=True) == Flow(4, V4B, V4A, 17, 5555, 4789)


def test_truncated_inner_packet_falls_back_to_the_outer_flow() -> None:
    assert parse(ipv4(V4A, V4B, 4, b"\x45\x00"), 11, tunnel=True) == Flow(4, V4A, V4B, 4, 0, 0)


# -------------------------------------------------------------- hostile


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([1, 11, 12, 0, 5]), st.booleans())
def test_any_bytes_parse_to_a_flow_or_none(data: bytes, proto: int, tunnel: bool) -> None:
    flow = parse(data, proto, tunnel)
    if flow is not None:
        assert len(flow.src) == len(flow.dst) == (4 if flow.version == 4 else 16)
        assert 0 <= flow.sport < 65536 and 0 <= flow.dport < 65536 and 0 <= flow.proto < 256


@st.composite
def built_packets(draw: st.DrawFn) -> tuple[bytes, Flow]:
    """Ethernet frames with 0-2 VLAN tags, IPv4 (with options) or IPv6 (with extension headers), TCP or UDP."""
    proto = draw(st.sampled_from([6, 17]))
    sport, dport = draw(st.integers(1, 65535)), draw(st.integers(1, 65535))
    l4 = ports(sport, dport) + draw(st.binary(max_size=40))
    if draw(st.booleans()):
        src, dst = draw(st.binary(min_size=4, max_size=4)), draw(st.binary(min_size=4, max_size=4))
        packet = ipv4(src, dst, proto, l4, options=b"\x01" * 4 * draw(st.integers(0, 10)))
        ethertype, version = 0x0800, 4
    else:
        src, dst = draw(st.binary(min_size=16, max_size=16)), draw(st.binary(min_size=16, max_size=16))
        nxt, chain = proto, b""
        for ext in draw(st.lists(st.sampled_from([0, 43, 60, 44]), max_size=4)):
            units = 0 if ext == 44 else draw(st.integers(0, 3))
            chain = struct.pack("!BB", nxt, units) + bytes(6 + units * 8) + chain
            nxt = ext
        packet = ipv6(src, dst, nxt, chain + l4)
        ethertype, version = 0x86DD, 6
    vlans = tuple(draw(st.lists(st.sampled_from([0x8100, 0x88A8]), max_size=2)))
    return ether(ethertype, packet, vlans), Flow(version, src, dst, proto, sport, dport)


@settings(max_examples=500, deadline=None)
@given(built_packets())
def test_built_packets_parse_back(case: tuple[bytes, Flow]) -> None:
    frame, flow = case
    assert parse(frame, 1) == flow
    assert parse(frame, 1, tunnel=True) == flow


# ------------------------------------------------------- real frames


@pytest.fixture(scope="module")
def link() -> Iterator[VethNamespace]:
    with VethNamespace("tcpp", 41) as ns:
        yield ns


def capture_until(cap: Capture, want: int, keep: Callable[[Frame], bool], seconds: float = 3) -> list[Frame]:
    """The first ``want`` frames that ``keep`` accepts (whatever else the link carries), or those seen in time."""
    frames: list[Frame] = []
    end = time.monotonic() + seconds
    while len(frames) < want and (f := cap.read(max(0.0, end - time.monotonic()))) is not None:
        if keep(f):
            frames.append(f)
    return frames


def ip_protocol(frame: Frame) -> int | None:
    """The IP protocol of an untagged frame, read at fixed offsets (independently of the parser)."""
    ethertype = frame.data[12:14]
    return frame.data[23] if ethertype == b"\x08\x00" else frame.data[20] if ethertype == b"\x86\xdd" else None


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_real_tcp_frames(link: VethNamespace, family: int) -> None:
    """A connection attempt into the namespace (answered by a reset): every frame parses to its 4-tuple."""
    dst = link.ns_ip if family == socket.AF_INET else link.ns_ip6
    with Capture(link.host_dev) as cap, socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        with pytest.raises(OSError):
            s.connect((dst, 9))
        local = s.getsockname()
        frames = capture_until(cap, 2, lambda f: ip_protocol(f) == 6)
    src = socket.inet_pton(family, local[0])
    dst_b = socket.inet_pton(family, dst)
    version = 4 if family == socket.AF_INET else 6
    syn = [f for f in frames if f.outgoing]
    rst = [f for f in frames if not f.outgoing]
    assert syn and rst
    assert parse(syn[0].data, 1) == Flow(version, src, dst_b, 6, local[1], 9)
    assert parse(rst[0].data, 1) == Flow(version, dst_b, src, 6, 9, local[1])


def test_real_ipv4_options_and_fragments(link: VethNamespace) -> None:
    """IP options (IHL 6) and a datagram fragmented by the kernel: only the first fragment has ports."""
    with Capture(link.host_dev) as cap, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, b"\x01\x01\x01\x00")  # NOP NOP NOP END
        s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: let it fragment
        s.sendto(bytes(3000), (link.ns_ip, 7777))
        port = s.getsockname()[1]
        frames = capture_until(cap, 3, lambda f: f.outgoing and f.data[12:14] == b"\x08\x00")
    assert len(frames) >= 3
    assert frames[0].data[14] & 15 == 6
    first = parse(frames[0].data, 1)
    assert first == Flow(4, socket.inet_aton(link.host_ip), socket.inet_aton(link.ns_ip), 17, port, 7777)
    assert all(parse(f.data, 1) is None for f in frames[1:])


def test_real_ipv6_extension_headers(link: VethNamespace) -> None:
    """Hop-by-hop and destination options set on the socket, and kernel fragmentation, on real frames."""
    pad6 = b"\x01\x04\x00\x00\x00\x00"  # PadN filling an 8-byte option header
    with Capture(link.host_dev) as cap, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, b"\x00\x00" + pad6)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, b"\x00\x00" + pad6)
        s.sendto(bytes(3000), (link.ns_ip6, 7777))
        port = s.getsockname()[1]
        frames = capture_until(cap, 3, lambda f: f.outgoing and f.data[12:14] == b"\x86\xdd" and f.data[20] == 0)
    assert len(frames) >= 3
    src, dst = (socket.inet_pton(socket.AF_INET6, a) for a in (link.host_ip6, link.ns_ip6))
    assert parse(frames[0].data, 1) == Flow(6, src, dst, 17, port, 7777)
    assert all(parse(f.data, 1) is None for f in frames[1:])


def test_real_vxlan_frames(link: VethNamespace) -> None:
    """A VXLAN device over the veth: the underlay frames parse to the inner flow only with tunnel on."""
    vx = f"vxtcp{os.getpid() % 100000}"
    sh("ip", "link", "add", vx, "type", "vxlan", "id", "41", "local", link.host_ip, "remote", link.ns_ip,
       "dstport", "4789", "dev", link.host_dev)  # fmt: skip
    try:
        sh("ip", "addr", "add", "10.253.42.1/24", "dev", vx)
        sh("ip", "link", "set", vx, "up")
        sh("ip", "neigh", "add", "10.253.42.2", "lladdr", "02:00:00:00:00:02", "dev", vx, "nud", "permanent")
        with Capture(link.host_dev) as cap, socket.socket() as s:
            s.settimeout(0.5)
            with contextlib.suppress(OSError):
                s.connect(("10.253.42.2", 9))  # nobody decapsulates: the SYN is enough
            syn = Flow(
                4, socket.inet_aton("10.253.42.1"), socket.inet_aton("10.253.42.2"), 6, s.getsockname()[1], 9, True
            )
            frames: list[Frame] = []
            end = time.monotonic() + 3  # the device's own IPv6 chatter may come first: read until the SYN
            while (f := cap.read(max(0.0, end - time.monotonic()))) is not None:
                if f.outgoing and ip_protocol(f) == 17:
                    frames.append(f)
                    if parse(f.data, 1, tunnel=True) == syn:
                        break
    finally:
        subprocess.run(["ip", "link", "del", vx], check=False)
    assert syn in {parse(f.data, 1, tunnel=True) for f in frames}
    assert {parse(f.data, 1) for f in frames} == {
        Flow(4, socket.inet_aton(link.host_ip), socket.inet_aton(link.ns_ip), 17, sport, 4789)
        for sport in {struct.unpack_from("!H", f.data, 34)[0] for f in frames}
    }
