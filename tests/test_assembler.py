"""Datagram packing: sequence numbers, the datagramBytes limit, flushing."""

import ipaddress

import pytest

from hsflowd_py.sflow import records as rec
from hsflowd_py.sflow.assembler import DatagramAssembler
from hsflowd_py.sflow.codec import decode_datagram, encode_sample
from hsflowd_py.sflow.samples import CounterSample, FlowSample

AGENT4 = ipaddress.ip_address("192.0.2.2")
AGENT6 = ipaddress.ip_address("fd00:252::1")


def flow(seq: int, header_len: int = 128) -> bytes:
    return encode_sample(
        FlowSample(
            0, 8, 10, 10 * seq, 0, 8, 0x3FFFFFFF, [rec.SampledHeader(1, header_len + 4, 4, b"\xab" * header_len)], seq
        )
    )


@pytest.mark.parametrize("limit", [200, 400, 1400, 8192])
@pytest.mark.parametrize("agent", [AGENT4, AGENT6])
def test_datagrams_stay_under_the_limit_and_lose_nothing(limit: int, agent: object) -> None:
    sent: list[bytes] = []
    a = DatagramAssembler(agent, 100000, limit, sent.append)
    for seq in range(1, 101):
        a.add(flow(seq, 64), uptime_ms=seq)
    a.flush(1000)
    assert all(len(d) < limit for d in sent)
    decoded = [decode_datagram(d) for d in sent]
    assert [d.sequence for d in decoded] == list(range(1, len(sent) + 1))
    seqs = [s.sequence for d in decoded for s in d.samples]
    assert seqs == list(range(1, 101))
    assert all(d.agent == agent and d.sub_agent_id == 100000 for d in decoded)
    assert a.samples_sent == 100 and a.datagrams_sent == len(sent)


def test_flush_sends_nothing_when_empty_and_carries_uptime() -> None:
    sent: list[bytes] = []
    a = DatagramAssembler(AGENT4, 100001, 1400, sent.append)
    a.flush(5)
    assert sent == []
    a.add(encode_sample(CounterSample(2, 1, [rec.HostParent(2, 1)], 1)), 10)
    assert sent == [] and a.pending == 1
    a.flush(2500)
    d = decode_datagram(sent[0])
    assert (d.uptime_ms, d.sub_agent_id, len(d.samples)) == (2500, 100001, 1)


def test_a_sample_that_would_reach_the_limit_starts_a_new_datagram() -> None:
    sent: list[bytes] = []
    one = flow(1)
    header = 28
    a = DatagramAssembler(AGENT4, 1, header + 2 * len(one), sent.append)
    a.add(one, 0)
    a.add(flow(2), 0)  # header + 2 samples == limit: must not be packed together
    assert len(sent) == 1 and len(decode_datagram(sent[0]).samples) == 1


@pytest.mark.parametrize("limit", [400, 1400])
def test_gathered_samples_make_the_same_datagrams_as_whole_ones(limit: int) -> None:
    """Samples added as 32 bytes written here and the rest left in an outside buffer (the eBPF ring),
    mixed with whole ones, some sent while still outside, some copied in before their outside buffer
    was reused: the datagrams are byte for byte those of the same samples added whole."""
    whole: list[bytes] = []
    gathered: list[bytes] = []
    pieces: list[int] = []

    def send(datagram: bytes | list) -> None:
        """As sendmsg: the pieces are read at once."""
        pieces.append(1 if isinstance(datagram, bytes) else len(datagram))
        gathered.append(datagram if isinstance(datagram, bytes) else b"".join(datagram))

    a, b = DatagramAssembler(AGENT4, 1, limit, whole.append), DatagramAssembler(AGENT4, 1, limit, send)
    for seq in range(1, 60):
        sample = flow(seq, 16 * (seq % 5))
        a.add(sample, uptime_ms=seq)
        if seq % 7 == 0:
            b.add(sample, uptime_ms=seq)
            continue
        outside = bytearray(sample)
        if len(sample) > b.room(0) and b.pending:
            b.flush(seq)
        b.add_pieces([sample[:32], memoryview(outside)[32:]], 1, len(sample))
        if seq % 3 == 0:
            a.flush(seq)
            b.flush(seq)
        else:
            b.keep_pieces()
            outside[:] = bytes(len(outside))  # the ring reused
    a.flush(1000)
    b.flush(1000)
    assert gathered == whole
    assert max(pieces) > 3  # some went out in pieces
