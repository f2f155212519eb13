"""Datagrams built in the kernel (``sampler.bpf.h``, KERNEL_DATAGRAMS): what the ring of datagrams holds
after the sampler's program ran, through BPF_PROG_TEST_RUN, on packets built here.

Each sample is compared byte for byte with what ``FlowEncoder`` writes for it (``test_pcap_wire``), in
the order of the sequence numbers; how samples are packed is checked against the agent's rule (a
datagram is sent before the sample that would take it past its room), and drops against the counts
the program keeps.  The last test runs a sampler on a veth with a real flow path."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import VethNamespace
from pcap_netns import veth_pair
from test_pcap_samplers import Sink
from test_pcap_wire import MAC_A, MAC_B, configure, encoded, ipv4, records, run, timestamp_of, totals

from hsflowd_py import bpf
from hsflowd_py.flow_path import EncodedFlows, FlowPath
from hsflowd_py.modules.pcap import ebpf, ebpf_core
from hsflowd_py.modules.pcap.ebpf import (
    _ASSEMBLY,
    _DATAGRAM,
    _DATAGRAM_FLUSHED,
    _KEY,
    _U64,
    WAKE_ASLEEP,
    EbpfSampler,
    _Loaded,
)
from hsflowd_py.modules.pcap.interfaces import Tap
from hsflowd_py.modules.pcap.sampler import SamplerError
from hsflowd_py.readers.netclass import read_interface
from hsflowd_py.sflow.assembler import DatagramAssembler
from hsflowd_py.sflow.codec import decode_datagram

pytestmark = pytest.mark.root

ROOM = 1400 - 1 - 28
"""Bytes of samples in a 1,400-byte datagram from an IPv4 agent address, as the agent sets it."""
ROOM_MAX = 8192 - 1 - 28
"""The same for the largest datagramBytes."""
RING = 1 << 16
HEADER_BYTES = 128


@pytest.fixture
def loaded() -> Iterator[_Loaded]:
    try:
        done = _Loaded(*ebpf_core.load(1 << 16, RING), "libbpf")
    except SamplerError as e:
        pytest.skip(f"the BPF object cannot be loaded here: {e}")
    assemble(done, ROOM)
    yield done
    done.close()


def assemble(loaded: _Loaded, room: int) -> None:
    """Datagrams of ``room`` bytes of samples built in the kernel, as the agent asks for them."""
    bpf.Map(loaded.assembly, 4, _ASSEMBLY.size).update(_KEY.pack(0), _ASSEMBLY.pack(room, 1))


def frame(k: int) -> bytes:
    """A UDP frame whose payload (and so its sample) is of one of several sizes."""
    udp = struct.pack(">HHHH", 5000, 5239, 8 + 7 * (k % 13), 0) + bytes(range(7 * (k % 13)))
    return MAC_A + MAC_B + b"\x08\x00" + ipv4(17, len(udp), k) + udp


def datagrams(loaded: _Loaded) -> list[tuple[int, int, bytes]]:
    """Every datagram record in the ring, in order: its count of samples, why it was written, its samples."""
    ring = bpf.RingBuffer(loaded.datagrams, loaded.maps["datagrams"]["max_entries"])
    try:
        out, cons, prod = [], ring.consumer_pos[0], ring.producer_pos[0]
        while cons < prod:
            pos = ring.data_offset + (cons & ring.mask)
            length, _, count, why, used, _ = _DATAGRAM.unpack_from(ring.data_map, pos)
            assert length == _DATAGRAM.size - 8 + used
            out.append((count, why, bytes(ring.data_map[pos + _DATAGRAM.size : pos + _DATAGRAM.size + used])))
            cons += length + 8 + 7 & ~7
        ring.consumer_pos[0] = cons
        return out
    finally:
        ring.close()


def samples_of(body: bytes) -> list[bytes]:
    """A datagram's samples, each by its own length word."""
    out, at = [], 0
    while at < len(body):
        (length,) = struct.unpack_from(">I", body, at + 4)
        out.append(body[at : at + 8 + length])
        at += 8 + length
    assert at == len(body)
    return out


@pytest.mark.parametrize("room", [ROOM, ROOM_MAX])
def test_samples_fill_datagrams_in_the_order_of_their_numbers(loaded: _Loaded, room: int) -> None:
    assemble(loaded, room)
    counts = configure(loaded, 1, HEADER_BYTES)
    sent = [frame(k) for k in range(60)]
    for f in sent:
        run(loaded.egress, f)
    full = datagrams(loaded)
    assert full and all(why != _DATAGRAM_FLUSHED for _, why, _ in full)
    bpf.run_program(loaded.flush)  # the agent's quiet-period drain: the datagram being built
    (last,) = datagrams(loaded)
    assert last[1] == _DATAGRAM_FLUSHED
    bpf.run_program(loaded.flush)
    assert datagrams(loaded) == []  # nothing built, nothing written
    per_datagram = [samples_of(body) for _, _, body in [*full, last]]
    assert [count for count, _, _ in [*full, last]] == list(map(len, per_datagram))
    got = [s for run_ in per_datagram for s in run_]
    assert len(got) == len(sent)
    for k, (sample, f) in enumerate(zip(got, sent, strict=True)):
        assert sample == encoded(f[:HEADER_BYTES], len(f) + 4, timestamp_of(sample), k + 1), f"sample {k + 1}"
    for (_, _, body), following in zip(full, per_datagram[1:], strict=True):
        assert len(body) <= room < len(body) + len(following[0])  # full: the next sample did not fit
    assert totals(counts) == (60, 0, 60)


def test_a_sleeping_agent_gets_the_next_sample_at_once(loaded: _Loaded) -> None:
    """With WAKE_ASLEEP set (the agent found the rings empty and sleeps), the next sample's datagram is
    written at once, and the flag cleared: the one after waits to fill its datagram."""
    configure(loaded, 1, HEADER_BYTES)
    wake = bpf.Map(loaded.wake, 4, 8)
    wake.update(_KEY.pack(WAKE_ASLEEP), _U64.pack(1))
    run(loaded.egress, frame(1))
    ((count, why, _),) = datagrams(loaded)
    assert (count, why) == (1, _DATAGRAM_FLUSHED)
    assert wake.lookup(_KEY.pack(WAKE_ASLEEP)) == [_U64.pack(0)]
    run(loaded.egress, frame(2))
    assert datagrams(loaded) == []


def test_samples_go_past_room_while_the_datagrams_ring_is_nearly_full_then_are_dropped_unnumbered(
    loaded: _Loaded,
) -> None:
    """The agent reads nothing while 400 samples are taken: once the ring of datagrams' free bytes fall short
    of what datagrams being written may need, samples go on into the datagram being built past room, and
    once that is full too they are counted as drops and not numbered.  None goes to the ring of samples,
    where it could overtake the datagrams numbered before it: every sample lies in the order of its number,
    the collector sees no gap, and the agent cuts the datagram built past room at its samples' ends into
    datagrams within room.  The first sample after the agent read the rings carries the drops."""
    counts = configure(loaded, 1, HEADER_BYTES)
    for k in range(400):
        run(loaded.egress, frame(k))
    pool, drops, sequence = totals(counts)
    assert pool == 400 and drops > 0 and sequence + drops == 400
    bpf.run_program(loaded.flush)  # writes nothing while the ring is nearly full
    full = datagrams(loaded)
    assert full and all(len(body) <= ROOM and why != _DATAGRAM_FLUSHED for _, why, body in full)
    assert records(loaded) == []
    bpf.run_program(loaded.flush)
    ring = bpf.RingBuffer(loaded.datagrams, loaded.maps["datagrams"]["max_entries"])
    at = ring.data_offset + (ring.consumer_pos[0] & ring.mask) + _DATAGRAM.size
    ((count, why, body),) = datagrams(loaded)
    assert why == _DATAGRAM_FLUSHED and len(body) > ROOM and len(samples_of(body)) == count
    built = [s for _, _, b in full for s in samples_of(b)] + samples_of(body)
    assert [struct.unpack_from(">I", s, 8)[0] for s in built] == list(range(1, sequence + 1))
    cut = ebpf._within(ring.view[at : at + len(body)], 1000, ROOM)  # read where the drain reads it
    ring.close()  # and nothing of the ring is kept
    assert len(cut) >= 2 and sum(n for n, _, _ in cut) == count
    assert [at for _, at, _ in cut] == list(itertools.accumulate([1000] + [length for _, _, length in cut[:-1]]))
    assert all(length <= ROOM for _, _, length in cut) and sum(length for _, _, length in cut) == len(body)
    assert [len(samples_of(body[at - 1000 : at - 1000 + length])) for _, at, length in cut] == [n for n, _, _ in cut]
    run(loaded.egress, frame(0))
    bpf.run_program(loaded.flush)
    ((_, _, body),) = datagrams(loaded)
    (after,) = samples_of(body)
    number, _, _, _, sample_pool, sample_drops = struct.unpack_from(">6I", after, 8)  # expanded: class and index
    assert (number, sample_pool, sample_drops) == (sequence + 1, 401, drops)


def test_a_sampler_sends_the_kernels_datagrams_and_keeps_its_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """An eBPF sampler with a flow path whose datagrams go to a list, pinging through a veth sampled 1-in-1:
    every sample reaches the list in a datagram the kernel built (the flow path's own way would do too:
    the sampler's count of kernel datagrams says which), numbered from 1 in order, its pool and drops the
    interface's; the kernel's clock offset is set again while only datagrams are drained (``CLOCK_S``)."""
    monkeypatch.setattr(ebpf, "CLOCK_S", 0.2)
    sent: list[bytes] = []
    flows = FlowPath({"flow_samples": 0}, lambda: 1000, lambda *_: None, 0.4)
    flows.assembler = DatagramAssembler(ipaddress.ip_address("192.0.2.2"), 0, 1400, sent.extend)

    async def run(v: VethNamespace) -> tuple[int, float, int]:
        try:
            sampler = await EbpfSampler.create(Sink(), Path("/"), EncodedFlows(flows))
        except SamplerError as e:
            pytest.skip(f"eBPF sampler unavailable here: {e}")
        info = read_interface(Path("/"), v.host_dev)
        assert info is not None
        sampler.open(Tap(info.name, info.ifindex, 1, 128, False, "ebpf", info.mac, True))
        started = sampler._clock_set
        proc = await asyncio.create_subprocess_exec("ping", "-c", "10", "-i", "0.1", "-s", "20", v.ns_ip)
        await proc.wait()
        await asyncio.sleep(0.3)
        clock_set = sampler._clock_set - started
        built = sampler.kernel_datagrams
        sampler.close(info.ifindex)
        sampler.stop()
        flows.assembler.flush(1000)
        return info.ifindex, clock_set, built

    with veth_pair("pckd") as v:
        ifindex, clock_set, built = asyncio.run(run(v))
    samples = [s for d in map(decode_datagram, sent) for s in d.samples if s.ds_index == ifindex]
    assert built >= 1 and clock_set >= 0.2
    assert [s.sequence for s in samples] == list(range(1, len(samples) + 1))
    assert len(samples) >= 20  # 10 requests and 10 replies, every one sampled
    assert [s.sample_pool for s in samples] == sorted(s.sample_pool for s in samples)
    assert {s.drops for s in samples} == {0}
