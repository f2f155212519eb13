"""The flow sample as the eBPF sampler writes it: the constants its C code needs, from the record table.

The kernel program (``sampler.bpf.h``) writes each sample's wire bytes: the expanded flow
sample head, 0:1 sampled header, 0:1043 timestamp, in the order and form of
``sflow/flow_encoder.py``.  The numbers that say what those bytes are (sample and record
tags, sizes, the header protocols, the port meaning "the host itself") are not restated in
C: ``sampler_wire.h`` is generated from here (``python -m hsflowd_py.modules.pcap.wire``),
a test checks the file is current, and another runs the program and compares its bytes with
the encoder's for the same packet.

The sequence number, sample pool and drops are the interface's counters in the kernel too,
so the agent sends each record from the ring as it is.
"""

from __future__ import annotations

import struct
import sys

from hsflowd_py.flow import HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6
from hsflowd_py.sflow.flow_encoder import FlowEncoder
from hsflowd_py.sflow.records import INTERNAL_PORT, ExtendedTimestamp, SampledHeader
from hsflowd_py.sflow.samples import FLOW_SAMPLE_EXPANDED

from .sampler import FCS_BYTES

_ENCODER = FlowEncoder()
HEAD_BYTES = _ENCODER.fixed_size - struct.calcsize(">IIQ")
"""Bytes before the sampled header's bytes: the flow sample's TLV and head, 0:1's TLV and fixed words."""
TIMESTAMP_BYTES = _ENCODER.fixed_size - HEAD_BYTES

DEFINES = {
    "SFLOW_FLOW_SAMPLE_EXPANDED": FLOW_SAMPLE_EXPANDED,
    "SFLOW_SAMPLED_HEADER": SampledHeader.tag(),
    "SFLOW_TIMESTAMP": ExtendedTimestamp.tag(),
    "SFLOW_INTERNAL_PORT": INTERNAL_PORT,
    "SFLOW_HEADER_ETHERNET": HEADER_ETHERNET,
    "SFLOW_HEADER_IPV4": HEADER_IPV4,
    "SFLOW_HEADER_IPV6": HEADER_IPV6,
    "SFLOW_HEAD_BYTES": HEAD_BYTES,
    "SFLOW_TIMESTAMP_BYTES": TIMESTAMP_BYTES,
    "SFLOW_FCS_BYTES": FCS_BYTES,
}


def header_text() -> str:
    """``sampler_wire.h`` as it must read."""
    lines = [
        "/* Generated from hsflowd_py/sflow/records.py by modules/pcap/wire.py: do not edit.",
        " * python -m hsflowd_py.modules.pcap.wire > modules/pcap/sampler_wire.h */",
        *(f"#define {name} {value}" for name, value in DEFINES.items()),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(header_text())
