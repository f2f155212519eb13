"""Both kernel samplers on a real veth pair: accounting, directions, headers, VLAN tags, drops, GSO.

Each test opens one sampler on the root-namespace end of a veth pair whose other end is in a
namespace, sends real traffic across, and checks what the sampler hands to ``emit`` against
the kernel's own counters and the packets that were sent.  Offloads are off on the pair
(one packet in the kernel is one packet on the wire) except in the GSO test.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from netns import VethNamespace, sh
from pcap_netns import veth_pair

from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, Header
from hsflowd_py.modules.pcap import ebpf
from hsflowd_py.modules.pcap.cbpf import CbpfSampler
from hsflowd_py.modules.pcap.ebpf import EbpfSampler
from hsflowd_py.modules.pcap.interfaces import Tap
from hsflowd_py.modules.pcap.sampler import Sampler, SamplerError
from hsflowd_py.readers.netclass import read_interface

pytestmark = pytest.mark.root
ROOT = Path("/")
KINDS = ["cbpf", "ebpf"]


@dataclass
class Sample:
    ds_index: int
    rate: int
    ethernet: bool
    header: bytes
    sample_pool: int
    drops: int
    direction: int
    frame_length: int
    timestamp_ns: int
    sequence: int | None = None


class Sink:
    """Stands in for the flow path (``FlowPath.interface``): keeps every sample, the header copied out of
    the ring, with the values of the interface's entry the sampler asked for.  Samples are kept as
    given and made into :class:`Sample` when read: the drain of a fast stream has no time to spare."""

    def __init__(self) -> None:
        self.given: list[tuple[Entry, bytes, dict[str, Any]]] = []
        self.entries: dict[tuple[int, int, bool], Entry] = {}

    def __call__(self, ifindex: int, sampling_rate: int, ethernet: bool) -> Entry:
        """The same entry while the interface's values stay (the eBPF sampler asks at every sample)."""
        key = (ifindex, sampling_rate, ethernet)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Entry(self, *key)
        return entry

    @property
    def samples(self) -> list[Sample]:
        return [Sample(e.ds_index, e.rate, e.ethernet, header, **packet) for e, header, packet in self.given]


@dataclass
class Entry:
    sink: Sink
    ds_index: int
    rate: int
    ethernet: bool

    def emit(self, *, header: Header, start: int, length: int, **packet: Any) -> None:
        """``flow.Emit``: the packet's other values as the sampler named them."""
        self.sink.given.append((self, bytes(header[start : start + length]), packet))

    def records_at_once_many(self, ring: Header, offset: int, stride: int, lengths: list[int]) -> list[None]:
        """No enricher here knows records at once: every sample comes through ``emit``."""
        return [None] * len(lengths)


def offloads(v: VethNamespace, state: str) -> None:
    for cmd in (["ethtool", "-K", v.host_dev], v.exec("ethtool", "-K", v.ns_dev)):
        sh(*cmd, "tso", state, "gso", state, "gro", state)


@pytest.fixture
def veth() -> Iterator[VethNamespace]:
    with veth_pair("pcsm") as v:
        offloads(v, "off")
        yield v


def packets(dev: str) -> int:
    base = Path("/sys/class/net", dev, "statistics")
    return int((base / "rx_packets").read_text()) + int((base / "tx_packets").read_text())


def rx_packets(dev: str) -> int:
    return int(Path("/sys/class/net", dev, "statistics", "rx_packets").read_text())


def tap_of(v: VethNamespace, kind: str, rate: int, header_bytes: int = 128, dev: str | None = None) -> Tap:
    info = read_interface(ROOT, dev or v.host_dev)
    assert info is not None
    return Tap(info.name, info.ifindex, rate, header_bytes, False, kind, info.mac, True)


async def sampler_of(kind: str, sink: Sink) -> Sampler:
    if kind == "cbpf":
        return CbpfSampler(sink, ROOT)
    try:
        return await EbpfSampler.create(sink, ROOT)
    except SamplerError as e:
        pytest.skip(f"eBPF sampler unavailable here: {e}")


async def run_process(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def settle() -> None:
    """Let the samplers' last blocks retire (cBPF: 50 ms) and drains run (eBPF: 10 ms)."""
    await asyncio.sleep(0.3)


def within_binomial(count: int, trials: int, rate: int, sigmas: float = 4.5) -> bool:
    expected = trials / rate
    return abs(count - expected) <= sigmas * math.sqrt(trials * (1 / rate) * (1 - 1 / rate)) + 1


@pytest.mark.parametrize("kind", KINDS)
def test_pool_directions_and_headers(veth: VethNamespace, kind: str) -> None:
    sink = Sink()

    async def run() -> int:
        sampler = await sampler_of(kind, sink)
        tap = tap_of(veth, kind, 5)
        sampler.open(tap)
        before = packets(veth.host_dev)
        await run_process("ping", "-f", "-q", "-c", "4000", "-s", "200", "-p", "c0ffee", veth.ns_ip)
        await settle()
        counted = packets(veth.host_dev) - before
        sampler.close(tap.ifindex)
        sampler.stop()
        return counted

    counted = asyncio.run(run())
    samples = sink.samples
    assert counted >= 8000
    last = samples[-1]
    assert abs(last.sample_pool - counted) <= counted * 0.01, (last.sample_pool, counted)
    assert [s.sample_pool for s in samples] == sorted(s.sample_pool for s in samples)
    assert within_binomial(len(samples), last.sample_pool, 5), (len(samples), last.sample_pool)
    assert last.drops == 0
    if kind != "cbpf":  # numbered in the kernel, with no gap (two CPUs may swap neighbours)
        assert sorted(s.sequence for s in samples) == list(range(1, len(samples) + 1))
    host_mac = read_interface(ROOT, veth.host_dev).mac  # type: ignore[union-attr]
    ips = {socket.inet_aton(veth.host_ip): DIRECTION_OUT, socket.inet_aton(veth.ns_ip): DIRECTION_IN}
    echo = [s for s in samples if s.header[12:14] == b"\x08\x00" and s.header[23] == 1]
    assert len(echo) >= 0.95 * len(samples)
    for s in echo:
        assert s.ds_index == tap_of(veth, kind, 5).ifindex and s.rate == 5
        assert s.direction == ips[s.header[26:30]]
        assert (s.header[6:12] == host_mac) == (s.direction == DIRECTION_OUT)
        assert s.frame_length == 14 + 20 + 8 + 200 + 4  # the frame on the wire, with its FCS
        assert len(s.header) == 128 and b"\xc0\xff\xee" in s.header
        assert abs(s.timestamp_ns - time.time_ns()) < 60e9
    outs = sum(s.direction == DIRECTION_OUT for s in echo)
    assert within_binomial(outs, len(echo), 2)  # requests and replies alike


@pytest.mark.parametrize("kind", KINDS)
def test_rate_one_takes_every_packet(veth: VethNamespace, kind: str) -> None:
    """1-in-1 keeps every packet (the established agent's ``jneq #1`` filter would keep none)."""
    sink = Sink()

    async def run() -> None:
        sampler = await sampler_of(kind, sink)
        tap = tap_of(veth, kind, 1, header_bytes=64)
        sampler.open(tap)
        await run_process("ping", "-f", "-q", "-c", "500", "-s", "20", veth.ns_ip)
        await settle()
        sampler.stop()

    asyncio.run(run())
    assert len(sink.samples) >= 1000
    # a packet's sample may be in the ring before its count
    assert abs(len(sink.samples) - sink.samples[-1].sample_pool) <= 2
    assert all(len(s.header) == min(64, s.frame_length - 4) for s in sink.samples)


TAGGED = """
import socket, struct, sys
dev, dst, src = sys.argv[1], bytes.fromhex(sys.argv[2]), bytes.fromhex(sys.argv[3])
addresses = socket.inet_aton(sys.argv[4]) + socket.inet_aton(sys.argv[5])
ip = struct.pack(">BBHHHBBH", 0x45, 0, 128, 0, 0, 64, 17, 0) + addresses
udp = struct.pack(">HHHH", 4000, 4001, 108, 0) + bytes(100)
frame = dst + src + struct.pack(">HHH", 0x8100, 0x2007, 0x0800) + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
for _ in range(int(sys.argv[6])):
    s.send(frame)
"""


def voluntary_switches() -> int:
    """How often this thread has blocked (each wake-up of it ends one)."""
    status = Path(f"/proc/self/task/{threading.get_native_id()}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("voluntary_ctxt_switches")).split()[1])


def test_an_idle_ebpf_sampler_sleeps_until_the_next_sample(
    veth: VethNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing sampled the loop is not woken ten times a second by the quiet-period timer: once that
    drain found the ring empty, the agent sleeps until the kernel's next sample wakes it (its slow
    timer, ``ASLEEP_S``, set out of this test's reach: the samples are drained on the wake-up alone)."""
    monkeypatch.setattr(ebpf, "ASLEEP_S", 60.0)
    sink = Sink()
    # a silent link: no IPv6 router solicitations or MLD reports to sample
    sh("sysctl", "-q", f"net.ipv6.conf.{veth.host_dev}.disable_ipv6=1")
    sh(*veth.exec("sysctl", "-q", f"net.ipv6.conf.{veth.ns_dev}.disable_ipv6=1"))

    async def run() -> tuple[int, int]:
        sampler = await sampler_of("ebpf", sink)
        tap = tap_of(veth, "ebpf", 1, header_bytes=64)
        sampler.open(tap)
        await asyncio.sleep(0.5)  # the first quiet-period drain, ring empty: asleep
        before = voluntary_switches()
        await asyncio.sleep(1.5)  # its end: 15 more at DRAIN_S
        idle = voluntary_switches() - before
        await run_process("ping", "-c", "3", "-i", "0.2", "-s", "20", veth.ns_ip)
        await settle()
        drained = len(sink.given)  # before ``close``, which drains what is left
        sampler.close(tap.ifindex)
        sampler.stop()
        return idle, drained

    idle, drained = asyncio.run(run())
    assert idle <= 2, idle
    assert drained == len(sink.given)
    echo = [s for s in sink.samples if s.header[12:14] == b"\x08\x00" and s.header[23] == 1]
    assert len(echo) == 6, [s.header.hex() for s in sink.samples]  # 3 requests out, 3 replies in


@pytest.mark.parametrize("kind", KINDS)
def test_a_vlan_tag_the_kernel_took_out_is_put_back(veth: VethNamespace, kind: str) -> None:
    """A received 802.1Q frame loses its tag into skb metadata before either hook sees it: both samplers put
    it back into the header and count it in the frame length."""
    host_mac = read_interface(ROOT, veth.host_dev).mac  # type: ignore[union-attr]
    ns_mac = subprocess.run(veth.exec("cat", f"/sys/class/net/{veth.ns_dev}/address"), capture_output=True, text=True)
    sink = Sink()

    async def run() -> None:
        sampler = await sampler_of(kind, sink)
        sampler.open(tap_of(veth, kind, 1, header_bytes=64))
        args = [veth.ns_dev, host_mac.hex(), ns_mac.stdout.strip().replace(":", ""), veth.ns_ip, veth.host_ip, "50"]
        await run_process(*veth.exec(sys.executable, "-c", TAGGED, *args))
        await settle()
        sampler.stop()

    asyncio.run(run())
    tagged = [s for s in sink.samples if s.header[12:14] == b"\x81\x00"]
    assert len(tagged) == 50
    for s in tagged:
        assert s.direction == DIRECTION_IN
        assert s.header[14:16] == b"\x20\x07"  # priority 1, VLAN 7
        assert s.header[16:18] == b"\x08\x00"
        assert s.header[30:34] == socket.inet_aton(veth.ns_ip)
        assert len(s.header) == 64
        assert s.frame_length == 14 + 4 + 20 + 8 + 100 + 4


BLAST = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = bytes(100)
for _ in range(int(sys.argv[2])):
    s.sendto(payload, (sys.argv[1], 9))
"""


@pytest.mark.parametrize("kind", KINDS)
def test_drops_are_a_running_total_of_lost_samples(veth: VethNamespace, kind: str) -> None:
    """With the agent stalled, a flood overruns the ring: every packet is then either delivered or counted
    as dropped, and the drop count is a running total (not re-added per sample)."""
    sink = Sink()
    sent = 80000

    async def run() -> None:
        sampler = await sampler_of(kind, sink)
        sampler.open(tap_of(veth, kind, 1, header_bytes=64))
        subprocess.run([sys.executable, "-c", BLAST, veth.ns_ip, str(sent)], check=True)  # blocks the loop
        await settle()
        await run_process("ping", "-c", "3", "-i", "0.1", veth.ns_ip)  # samples after the loss carry it
        await settle()
        sampler.stop()

    asyncio.run(run())
    last = sink.samples[-1]
    assert last.drops > sent // 4, "the ring should have overflowed"
    assert abs(len(sink.samples) + last.drops - last.sample_pool) <= 0.001 * last.sample_pool + 5
    drops = [s.drops for s in sink.samples]
    assert drops == sorted(drops)
    assert drops[-1] - drops[0] <= last.sample_pool  # a running total, not a sum of totals


def test_ebpf_counts_gso_packets_as_their_wire_segments() -> None:
    """With TSO on, one skb stands for many wire packets: the pool counts segments, sampling keeps 1 in N of
    them, and each sample reports the wire frame of a segment, not the 64 KB super-packet."""
    sink = Sink()
    mib = 1 << 20
    with veth_pair("pcgs") as v:

        async def run() -> tuple[int, int, int, int]:
            sampler = await sampler_of("ebpf", sink)
            assert isinstance(sampler, EbpfSampler)
            tap = tap_of(v, "ebpf", 10)
            sampler.open(tap)
            server = await asyncio.create_subprocess_exec(
                *v.exec("iperf3", "-s", "-1", "-p", "5231"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            await asyncio.sleep(0.5)
            skbs_before, acks_before = packets(v.host_dev), rx_packets(v.host_dev)
            await run_process("iperf3", "-c", v.ns_ip, "-p", "5231", "-n", "300M")
            await server.wait()
            await settle()
            # the kernel's own totals: samples the full ring refused after the last one written are in no sample
            counts = sampler.counts.lookup(ebpf._KEY.pack(tap.ifindex))
            assert counts is not None
            pool, drops, _ = ebpf._COUNTS.unpack(counts[0])
            sampler.stop()
            return packets(v.host_dev) - skbs_before, rx_packets(v.host_dev) - acks_before, pool, drops

        skbs, acks, pool, drops = asyncio.run(run())
    mss = 1500 - 20 - 20 - 12  # MTU less IPv4, TCP and the timestamp option
    wire = math.ceil(300 * mib / mss) + acks  # data segments one way, one ACK per skb back (no GRO here)
    last = sink.samples[-1]
    assert skbs < wire / 5, "TSO should have built super-packets"
    assert abs(pool - wire) <= 0.02 * wire, (pool, wire, skbs)
    assert last.sample_pool <= pool and last.drops <= drops
    assert within_binomial(len(sink.samples) + drops, pool, 10), (len(sink.samples), drops, pool)
    data = sorted(s.frame_length for s in sink.samples if s.direction == DIRECTION_OUT)
    assert len(data) > 0.9 * len(sink.samples)
    assert data[len(data) // 2] == 14 + 20 + 32 + mss + 4  # a full segment on the wire, FCS included
    assert data[-1] <= 1518


LOOPBACK = """
import asyncio, json, subprocess, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_pcap_samplers import Sink, rx_packets, tx_packets
from hsflowd_py.modules.pcap import ebpf
from hsflowd_py.modules.pcap.ebpf import EbpfSampler
from hsflowd_py.modules.pcap.interfaces import Tap

async def main():
    sink = Sink()
    sampler = await EbpfSampler.create(sink, Path("/"))
    sampler.open(Tap("lo", 1, 1, 128, False, "ebpf", bytes(6), True, loopback=True))
    rx, tx = rx_packets("lo"), tx_packets("lo")
    subprocess.run(["ping", "-q", "-c", "20", "-i", "0.01", "127.0.0.1"], check=True, capture_output=True)
    await asyncio.sleep(0.3)
    counted = (rx_packets("lo") - rx, tx_packets("lo") - tx)
    sampler.stop()
    samples = [[s.sample_pool, s.direction, s.header.hex()] for s in sink.samples]
    print(json.dumps({"counted": counted, "samples": samples}))

asyncio.run(main())
"""


def tx_packets(dev: str) -> int:
    return int(Path("/sys/class/net", dev, "statistics", "tx_packets").read_text())


def test_ebpf_counts_loopback_once_as_it_comes_in() -> None:
    """On lo every packet leaves and comes back: the eBPF sampler counts and samples it once, as it
    comes in, so that the pool is lo's packet count (rx_packets, equal to tx_packets) and each ping
    is one sample.  In a namespace of its own, whose lo carries nothing else."""
    with veth_pair("pclo") as v:
        script = v.exec(sys.executable, "-c", LOOPBACK, str(Path(__file__).parent))
        out = subprocess.run(script, capture_output=True, text=True, timeout=60)
    if "SamplerError" in out.stderr:
        pytest.skip(f"eBPF sampler unavailable here: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    rx, tx = result["counted"]
    assert rx == tx == 40  # 20 echo requests and 20 replies, each through lo once
    samples = result["samples"]
    assert [pool for pool, _, _ in samples] == list(range(1, 41))
    assert {direction for _, direction, _ in samples} == {DIRECTION_IN}
