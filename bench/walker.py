"""What the packet walker costs each of its users, per sampled header, on one core.

Headers: every sampled header (0:1 record) of the reference captures (the C agent's, the
switches' and routers' of ../shared/vectors/devices), replayed as they are.  Timed per header:

* ``parse``: the flow the agent's tcp/docker/systemd matchers ask for (``packet.parse``), plain
  and with ``tunnel`` (what ``tcp { tunnel = on }`` asks);
* ``flow_key``: the Prometheus exporter's flow key;
* ``dissect``: the collector's text decode of the header (sflowtool's fields);
* ``payload offset``: the bytes in front of the transport payload (GSO arithmetic).

Run it before and after a change to the walker, on the same machine in the same minute.

    .venv/bin/python bench/walker.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

from hsflowd_py.collector.dissect import dissect_header
from hsflowd_py.collector.exporter.flowkey import flow_key
from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.packet import parse
from hsflowd_py.sflow.codec import decode_datagram
from hsflowd_py.sflow.records import SampledHeader
from hsflowd_py.sflow.xdr import DecodeError

VECTORS = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"

try:
    from hsflowd_py.packet import payload_offset, walk

    def _payload(header: bytes, protocol: int) -> object:
        return payload_offset(header, walk(header, protocol))

except ImportError:  # before the walker: the pcap sampler's own header arithmetic
    from hsflowd_py.modules.pcap.sampler import header_bytes_before_payload

    def _payload(header: bytes, protocol: int) -> object:
        return header_bytes_before_payload(header, 0, len(header), protocol == 1)


def headers() -> list[tuple[int, bytes]]:
    out = []
    for pcap in sorted([*VECTORS.glob("*.pcap"), *(VECTORS / "devices").glob("*.pcap")]):
        with open(pcap, "rb") as f:
            for packet in read_pcap(f):
                try:
                    datagram = decode_datagram(packet.payload)
                except DecodeError:
                    continue
                for sample in datagram.samples:
                    for r in getattr(sample, "records", ()):
                        if isinstance(r, SampledHeader):
                            out.append((r.header_protocol, bytes(r.header)))
    return out


def per_header(cases: list[tuple[int, bytes]], call: Callable[[bytes, int], object], seconds: float) -> float:
    """Nanoseconds per header, the best of a few rounds."""
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter_ns()
        for protocol, header in cases:
            call(header, protocol)
        best = min(best, (time.perf_counter_ns() - t0) / len(cases))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1 if (os.cpu_count() or 1) > 1 else 0})
    cases = headers()
    print(f"{len(cases)} sampled headers from {VECTORS}")
    users: dict[str, Callable[[bytes, int], object]] = {
        "parse": lambda h, p: parse(h, p),
        "parse (tunnel)": lambda h, p: parse(h, p, True),
        "flow_key": lambda h, p: flow_key(p, h),
        "dissect": lambda h, p: dissect_header(p, len(h) + 4, 4, h),
        "payload offset": _payload,
    }
    for name, call in users.items():
        print(f"  {name:<16} {per_header(cases, call, args.seconds) / 1000:6.2f} us per header")


if __name__ == "__main__":
    main()
