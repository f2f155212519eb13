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
    a = DatagramAssembler(agent, 100000, limit, sent.extend)
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
    a = DatagramAssembler(AGENT4, 100001, 1400, sent.extend)
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
    a = DatagramAssembler(AGENT4, 1, header + 2 * len(one), sent.extend)
    a.add(one, 0)
    a.add(flow(2), 0)  # header + 2 samples == limit: must not be packed together
    assert len(sent) == 1 and len(decode_datagram(sent[0]).samples) == 1


@pytest.mark.parametrize("limit", [400, 1400])
def test_samples_added_encoded_make_the_same_datagrams_as_whole_ones(limit: int) -> None:
    """Samples added a few at a time back to back (the eBPF drain's ``add_samples``, within ``room``),
    mixed with whole ones: the datagrams are byte for byte those of the same samples added whole."""
    whole: list[bytes] = []
    encoded: list[bytes] = []
    a, b = DatagramAssembler(AGENT4, 1, limit, whole.extend), DatagramAssembler(AGENT4, 1, limit, encoded.extend)
    seq = 1
    while seq < 60:
        run = [flow(s, 16 * (s % 5)) for s in range(seq, seq + seq % 3 + 1)]
        for sample in run:
            a.add(sample, uptime_ms=seq)
        if seq % 7 == 0:
            for sample in run:
                b.add(sample, uptime_ms=seq)
        while seq % 7 and run:  # as the drain does: what fits, then a new datagram
            fit = next((k for k in range(len(run), 0, -1) if sum(map(len, run[:k])) <= b.room(seq)), 0)
            if not fit and b.pending:
                b.flush(seq)
                continue
            fit = fit or 1
            b.add_samples(b"".join(run[:fit]), fit)
            run = run[fit:]
        seq += seq % 3 + 1
    a.flush(1000)
    b.flush(1000)
    assert encoded == whole


def test_samples_sent_alone_make_the_same_datagrams_as_whole_ones() -> None:
    """Datagrams' worth of samples handed over at once (the eBPF drain's ``send_samples``), after a
    sample still pending: the same datagrams, numbered in order, as the same samples added whole,
    each sent on its own (a run in one UDP-segmented send would reach a capture as one packet)."""
    whole: list[bytes] = []
    alone: list[bytes] = []

    a = DatagramAssembler(AGENT6, 7, 1400, whole.extend)
    b = DatagramAssembler(AGENT6, 7, 1400, alone.extend)
    samples = [flow(seq, 64) for seq in range(1, 30)]
    per = (1400 - 1 - 40) // len(samples[0])  # samples in a datagram after the 40-byte IPv6 header
    a.add(samples[0], 5)
    b.add(samples[0], 5)
    a.flush(5)  # the pending sample leaves first, then each run fills its own datagram
    for first in range(1, len(samples), per):
        for sample in samples[first : first + per]:
            a.add(sample, 5)
    a.flush(5)
    runs = [samples[f : f + per] for f in range(1, len(samples), per)]
    pieces = [(len(run), tuple(run) if k % 2 else (b"".join(run),)) for k, run in enumerate(runs)]  # either way
    assert b.send_samples(pieces, 5) == len(samples) - 1
    assert alone == whole
    assert len(whole[-1]) < len(whole[-2])
    assert [d.sequence for d in map(decode_datagram, alone)] == list(range(1, len(whole) + 1))
    assert b.samples_sent == len(samples) and b.datagrams_sent == len(whole)
