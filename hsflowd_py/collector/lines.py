"""sflowtool's ``-l`` output: one comma-separated line per flow sample and per counter record.

``FLOW`` and ``CNTR`` lines follow sflowtool 6.x's ``writeFlowLine`` and
``writeCountersLine`` field for field, so scripts written for sflowtool work
unchanged::

    FLOW,agent,inputPort,outputPort,srcMAC,dstMAC,ethernetType,in_vlan,out_vlan,
         srcIP,dstIP,IPProtocol,ipTos,ipTTL,srcPort,dstPort,tcpFlags,
         packetSize,IPSize,meanSkipCount
    CNTR,agent,ifIndex,ifType,ifSpeed,ifDirection,ifStatus,ifInOctets,ifInUcastPkts,
         ifInMulticastPkts,ifInBroadcastPkts,ifInDiscards,ifInErrors,ifInUnknownProtos,
         ifOutOctets,ifOutUcastPkts,ifOutMulticastPkts,ifOutBroadcastPkts,
         ifOutDiscards,ifOutErrors,ifPromiscuousMode

Conventions kept from sflowtool: a field the sample does not carry prints as
zero (MACs ``000000000000``, addresses ``-``); ICMP type and code take the
port columns; ``IPSize`` is ``packetSize - stripped - offset of the IPv4
header`` (for IPv6 the offset term is 0, so the link header is included);
``out_vlan`` is 0 since only the extended switch record (not sent by host
agents) carries it; IPv6 addresses print fully expanded.

Two differences, both for scripts' sake: sflowtool prints one ``CNTR`` line
per counter *sample*, all zeros when the sample has no generic interface
record (a host sample); here ``CNTR`` comes once per 0:1 record, and every
other counter record gets a self-describing line
``REC,agent,sourceId,tag,name=value,...`` with sflowtool's field names (the
``-g`` names), so host, container and service counters are scriptable too.
In values, ``%``, ``,`` and ``=`` are percent-encoded.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..sflow.records import COUNTER, GenericInterface, SampledHeader
from ..sflow.samples import CounterSample, Datagram, FlowSample, UnknownRecord
from ..sflow.xdr import ADDRESS
from .dissect import Note, dissect_header, signed32
from .text import element_entries, entry_lines

__all__ = ["format_lines"]

_NO_MAC = "000000000000"
_ESCAPES = str.maketrans({"%": "%25", ",": "%2C", "=": "%3D", "\n": "%0A"})


def _flow_line(agent: str, sample: FlowSample) -> str:
    header = next((r for r in reversed(sample.records) if isinstance(r, SampledHeader)), None)
    fields: dict[str, str] = {}
    vlan = "0"
    size = stripped = 0
    if header is not None:
        size, stripped = header.frame_length, header.stripped
        for entry in dissect_header(header.header_protocol, size, stripped, header.header):
            if isinstance(entry, Note):
                continue
            name, value = entry
            if name.startswith("decodedVLAN"):
                vlan = value  # sflowtool keeps the innermost tag
            fields.setdefault(name, value)
    ip4 = "srcIP" in fields
    src = fields.get("srcIP") or fields.get("srcIP6") or "-"
    dst = fields.get("dstIP") or fields.get("dstIP6") or "-"
    sport = fields.get("TCPSrcPort") or fields.get("UDPSrcPort") or fields.get("ICMPType") or "0"
    dport = fields.get("TCPDstPort") or fields.get("UDPDstPort") or fields.get("ICMPCode") or "0"
    ip_size = int(fields["IPSize"]) if ip4 else signed32(size - stripped)
    return ",".join(
        (
            "FLOW",
            agent,
            str(sample.input),
            str(sample.output),
            fields.get("srcMAC", _NO_MAC),
            fields.get("dstMAC", _NO_MAC),
            f"0x{int(fields.get('ethernet_type', '0')):04x}",
            vlan,
            "0",
            src,
            dst,
            fields.get("IPProtocol", "0"),
            f"0x{int(fields.get('IPTOS', '0')):02x}",
            fields.get("IPTTL", "0"),
            sport,
            dport,
            f"0x{int(fields.get('TCPFlags', '0')):02x}",
            str(signed32(size)),
            str(ip_size),
            str(sample.sampling_rate),
        )
    )


def _counter_lines(agent: str, sample: CounterSample) -> Iterator[str]:
    source = f"{sample.ds_class}:{sample.ds_index}"
    for record in sample.records:
        if isinstance(record, GenericInterface):
            yield "CNTR," + agent + "," + ",".join(str(v) for v in record.values())
        elif not isinstance(record, UnknownRecord):
            entries = element_entries(record, COUNTER)
            tag = str(entries[0][1])
            pairs = (line.split(" ", 1) for line in entry_lines(entries[1:]))
            values = ",".join(f"{p[0]}={p[1].translate(_ESCAPES)}" for p in pairs if len(p) == 2)
            yield f"REC,{agent},{source},{tag}" + ("," + values if values else "")


def format_lines(datagram: Datagram) -> str:
    """All the lines of one datagram, each ending in a newline."""
    agent = ADDRESS.text(datagram.agent)
    out: list[str] = []
    for sample in datagram.samples:
        if isinstance(sample, FlowSample):
            out.append(_flow_line(agent, sample))
        elif isinstance(sample, CounterSample):
            out.extend(_counter_lines(agent, sample))
    return "".join(line + "\n" for line in out)
