"""sflowtool's ``-l`` output: one comma-separated line per flow sample and per counter sample.

``FLOW`` and ``CNTR`` lines follow sflowtool 6.11's ``writeFlowLine`` and
``writeCountersLine`` field for field, so scripts written for sflowtool work
unchanged::

    FLOW,agent,inputPort,outputPort,srcMAC,dstMAC,ethernetType,in_vlan,out_vlan,
         srcIP,dstIP,IPProtocol,ipTos,ipTTL,srcPort,dstPort,tcpFlags,
         packetSize,IPSize,meanSkipCount
    CNTR,agent,ifIndex,ifType,ifSpeed,ifDirection,ifStatus,ifInOctets,ifInUcastPkts,
         ifInMulticastPkts,ifInBroadcastPkts,ifInDiscards,ifInErrors,ifInUnknownProtos,
         ifOutOctets,ifOutUcastPkts,ifOutMulticastPkts,ifOutBroadcastPkts,
         ifOutDiscards,ifOutErrors,ifPromiscuousMode

As in sflowtool, a flow sample's records are applied in order to one set of
values, a later record overwriting what an earlier one set: the sampled
header's dissection, the sampled Ethernet/IPv4/IPv6 records (0:2-0:4 and
their tunnel twins), the extended switch record's VLANs and the socket
records' addresses.  A value no record set prints as zero (MACs
``000000000000``, addresses ``-``); ICMP type and code take the port
columns; ``IPSize`` is ``packetSize - stripped - offset of the IPv4 header``.
Numbers sflowtool prints with ``%d`` are signed 32-bit here too.  A counter
sample gives one ``CNTR`` line, from its last 0:1 record or all zeros.
Discard samples print nothing, as in sflowtool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..sflow import records as r
from ..sflow.samples import CounterSample, Datagram, FlowSample
from ..sflow.xdr import ADDRESS
from .dissect import dissect_header, signed32

__all__ = ["format_lines"]

_NO_MAC = "000000000000"
_ZERO_COUNTERS = ",".join("0" * 19)


class _FlowLine:
    """sflowtool's per-sample decode state, as far as the FLOW line reads it.

    The values no record has set are the class's: a sample's state holds only what its records
    set (one is made per flow sample, and setting all seventeen cost a tenth of a FLOW line).
    """

    eth_src = eth_dst = _NO_MAC
    eth_type = in_vlan = out_vlan = 0
    src = dst = "-"
    protocol = tos = ttl = sport = dport = flags = 0
    size = stripped = offset4 = 0

    def header(self, rec: Any) -> None:
        self.size, self.stripped = rec.frame_length, rec.stripped
        entries = dissect_header(rec.header_protocol, rec.frame_length, rec.stripped, rec.header)
        # The last of repeated names (VLAN tags) wins, as in sflowtool; notes (str, not tuple) say nothing here.
        fields = dict([entry for entry in entries if type(entry) is tuple])
        get = fields.get
        if (dst_mac := get("dstMAC")) is not None:
            self.eth_dst, self.eth_src = dst_mac, get("srcMAC", self.eth_src)
        if (vlan := get("decodedVLAN")) is not None:
            self.in_vlan = int(vlan)
            for name, value in fields.items():  # an inner tag's decodedVLAN.1, .2 ... come after it
                if name.startswith("decodedVLAN."):
                    self.in_vlan = int(value)
        if (eth_type := get("ethernet_type")) is not None:
            self.eth_type = int(eth_type)
        if (ip_size := get("IPSize")) is not None and "IP6_label" not in fields and rec.header_protocol != 12:
            self.offset4 = signed32(rec.frame_length - rec.stripped - int(ip_size))
        for key, attr in _ADDRESS_FIELDS:
            if (text := get(key)) is not None:
                setattr(self, attr, text)
        for key, attr in _NUMBER_FIELDS:
            if (number := get(key)) is not None:
                setattr(self, attr, int(number))
        for src, dst in _PORT_FIELDS:
            if (port := get(src)) is not None:
                self.sport, self.dport = int(port), int(fields[dst])

    def ethernet(self, rec: Any) -> None:
        self.eth_src, self.eth_dst, self.eth_type = rec.src_mac.hex(), rec.dst_mac.hex(), rec.eth_type

    def ip(self, rec: Any) -> None:
        self.size = rec.length
        self.src, self.dst = ADDRESS.text(rec.src_ip), ADDRESS.text(rec.dst_ip)
        self.protocol, self.sport, self.dport = rec.protocol, rec.src_port, rec.dst_port
        if isinstance(rec, _IPV4_RECORDS):
            self.tos = rec.tos
        if rec.protocol == 6:
            self.flags = rec.tcp_flags

    def switch(self, rec: Any) -> None:
        self.in_vlan, self.out_vlan = rec.src_vlan, rec.dst_vlan

    def socket(self, rec: Any) -> None:
        self.src, self.dst = ADDRESS.text(rec.local_ip), ADDRESS.text(rec.remote_ip)

    def line(self, agent: str, sample: FlowSample) -> str:
        return (
            f"FLOW,{agent},{signed32(sample.input)},{signed32(sample.output)},"
            f"{self.eth_src},{self.eth_dst},0x{self.eth_type:04x},{signed32(self.in_vlan)},{signed32(self.out_vlan)},"
            f"{self.src},{self.dst},{signed32(self.protocol)},0x{self.tos:02x},{signed32(self.ttl)},"
            f"{signed32(self.sport)},{signed32(self.dport)},0x{self.flags:02x},"
            f"{signed32(self.size)},{signed32(self.size - self.stripped - self.offset4)},"
            f"{signed32(sample.sampling_rate)}"
        )


_ADDRESS_FIELDS = (("srcIP", "src"), ("dstIP", "dst"), ("srcIP6", "src"), ("dstIP6", "dst"))
_NUMBER_FIELDS = (("IPProtocol", "protocol"), ("IPTOS", "tos"), ("IPTTL", "ttl"), ("TCPFlags", "flags"))
_PORT_FIELDS = (("TCPSrcPort", "TCPDstPort"), ("UDPSrcPort", "UDPDstPort"), ("ICMPType", "ICMPCode"))
"""The dissection's fields the FLOW line takes, each to the attribute it sets, in sflowtool's order."""
_IPV4_RECORDS = (r.SampledIPv4, r.TunnelIPv4Out, r.TunnelIPv4In)
_APPLY: dict[type, Callable[[_FlowLine, Any], None]] = {
    r.SampledHeader: _FlowLine.header,
    r.ExtendedWifiPayload: _FlowLine.header,
    r.SampledEthernet: _FlowLine.ethernet,
    r.TunnelL2Out: _FlowLine.ethernet,
    r.TunnelL2In: _FlowLine.ethernet,
    **dict.fromkeys((*_IPV4_RECORDS, r.SampledIPv6, r.TunnelIPv6Out, r.TunnelIPv6In), _FlowLine.ip),
    r.ExtendedSwitch: _FlowLine.switch,
    r.ExtendedSocketIPv4: _FlowLine.socket,
    r.ExtendedSocketIPv6: _FlowLine.socket,
}
"""The records whose values sflowtool keeps in the sample for its FLOW line."""


def _flow_line(agent: str, sample: FlowSample) -> str:
    state = _FlowLine()
    for record in sample.records:
        apply = _APPLY.get(type(record))
        if apply is not None:
            apply(state, record)
    return state.line(agent, sample)


def _counter_line(agent: str, sample: CounterSample) -> str:
    generic = next((x for x in reversed(sample.records) if isinstance(x, r.GenericInterface)), None)
    values = ",".join(str(v) for v in generic.values()) if generic is not None else _ZERO_COUNTERS
    return f"CNTR,{agent},{values}"


def format_lines(datagram: Datagram) -> str:
    """All the lines of one datagram, each ending in a newline."""
    agent = ADDRESS.text(datagram.agent)
    out: list[str] = []
    for sample in datagram.samples:
        if isinstance(sample, FlowSample) and sample.complete:
            out.append(_flow_line(agent, sample))
        elif isinstance(sample, CounterSample) and sample.complete:
            out.append(_counter_line(agent, sample))
    return "\n".join(out) + "\n" if out else ""
