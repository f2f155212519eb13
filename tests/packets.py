"""Sampled packets made by hand, with the header bytes of their own, as a sampler would hand
them to the flow path (``flow.Emit``), for the enrichers' tests and benchmarks."""

from __future__ import annotations

from hsflowd_py.flow import DIRECTION_UNKNOWN, HEADER_ETHERNET, Interface, SampledPacket


def sampled_packet(
    ifindex: int,
    frame: bytes,
    direction: int = DIRECTION_UNKNOWN,
    *,
    rate: int = 1,
    protocol: int = HEADER_ETHERNET,
    frame_length: int | None = None,
    header_bytes: int = 128,
) -> SampledPacket:
    """The first ``header_bytes`` of ``frame``, sampled 1-in-``rate`` on ``ifindex``; the frame's
    length on the wire is its own with the FCS (4 bytes) unless ``frame_length`` says otherwise."""
    return SampledPacket(
        Interface(ifindex, rate, protocol),
        sample_pool=rate,
        drops=0,
        direction=direction,
        frame_length=len(frame) + 4 if frame_length is None else frame_length,
        header=frame,
        start=0,
        length=min(len(frame), header_bytes),
        timestamp_ns=0,
    )
