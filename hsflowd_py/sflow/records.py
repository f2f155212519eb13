"""The one table of sFlow v5 records: those this agent sends and those other agents send.

Both the encoder and the bundled collector's decoder are driven from these
declarations, so the two cannot drift apart.  Attribute names follow the sFlow
specification structures; labels are the names sflowtool prints, so the
collector's text and JSON output come straight from here.  The records the
agent sends come first; after them, every other record sflowtool 6.11 decodes
(switches, routers, application agents, discard samples), with its quirks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from .layout import Field, Struct, define
from .xdr import (
    ADDRESS,
    FLOAT,
    HEX64,
    IPV4,
    IPV6,
    MAC,
    OPAQUE,
    PERCENT100,
    U8,
    U32,
    U64,
    UUID,
    Scalar,
    array,
    enum,
    string,
    u32_list,
)

FLOW = "flow"
COUNTER = "counter"

UNKNOWN_COUNTER = 0xFFFFFFFF
"""Value for a 32-bit counter the source does not provide."""

INTERNAL_PORT = 0x3FFFFFFF
"""Flow sample input/output meaning the host itself."""


class Record(Struct):
    """A flow or counter record: a Struct with a tag."""

    __slots__ = ()
    KIND: ClassVar[str]
    ENTERPRISE: ClassVar[int] = 0
    FORMAT: ClassVar[int]
    INTRO: ClassVar[tuple[str, str] | None] = None
    """A constant (label, value) line sflowtool prints before the fields, e.g. ``extendedType timestamp``."""
    RENDER: ClassVar[Callable[[Any], list[tuple[str, str]]] | None] = None
    """For the few records sflowtool prints with derived or conditional lines: the (label, value)
    lines after INTRO, instead of one line per field."""

    @classmethod
    def tag(cls) -> int:
        return (cls.ENTERPRISE << 12) | cls.FORMAT


FLOW_RECORDS: dict[int, type[Record]] = {}
COUNTER_RECORDS: dict[int, type[Record]] = {}


def _record(
    kind: str,
    fmt: int,
    class_name: str,
    fields: Sequence[Field | tuple[str, Any, str]],
    intro: tuple[str, str] | None = None,
    render: Callable[[Any], list[tuple[str, str]]] | None = None,
    enterprise: int = 0,
) -> Any:
    attrs = {"RENDER": staticmethod(render)} if render else {}
    cls = define(class_name, fields, base=Record, KIND=kind, FORMAT=fmt, INTRO=intro, ENTERPRISE=enterprise, **attrs)
    (FLOW_RECORDS if kind == FLOW else COUNTER_RECORDS)[cls.tag()] = cls
    return cls


def _u32s(prefix: str, names: str) -> list[tuple[str, Any, str]]:
    """u32 fields whose label is ``prefix`` + the spec name (mib2 groups)."""
    return [(n, U32, prefix + n) for n in names.split()]


# ---------------------------------------------------------------- flow records

def _header_lines(r: Any) -> list[tuple[str, str]]:
    """A sampled header's lines (its fields' labels, in order), written out for the commonest flow
    record; the collector adds the header's dissection after them."""
    return [
        ("headerProtocol", str(r.header_protocol)),
        ("sampledPacketSize", str(r.frame_length)),
        ("strippedBytes", str(r.stripped)),
        ("headerLen", str(len(r.header))),
        ("headerBytes", OPAQUE.text(r.header)),
    ]


SampledHeader = _record(FLOW, 1, "SampledHeader", [
    ("header_protocol", U32, "headerProtocol"),
    ("frame_length", U32, "sampledPacketSize"),
    ("stripped", U32, "strippedBytes"),
    Field("header", OPAQUE, "headerBytes", count_label="headerLen"),
], intro=("flowSampleType", "HEADER"), render=_header_lines)
"""0:1. On the wire header_length precedes the bytes: OPAQUE's own length word is it."""

ExtendedTimestamp = _record(FLOW, 1043, "ExtendedTimestamp", [
    ("nanoseconds", U64, "timestamp_nS"),
], intro=("extendedType", "timestamp"))

ExtendedSocketIPv4 = _record(FLOW, 2100, "ExtendedSocketIPv4", [
    ("protocol", U32, "socket4_ip_protocol"),
    ("local_ip", IPV4, "socket4_local_ip"),
    ("remote_ip", IPV4, "socket4_remote_ip"),
    ("local_port", U32, "socket4_local_port"),
    ("remote_port", U32, "socket4_remote_port"),
], intro=("extendedType", "socket4"))

ExtendedSocketIPv6 = _record(FLOW, 2101, "ExtendedSocketIPv6", [
    ("protocol", U32, "socket6_ip_protocol"),
    ("local_ip", IPV6, "socket6_local_ip"),
    ("remote_ip", IPV6, "socket6_remote_ip"),
    ("local_port", U32, "socket6_local_port"),
    ("remote_port", U32, "socket6_remote_port"),
], intro=("extendedType", "socket6"))

TCP_DIRECTIONS = {0: "unknown", 1: "received", 2: "sent"}
TCP_DIRECTION = enum("tcp_direction", TCP_DIRECTIONS, "<bad value>")

ExtendedTcpInfo = _record(FLOW, 2209, "ExtendedTcpInfo", [
    ("dirn", TCP_DIRECTION, "tcpinfo_direction"),
    ("snd_mss", U32, "tcpinfo_send_mss"),
    ("rcv_mss", U32, "tcpinfo_receive_mss"),
    ("unacked", U32, "tcpinfo_unacked_pkts"),
    ("lost", U32, "tcpinfo_lost_pkts"),
    ("retrans", U32, "tcpinfo_retrans_pkts"),
    ("pmtu", U32, "tcpinfo_path_mtu"),
    ("rtt_us", U32, "tcpinfo_rtt_uS"),
    ("rttvar_us", U32, "tcpinfo_rtt_uS_var"),
    ("snd_cwnd", U32, "tcpinfo_send_congestion_win"),
    ("reordering", U32, "tcpinfo_reordering"),
    ("min_rtt_us", U32, "tcpinfo_rtt_uS_min"),
])

ExtendedEntities = _record(FLOW, 2210, "ExtendedEntities", [
    ("src_ds_class", U32, "entities_src_class"),
    ("src_ds_index", U32, "entities_src_index"),
    ("dst_ds_class", U32, "entities_dst_class"),
    ("dst_ds_index", U32, "entities_dst_index"),
], intro=("extendedType", "entities"))

# ------------------------------------------------------------- counter records

GenericInterface = _record(COUNTER, 1, "GenericInterface", [
    ("if_index", U32, "ifIndex"),
    ("if_type", U32, "networkType"),
    ("if_speed", U64, "ifSpeed"),
    ("if_direction", U32, "ifDirection"),
    ("if_status", U32, "ifStatus"),
    ("in_octets", U64, "ifInOctets"),
    ("in_ucast_pkts", U32, "ifInUcastPkts"),
    ("in_multicast_pkts", U32, "ifInMulticastPkts"),
    ("in_broadcast_pkts", U32, "ifInBroadcastPkts"),
    ("in_discards", U32, "ifInDiscards"),
    ("in_errors", U32, "ifInErrors"),
    ("in_unknown_protos", U32, "ifInUnknownProtos"),
    ("out_octets", U64, "ifOutOctets"),
    ("out_ucast_pkts", U32, "ifOutUcastPkts"),
    ("out_multicast_pkts", U32, "ifOutMulticastPkts"),
    ("out_broadcast_pkts", U32, "ifOutBroadcastPkts"),
    ("out_discards", U32, "ifOutDiscards"),
    ("out_errors", U32, "ifOutErrors"),
    ("promiscuous_mode", U32, "ifPromiscuousMode"),
])

EthernetInterface = _record(COUNTER, 2, "EthernetInterface", [
    (n, U32, "dot3Stats" + n) for n in (
        "AlignmentErrors FCSErrors SingleCollisionFrames MultipleCollisionFrames "
        "SQETestErrors DeferredTransmissions LateCollisions ExcessiveCollisions "
        "InternalMacTransmitErrors CarrierSenseErrors FrameTooLongs "
        "InternalMacReceiveErrors SymbolErrors"
    ).split()
])

PortName = _record(COUNTER, 1005, "PortName", [
    ("name", string(255), "ifName"),
])

HostDescription = _record(COUNTER, 2000, "HostDescription", [
    ("hostname", string(64), "hostname"),
    ("uuid", UUID, "UUID"),
    ("machine_type", U32, "machine_type"),
    ("os_name", U32, "os_name"),
    ("os_release", string(32), "os_release"),
])

HostAdapter = define("HostAdapter", [
    ("if_index", U32, "ifIndex"),
    Field("macs", array(Scalar(MAC), max_items=4096), "MAC", count_label="MACs", list_key="mac_list"),
])

HostAdapters = _record(COUNTER, 2001, "HostAdapters", [
    Field("adapters", array(HostAdapter, max_items=65536), "adaptor", list_key="adaptor_list"),
])

HostParent = _record(COUNTER, 2002, "HostParent", [
    ("ds_class", U32, "parent_dsClass"),
    ("ds_index", U32, "parent_dsIndex"),
])

HostCpu = _record(COUNTER, 2003, "HostCpu", [
    ("load_one", FLOAT, "cpu_load_one"),
    ("load_five", FLOAT, "cpu_load_five"),
    ("load_fifteen", FLOAT, "cpu_load_fifteen"),
    ("proc_run", U32, "cpu_proc_run"),
    ("proc_total", U32, "cpu_proc_total"),
    ("cpu_num", U32, "cpu_num"),
    ("cpu_speed", U32, "cpu_speed"),
    ("uptime", U32, "cpu_uptime"),
    ("cpu_user", U32, "cpu_user"),
    ("cpu_nice", U32, "cpu_nice"),
    ("cpu_system", U32, "cpu_system"),
    ("cpu_idle", U32, "cpu_idle"),
    ("cpu_wio", U32, "cpu_wio"),
    ("cpu_intr", U32, "cpuintr"),
    ("cpu_sintr", U32, "cpu_sintr"),
    ("interrupts", U32, "cpuinterrupts"),
    ("contexts", U32, "cpu_contexts"),
    Field("cpu_steal", U32, "cpu_steal", optional=True),
    Field("cpu_guest", U32, "cpu_guest", optional=True),
    Field("cpu_guest_nice", U32, "cpu_guest_nice", optional=True),
])

HostMemory = _record(COUNTER, 2004, "HostMemory", [
    ("mem_total", U64, "mem_total"),
    ("mem_free", U64, "mem_free"),
    ("mem_shared", U64, "mem_shared"),
    ("mem_buffers", U64, "mem_buffers"),
    ("mem_cached", U64, "mem_cached"),
    ("swap_total", U64, "swap_total"),
    ("swap_free", U64, "swap_free"),
    ("page_in", U32, "page_in"),
    ("page_out", U32, "page_out"),
    ("swap_in", U32, "swap_in"),
    ("swap_out", U32, "swap_out"),
])

HostDisk = _record(COUNTER, 2005, "HostDisk", [
    ("disk_total", U64, "disk_total"),
    ("disk_free", U64, "disk_free"),
    ("part_max_used", PERCENT100, "disk_partition_max_used"),
    ("reads", U32, "disk_reads"),
    ("bytes_read", U64, "disk_bytes_read"),
    ("read_time", U32, "disk_read_time"),
    ("writes", U32, "disk_writes"),
    ("bytes_written", U64, "disk_bytes_written"),
    ("write_time", U32, "disk_write_time"),
])

_NET_IO = [
    ("bytes_in", U64, "bytes_in"),
    ("pkts_in", U32, "pkts_in"),
    ("errs_in", U32, "errs_in"),
    ("drops_in", U32, "drops_in"),
    ("bytes_out", U64, "bytes_out"),
    ("pkts_out", U32, "pkts_out"),
    ("errs_out", U32, "errs_out"),
    ("drops_out", U32, "drops_out"),
]

HostNetIO = _record(COUNTER, 2006, "HostNetIO", [(n, t, "nio_" + lab) for n, t, lab in _NET_IO])

Mib2Ip = _record(COUNTER, 2007, "Mib2Ip", _u32s("ip", (
    "Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams "
    "InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes "
    "ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates"
)))

MIB2_ICMP_NAMES = (
    "InMsgs InErrors InDestUnreachs InTimeExcds InParmProbs InSrcQuenchs InRedirects "
    "InEchos InEchoReps InTimestamps InAddrMasks InAddrMaskReps OutMsgs OutErrors "
    "OutDestUnreachs OutTimeExcds OutParmProbs OutSrcQuenchs OutRedirects OutEchos "
    "OutEchoReps OutTimestamps OutTimestampReps OutAddrMasks OutAddrMaskReps"
)

# sflowtool spells InParmProbs/OutParmProbs as ...ParamProbs in its labels.
Mib2Icmp = _record(COUNTER, 2008, "Mib2Icmp", [
    (n, U32, "icmp" + n.replace("ParmProbs", "ParamProbs")) for n in MIB2_ICMP_NAMES.split()
])

Mib2Tcp = _record(COUNTER, 2009, "Mib2Tcp", _u32s("tcp", (
    "RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails "
    "EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors"
)))

Mib2Udp = _record(COUNTER, 2010, "Mib2Udp", _u32s("udp", (
    "InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors"
)))

VirtNode = _record(COUNTER, 2100, "VirtNode", [
    ("mhz", U32, "vnode_mhz"),
    ("cpus", U32, "vnode_cpus"),
    ("memory", U64, "vnode_memory"),
    ("memory_free", U64, "vnode_memory_free"),
    ("num_domains", U32, "vnode_num_domains"),
])

VIRT_STATES = {0: "no state", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff", 6: "crashed"}

VirtCpu = _record(COUNTER, 2101, "VirtCpu", [
    ("state", U32, "vcpu_state"),
    ("cpu_time", U32, "vcpu_cpu_mS"),
    ("nr_virt_cpu", U32, "vcpu_cpuCount"),
])

VirtMemory = _record(COUNTER, 2102, "VirtMemory", [
    ("memory", U64, "vmem_memory"),
    ("max_memory", U64, "vmem_maxMemory"),
])

VirtDisk = _record(COUNTER, 2103, "VirtDisk", [
    ("capacity", U64, "vdsk_capacity"),
    ("allocation", U64, "vdsk_allocation"),
    ("available", U64, "vdsk_available"),
    ("rd_req", U32, "vdsk_rd_req"),
    ("rd_bytes", U64, "vdsk_rd_bytes"),
    ("wr_req", U32, "vdsk_wr_req"),
    ("wr_bytes", U64, "vdsk_wr_bytes"),
    ("errs", U32, "vdsk_errs"),
])

VirtNetIO = _record(COUNTER, 2104, "VirtNetIO", [(n, t, "vnio_" + lab) for n, t, lab in _NET_IO])


# ============================================================ records other agents send
# Switches, routers, application and discard agents.  Labels, line order and quirks are
# sflowtool 6.11's (src/sflowtool.c); RENDER is used only where it prints derived or
# conditional lines.


def _in_order(*names: str) -> Callable[[Any], list[tuple[str, str]]]:
    """Print the named fields in this order (sflowtool's order differs from the wire's)."""

    def render(record: Any) -> list[tuple[str, str]]:
        out = []
        for f in (record.FIELDS_BY_NAME[n] for n in names):
            value = getattr(record, f.name)
            if not (f.type.omit_empty and not value):  # type: ignore[union-attr]
                out.append((f.label, f.type.text(value)))
        return out

    return render


def _ports(prefix: str, protocol: int, src: int, dst: int, flags: int) -> list[tuple[str, str]]:
    """The layer-4 lines of a sampled IPv4/IPv6 record: ICMP prints the destination port as its type."""
    if protocol == 1:
        return [(prefix + "ICMPType", str(dst))]
    if protocol == 6:
        return [(prefix + "TCPSrcPort", str(src)), (prefix + "TCPDstPort", str(dst)), (prefix + "TCPFlags", str(flags))]
    if protocol == 17:
        return [(prefix + "UDPSrcPort", str(src)), (prefix + "UDPDstPort", str(dst))]
    return []


def _sampled_ethernet(fmt: int, name: str, prefix: str) -> Any:
    return _record(FLOW, fmt, name, [
        ("length", U32, prefix + "ethernet_len"),
        ("src_mac", MAC, prefix + "ethernet_src"),
        ("dst_mac", MAC, prefix + "ethernet_dst"),
        ("eth_type", U32, prefix + "ethernet_type"),
    ], intro=("flowSampleType", prefix + "ETHERNET"), render=_in_order("eth_type", "length", "src_mac", "dst_mac"))


def _sampled_ipv4(fmt: int, name: str, prefix: str) -> Any:
    def render(r: Any) -> list[tuple[str, str]]:
        return [
            (prefix + "sampledPacketSize", str(r.length)),
            (prefix + "IPSize", str(r.length)),
            (prefix + "srcIP", str(r.src_ip)),
            (prefix + "dstIP", str(r.dst_ip)),
            (prefix + "IPProtocol", str(r.protocol)),
            (prefix + "IPTOS", str(r.tos)),
            *_ports(prefix, r.protocol, r.src_port, r.dst_port, r.tcp_flags),
        ]

    return _record(FLOW, fmt, name, [
        ("length", U32, "sampledPacketSize"),
        ("protocol", U32, "IPProtocol"),
        ("src_ip", IPV4, "srcIP"),
        ("dst_ip", IPV4, "dstIP"),
        ("src_port", U32, "srcPort"),
        ("dst_port", U32, "dstPort"),
        ("tcp_flags", U32, "TCPFlags"),
        ("tos", U32, "IPTOS"),
    ], intro=("flowSampleType", prefix + "IPV4"), render=render)


def _sampled_ipv6(fmt: int, name: str, prefix: str) -> Any:
    def render(r: Any) -> list[tuple[str, str]]:
        return [
            (prefix + "sampledPacketSize", str(r.length)),
            (prefix + "IPSize", str(r.length)),
            (prefix + "srcIP6", r.src_ip.exploded),
            (prefix + "dstIP6", r.dst_ip.exploded),
            (prefix + "IPProtocol", str(r.protocol)),
            (prefix + "priority", str(r.priority)),
            *_ports(prefix, r.protocol, r.src_port, r.dst_port, r.tcp_flags),
        ]

    return _record(FLOW, fmt, name, [
        ("length", U32, "sampledPacketSize"),
        ("protocol", U32, "IPProtocol"),
        ("src_ip", IPV6, "srcIP6"),
        ("dst_ip", IPV6, "dstIP6"),
        ("src_port", U32, "srcPort"),
        ("dst_port", U32, "dstPort"),
        ("tcp_flags", U32, "TCPFlags"),
        ("priority", U32, "priority"),
    ], intro=("flowSampleType", prefix + "IPV6"), render=render)


SampledEthernet = _sampled_ethernet(2, "SampledEthernet", "")
SampledIPv4 = _sampled_ipv4(3, "SampledIPv4", "")
SampledIPv6 = _sampled_ipv6(4, "SampledIPv6", "")

ExtendedSwitch = _record(FLOW, 1001, "ExtendedSwitch", [
    ("src_vlan", U32, "in_vlan"),
    ("src_priority", U32, "in_priority"),
    ("dst_vlan", U32, "out_vlan"),
    ("dst_priority", U32, "out_priority"),
], intro=("extendedType", "SWITCH"))

ExtendedRouter = _record(FLOW, 1002, "ExtendedRouter", [
    ("nexthop", ADDRESS, "nextHop"),
    ("src_mask", U32, "srcSubnetMask"),
    ("dst_mask", U32, "dstSubnetMask"),
], intro=("extendedType", "ROUTER"))

AS_SET = 1
AsPathSegment = define("AsPathSegment", [
    ("seg_type", U32, "type"),
    ("asns", u32_list("-".join), "asns"),
])


def _dashed(values: Sequence[int]) -> str:
    return "-".join(str(v) for v in values)


def _gateway(r: Any) -> list[tuple[str, str]]:
    """sflowtool derives dst_as (last ASN) and dst_peer_as (first ASN of the first segment)."""
    out = [
        ("bgp_nexthop", ADDRESS.text(r.nexthop)),
        ("my_as", str(r.as_number)),
        ("src_as", str(r.src_as)),
        ("src_peer_as", str(r.src_peer_as)),
    ]
    dst_as = dst_peer_as = 0
    if r.dst_as_path:
        path = []
        for i, seg in enumerate(r.dst_as_path):
            if not seg.asns:
                continue
            if i == 0:
                dst_peer_as = seg.asns[0]
            text = _dashed(seg.asns)
            path.append(f"({text})" if seg.seg_type == AS_SET else text)
            if i == len(r.dst_as_path) - 1:
                dst_as = seg.asns[-1]
        out.append(("dst_as_path", "".join(path)))
    out += [("dst_as", str(dst_as)), ("dst_peer_as", str(dst_peer_as))]
    if r.communities:
        out.append(("BGP_communities", _dashed(r.communities)))
    out.append(("BGP_localpref", str(r.localpref)))
    return out


ExtendedGateway = _record(FLOW, 1003, "ExtendedGateway", [
    ("nexthop", ADDRESS, "bgp_nexthop"),
    ("as_number", U32, "my_as"),
    ("src_as", U32, "src_as"),
    ("src_peer_as", U32, "src_peer_as"),
    Field("dst_as_path", array(AsPathSegment, max_items=1024), "dst_as_path"),
    ("communities", u32_list(_dashed), "BGP_communities"),
    ("localpref", U32, "BGP_localpref"),
], intro=("extendedType", "GATEWAY"), render=_gateway)

ExtendedUser = _record(FLOW, 1004, "ExtendedUser", [
    ("src_charset", U32, "src_user_charset"),
    ("src_user", string(200, omit_empty=False), "src_user"),
    ("dst_charset", U32, "dst_user_charset"),
    ("dst_user", string(200, omit_empty=False), "dst_user"),
], intro=("extendedType", "USER"), render=_in_order("src_charset", "dst_charset", "src_user", "dst_user"))

ExtendedUrl = _record(FLOW, 1005, "ExtendedUrl", [
    ("direction", U32, "url_direction"),
    ("url", string(200, omit_empty=False), "url"),
    ("host", string(200, omit_empty=False), "host"),
], intro=("extendedType", "URL"))


def _label_stack(labels: Sequence[int]) -> str:
    """label.experimental.bottom.ttl for each entry, dash-separated."""
    return "-".join(f"{v >> 12}.{(v >> 9) & 7}.{(v >> 8) & 1}.{v & 255}" for v in labels)


def _vlan_stack(tags: Sequence[int]) -> str:
    """sflowtool writes the TPID as 0x%04x and runs priority.cfi.vlan straight after it."""
    return "-".join(f"0x{v >> 16:04x}{(v >> 13) & 7}.{(v >> 12) & 1}.{v & 4095}" for v in tags)


ExtendedMpls = _record(FLOW, 1006, "ExtendedMpls", [
    ("nexthop", ADDRESS, "mpls_nexthop"),
    ("in_stack", u32_list(_label_stack), "mpls_input_stack"),
    ("out_stack", u32_list(_label_stack), "mpls_output_stack"),
], intro=("extendedType", "MPLS"))

ExtendedNat = _record(FLOW, 1007, "ExtendedNat", [
    ("src", ADDRESS, "nat_src"),
    ("dst", ADDRESS, "nat_dst"),
], intro=("extendedType", "NAT"))

ExtendedMplsTunnel = _record(FLOW, 1008, "ExtendedMplsTunnel", [
    ("name", string(100), "mpls_tunnel_lsp_name"),
    ("tunnel_id", U32, "mpls_tunnel_id"),
    ("tunnel_cos", U32, "mpls_tunnel_cos"),
])

ExtendedMplsVC = _record(FLOW, 1009, "ExtendedMplsVC", [
    ("name", string(100), "mpls_vc_name"),
    ("vll_vc_id", U32, "mpls_vll_vc_id"),
    ("vc_cos", U32, "mpls_vc_cos"),
])

ExtendedMplsFTN = _record(FLOW, 1010, "ExtendedMplsFTN", [
    ("descr", string(100), "mpls_ftn_descr"),
    ("mask", U32, "mpls_ftn_mask"),
])

ExtendedMplsLdpFec = _record(FLOW, 1011, "ExtendedMplsLdpFec", [
    ("prefix_len", U32, "mpls_fec_addr_prefix_len"),
])

ExtendedVlanTunnel = _record(FLOW, 1012, "ExtendedVlanTunnel", [
    ("stack", u32_list(_vlan_stack), "vlan_tunnel"),
])

def _wifi_payload(r: Any) -> list[tuple[str, str]]:
    """The cipher suite, then the sampled header as sflowtool prints a 0:1 record (the collector
    adds the header's dissection after it, as for 0:1)."""
    return [("cipher_suite", str(r.cipher_suite)), ("flowSampleType", "HEADER"), *_header_lines(r)]


ExtendedWifiPayload = _record(FLOW, 1013, "ExtendedWifiPayload", [
    ("cipher_suite", U32, "cipher_suite"),
    ("header_protocol", U32, "headerProtocol"),
    ("frame_length", U32, "sampledPacketSize"),
    ("stripped", U32, "strippedBytes"),
    Field("header", OPAQUE, "headerBytes", count_label="headerLen"),
], render=_wifi_payload)
"""0:1013: an 802.11 payload, sampled like a 0:1 header after its cipher suite."""

ExtendedWifiRx = _record(FLOW, 1014, "ExtendedWifiRx", [
    ("ssid", string(256), "rx_SSID"),
    ("bssid", MAC, "rx_BSSID"),
    ("version", U32, "rx_version"),
    ("channel", U32, "rx_channel"),
    ("speed", U64, "rx_speed"),
    ("rsni", U32, "rx_rsni"),
    ("rcpi", U32, "rx_rcpi"),
    ("packet_us", U32, "rx_packet_uS"),
])

ExtendedWifiTx = _record(FLOW, 1015, "ExtendedWifiTx", [
    ("ssid", string(256), "tx_SSID"),
    ("bssid", MAC, "tx_BSSID"),
    ("version", U32, "tx_version"),
    ("transmissions", U32, "tx_transmissions"),
    ("packet_us", U32, "tx_packet_uS"),
    ("retrans_us", U32, "tx_retrans_uS"),
    ("channel", U32, "tx_channel"),
    ("speed", U64, "tx_speed"),
    ("power_mw", U32, "tx_power_mW"),
])

ExtendedNatPort = _record(FLOW, 1020, "ExtendedNatPort", [
    ("src_port", U32, "nat_src_port"),
    ("dst_port", U32, "nat_dst_port"),
], intro=("extendedType", "NAT PORT"))

TunnelL2Out = _sampled_ethernet(1021, "TunnelL2Out", "tunnel_l2_out_")
TunnelL2In = _sampled_ethernet(1022, "TunnelL2In", "tunnel_l2_in_")
TunnelIPv4Out = _sampled_ipv4(1023, "TunnelIPv4Out", "tunnel_ipv4_out_")
TunnelIPv4In = _sampled_ipv4(1024, "TunnelIPv4In", "tunnel_ipv4_in_")
TunnelIPv6Out = _sampled_ipv6(1025, "TunnelIPv6Out", "tunnel_ipv6_out_")
TunnelIPv6In = _sampled_ipv6(1026, "TunnelIPv6In", "tunnel_ipv6_in_")

for _fmt, _dir in ((1027, "out_"), (1028, "in_")):
    _record(FLOW, _fmt, f"ExtendedDecap{_dir[:-1].title()}", [
        ("inner_header_offset", U32, _dir + "decap_inner_header_offset"),
    ], intro=("extendedType", _dir + "decap"))
for _fmt, _dir in ((1029, "out_"), (1030, "in_")):
    _record(FLOW, _fmt, f"ExtendedVni{_dir[:-1].title()}", [
        ("vni", U32, _dir + "VNI"),
    ], intro=("extendedType", _dir + "VNI"))

ExtendedEgressQueue = _record(FLOW, 1036, "ExtendedEgressQueue", [
    ("queue", U32, "egress_queue_id"),
], intro=("extendedType", "egress_queue"))

ExtendedFunction = _record(FLOW, 1038, "ExtendedFunction", [
    ("symbol", string(64), "symbol"),
], intro=("extendedType", "function"))

ExtendedTransitDelay = _record(FLOW, 1039, "ExtendedTransitDelay", [
    ("delay_ns", U32, "transit_delay_nS"),
], intro=("extendedType", "transit_delay"))

ExtendedQueueDepth = _record(FLOW, 1040, "ExtendedQueueDepth", [
    ("depth", U32, "queue_depth_bytes"),
], intro=("extendedType", "queue_depth"))

ExtendedHardwareTrap = _record(FLOW, 1041, "ExtendedHardwareTrap", [
    ("group", string(64), "hw_trap_group"),
    ("trap", string(64), "hw_trap_name"),
], intro=("extendedType", "hw_trap"))

ExtendedLinuxReason = _record(FLOW, 1042, "ExtendedLinuxReason", [
    ("reason", string(64), "linux_drop_reason"),
], intro=("extendedType", "linux_reason"))

for _fmt, _name, _ip, _v in ((2102, "ProxySocketIPv4", IPV4, "4"), (2103, "ProxySocketIPv6", IPV6, "6")):
    _record(FLOW, _fmt, _name, [
        ("protocol", U32, f"proxy_socket{_v}_ip_protocol"),
        ("local_ip", _ip, f"proxy_socket{_v}_local_ip"),
        ("remote_ip", _ip, f"proxy_socket{_v}_remote_ip"),
        ("local_port", U32, f"proxy_socket{_v}_local_port"),
        ("remote_port", U32, f"proxy_socket{_v}_remote_port"),
    ], intro=("extendedType", f"proxy_socket{_v}"))


def _url_encoded(text: str) -> str:
    """sflowtool URL-encodes memcache keys: alphanumerics kept, white space as '+', any other byte as
    ``%`` and its two hex digits *swapped* (its lookup table is read as 16-bit words on a little-endian
    machine: '/' is ``%F2``), reproduced so keys match."""
    text = text.split("\0", 1)[0]
    out = []
    for b in text.encode("utf-8", "replace"):
        c = chr(b)
        if c.isascii() and c.isalnum():
            out.append(c)
        elif c in " \t\n\v\f\r":
            out.append("+")
        else:
            out.append(f"%{b & 15:X}{b >> 4:X}")
    return "".join(out)


ExtendedMemcache = _record(FLOW, 2200, "FlowMemcache", [
    ("protocol", U32, "memcache_op_protocol"),
    ("cmd", U32, "memcache_op_cmd"),
    ("key", string(255, text=_url_encoded), "memcache_op_key"),
    ("nkeys", U32, "memcache_op_nkeys"),
    ("value_bytes", U32, "memcache_op_value_bytes"),
    ("duration_us", U32, "memcache_op_duration_uS"),
    ("status", U32, "memcache_op_status"),
], intro=("flowSampleType", "memcache"))

_HTTP_HEAD = [
    ("method", U32, "http_method"),
    ("protocol", U32, "http_protocol"),
    ("uri", string(255), "http_uri"),
    ("host", string(64), "http_host"),
    ("referrer", string(255), "http_referrer"),
    ("useragent", string(128), "http_useragent"),
]
_HTTP_TAIL = [
    ("bytes", U64, "http_bytes"),
    ("duration_us", U32, "http_duration_uS"),
    ("status", U32, "http_status"),
]
_HTTP_USER = [
    ("authuser", string(32), "http_authuser"),
    ("mimetype", string(64), "http_mimetype"),
]

FlowHttp = _record(FLOW, 2201, "FlowHttp", _HTTP_HEAD + _HTTP_USER + _HTTP_TAIL, intro=("flowSampleType", "http"))
FlowHttp2 = _record(FLOW, 2206, "FlowHttp2", [
    *_HTTP_HEAD,
    ("xff", string(64), "http_xff"),
    *_HTTP_USER,
    ("req_bytes", U64, "http_request_bytes"),
    *_HTTP_TAIL,
], intro=("flowSampleType", "http"))

APP_STATUS_NAMES = (
    "SUCCESS OTHER TIMEOUT INTERNAL_ERROR BAD_REQUEST FORBIDDEN TOO_LARGE NOT_IMPLEMENTED "
    "NOT_FOUND UNAVAILABLE UNAUTHORIZED"
).split()
# sflowtool reads these strings into buffers of the spec's maximum, keeping one byte for the NUL.
FlowApplication = _record(FLOW, 2202, "FlowApplication", [
    ("application", string(31), "application"),
    ("operation", string(31), "operation"),
    ("attributes", string(254), "attributes"),
    ("status_descr", string(31), "status_descr"),
    ("req_bytes", U64, "request_bytes"),
    ("resp_bytes", U64, "response_bytes"),
    ("duration_us", U32, "duration_uS"),
    ("status", enum("app_status", dict(enumerate(APP_STATUS_NAMES)), "<out-of-range={}>"), "status"),
], intro=("flowSampleType", "applicationOperation"))

FlowApplicationContext = _record(FLOW, 2203, "FlowApplicationContext", [
    ("application", string(31), "server_context_application"),
    ("operation", string(31), "server_context_operation"),
    ("attributes", string(254), "server_context_attributes"),
])
FlowActorInitiator = _record(FLOW, 2204, "FlowActorInitiator", [("actor", string(63), "actor_initiator")])
FlowActorTarget = _record(FLOW, 2205, "FlowActorTarget", [("actor", string(63), "actor_target")])

# ------------------------------------------------------------- counter records

_u32_record = lambda fmt, name, prefix, names, **kw: _record(COUNTER, fmt, name, _u32s(prefix, names), **kw)  # noqa: E731

TokenRing = _u32_record(3, "TokenRing", "dot5Stats", (
    "LineErrors BurstErrors ACErrors AbortTransErrors InternalErrors LostFrameErrors "
    "ReceiveCongestions FrameCopiedErrors TokenErrors SoftErrors HardErrors SignalLoss "
    "TransmitBeacons Recoverys LobeWires Removes Singles FreqErrors"
))

_VG_U64 = {"InHighPriorityOctets", "InNormPriorityOctets", "OutHighPriorityOctets", "HCInHighPriorityOctets",
           "HCInNormPriorityOctets", "HCOutHighPriorityOctets"}
VG = _record(COUNTER, 4, "VG", [(n, U64 if n in _VG_U64 else U32, "dot12" + n) for n in (
    "InHighPriorityFrames InHighPriorityOctets InNormPriorityFrames InNormPriorityOctets InIPMErrors "
    "InOversizeFrameErrors InDataErrors InNullAddressedFrames OutHighPriorityFrames OutHighPriorityOctets "
    "TransitionIntoTrainings HCInHighPriorityOctets HCInNormPriorityOctets HCOutHighPriorityOctets"
).split()])

Vlan = _record(COUNTER, 5, "Vlan", [
    ("vlan_id", U32, "in_vlan"),
    ("octets", U64, "octets"),
    ("ucast_pkts", U32, "ucastPkts"),
    ("multicast_pkts", U32, "multicastPkts"),
    ("broadcast_pkts", U32, "broadcastPkts"),
    ("discards", U32, "discards"),
])

Ieee80211 = _u32_record(6, "Ieee80211", "dot11", (
    "TransmittedFragmentCount MulticastTransmittedFrameCount FailedCount RetryCount MultipleRetryCount "
    "FrameDuplicateCount RTSSuccessCount RTSFailureCount ACKFailureCount ReceivedFragmentCount "
    "MulticastReceivedFrameCount FCSErrorCount TransmittedFrameCount WEPUndecryptableCount "
    "QoSDiscardedFragmentCount AssociatedStationCount QoSCFPollsReceivedCount QoSCFPollsUnusedCount "
    "QoSCFPollsUnusableCount QoSCFPollsLostCount"
))

Lacp = _record(COUNTER, 7, "Lacp", [
    ("actor_system_id", MAC, "actorSystemID"),
    ("partner_system_id", MAC, "partnerSystemID"),
    ("attached_agg_id", U32, "attachedAggID"),
    ("actor_admin", U8, "actorAdminPortState"),
    ("actor_oper", U8, "actorOperPortState"),
    ("partner_admin", U8, "partnerAdminPortState"),
    ("partner_oper", U8, "partnerOperPortState"),
    *_u32s("", (
        "LACPDUsRx markerPDUsRx markerResponsePDUsRx unknownRx illegalRx LACPDUsTx markerPDUsTx markerResponsePDUsTx"
    )),
])

SFP_LANE_FIELDS = (
    "index tx_bias_current_uA tx_power_uW tx_power_min_uW tx_power_max_uW tx_wavelength_nM "
    "rx_power_uW rx_power_min_uW rx_power_max_uW rx_wavelength_nM"
).split()
SfpLane = define("SfpLane", [(n, U32, n) for n in SFP_LANE_FIELDS])


def _sfp(r: Any) -> list[tuple[str, str]]:
    """Lane fields are ``sfp_lane_<name>.<lane>``; sflowtool's labels after the second keep a literal
    ``.%u`` (its format string is passed as the name), reproduced here."""
    out = [
        ("sfp_module_id", str(r.module_id)),
        ("sfp_module_total_lanes", str(r.total_lanes)),
        ("sfp_module_supply_voltage", str(r.supply_voltage)),
        ("sfp_module_temperature", str(r.temperature)),
        ("sfp_module_active_lanes", str(len(r.lanes))),
    ]
    for i, lane in enumerate(r.lanes):
        for j, name in enumerate(SFP_LANE_FIELDS):
            shown = name if j < 2 else name + ".%u"
            out.append((f"sfp_lane_{shown}.{i}", str(getattr(lane, name))))
    return out


Sfp = _record(COUNTER, 10, "Sfp", [
    ("module_id", U32, "sfp_module_id"),
    ("total_lanes", U32, "sfp_module_total_lanes"),
    ("supply_voltage", U32, "sfp_module_supply_voltage"),
    ("temperature", U32, "sfp_module_temperature"),
    Field("lanes", array(SfpLane, max_items=256), "sfp_lanes"),
], render=_sfp)

Pfc = _u32_record(11, "Pfc", "PFC_", "requests indications pause_duration storm_detected storm_restored")

Processor = _record(COUNTER, 1001, "Processor", [
    ("cpu_5s", PERCENT100, "5s_cpu"),
    ("cpu_1m", PERCENT100, "1m_cpu"),
    ("cpu_5m", PERCENT100, "5m_cpu"),
    ("total_memory", U64, "total_memory_bytes"),
    ("free_memory", U64, "free_memory_bytes"),
])

Radio = _u32_record(1002, "Radio", "radio_", "elapsed_time on_channel_time on_channel_busy_time")

OpenFlowPort = _record(COUNTER, 1004, "OpenFlowPort", [
    ("datapath_id", HEX64, "openflow_datapath_id"),
    ("port", U32, "openflow_port"),
])

Jvm = _record(COUNTER, 2105, "Jvm", [
    ("vm_name", string(63), "jvm_name"),
    ("vendor", string(31), "jvm_vendor"),
    ("version", string(31), "jvm_version"),
])

Jmx = _record(COUNTER, 2106, "Jmx", [
    *[(n, U64, n) for n in (
        "heap_mem_initial heap_mem_used heap_mem_committed heap_mem_max "
        "non_heap_mem_initial non_heap_mem_used non_heap_mem_committed non_heap_mem_max"
    ).split()],
    *_u32s("", (
        "gc_count gc_mS classes_loaded classes_total classes_unloaded compilation_mS "
        "threads_live threads_daemon threads_started"
    )),
    Field("fds_open", U32, "fds_open", optional=True),
    Field("fds_max", U32, "fds_max", optional=True),
])

_MEMCACHE_U64 = {"bytes_read", "bytes_written", "bytes"}
Memcache = _record(COUNTER, 2200, "Memcache", [(n, U64 if n in _MEMCACHE_U64 else U32, "memcache_" + n) for n in (
    "uptime rusage_user rusage_system curr_connections total_connections connection_structures "
    "cmd_get cmd_set cmd_flush get_hits get_misses delete_misses delete_hits incr_misses incr_hits "
    "decr_misses decr_hits cas_misses cas_hits cas_badval auth_cmds auth_errors bytes_read "
    "bytes_written limit_maxbytes accepting_conns listen_disabled_num threads conn_yields bytes "
    "curr_items total_items evictions"
).split()])

HttpCounters = _u32_record(2201, "HttpCounters", "http_", (
    "method_option_count method_get_count method_head_count method_post_count method_put_count "
    "method_delete_count method_trace_count methd_connect_count method_other_count status_1XX_count "
    "status_2XX_count status_3XX_count status_4XX_count status_5XX_count status_other_count"
))

AppCounters = _record(COUNTER, 2202, "AppCounters", [
    ("application", string(31), "application"),
    *_u32s("", (
        "status_OK errors_OTHER errors_TIMEOUT errors_INTERNAL_ERROR errors_BAD_REQUEST errors_FORBIDDEN "
        "errors_TOO_LARGE errors_NOT_IMPLEMENTED errors_NOT_FOUND errors_UNAVAILABLE errors_UNAUTHORIZED"
    )),
])

AppResources = _record(COUNTER, 2203, "AppResources", [
    ("user_time", U32, "user_time"),
    ("system_time", U32, "system_time"),
    ("memory_used", U64, "memory_used"),
    ("memory_max", U64, "memory_max"),
    *_u32s("", "files_open files_max connections_open connections_max"),
])

_MEMCACHE2_U64 = {"bytes_read", "bytes_written", "bytes", "limit_maxbytes"}
Memcache2 = _record(COUNTER, 2204, "Memcache2", [(n, U64 if n in _MEMCACHE2_U64 else U32, "memcache_" + n) for n in (
    "cmd_set cmd_touch cmd_flush get_hits get_misses delete_hits delete_misses incr_hits incr_misses "
    "decr_hits decr_misses cas_hits cas_misses cas_badval auth_cmds auth_errors threads conn_yields "
    "listen_disabled_num curr_connections rejected_connections total_connections connection_structures "
    "evictions reclaimed curr_items total_items bytes_read bytes_written bytes limit_maxbytes"
).split()])

Vdi = _u32_record(2205, "Vdi", "vdi_", (
    "sessions_current sessions_total sessions_duration rx_bytes tx_bytes rx_packets tx_packets "
    "rx_packets_lost tx_packets_lost rtt_min_ms rtt_max_ms rtt_avg_ms audio_rx_bytes audio_tx_bytes "
    "audio_tx_limit img_rx_bytes img_tx_bytes img_frames img_qual_min img_qual_max img_qual_avg "
    "usb_rx_bytes usb_tx_bytes"
))

AppWorkers = _u32_record(
    2206, "AppWorkers", "", "workers_active workers_idle workers_max requests_delayed requests_dropped"
)

OvsDatapath = _u32_record(2207, "OvsDatapath", "OVS_dp_", "hits misses lost mask_hits flows masks")

NvidiaGpu = _record(COUNTER, 1, "NvidiaGpu", [
    *_u32s("nvml_", "device_count processes gpu_mS mem_mS"),
    ("mem_bytes_total", U64, "nvml_mem_bytes_total"),
    ("mem_bytes_free", U64, "nvml_mem_bytes_free"),
    *_u32s("nvml_", "ecc_errors energy_mJ temperature_C fan_speed_pc"),
], enterprise=5703)

BroadcomTables = _u32_record(3, "BroadcomTables", "bcm_", (
    "asic_host_entries host_entries_max ipv4_entries ipv4_entries_max ipv6_entries ipv6_entries_max "
    "ipv4_ipv6_entries ipv4_ipv6_entries_max long_ipv6_entries long_ipv6_entries_max total_routes "
    "total_routes_max ecmp_nexthops ecmp_nexthops_max mac_entries mac_entries_max ipv4_neighbors "
    "ipv6_neighbors ipv4_routes ipv6_routes acl_ingress_entries acl_ingress_entries_max "
    "acl_ingress_counters acl_ingress_counters_max acl_ingress_meters acl_ingress_meters_max "
    "acl_ingress_slices acl_ingress_slices_max acl_egress_entries acl_egress_entries_max "
    "acl_egress_counters acl_egress_counters_max acl_egress_meters acl_egress_meters_max "
    "acl_egress_slices acl_egress_slices_max"
), enterprise=4413)

DISCARD_REASONS: dict[int, str] = {}
"""sflowtool's drop reason names (src/sflow_drop.h), filled below; its tc_egress is 36, not 366."""
_DISCARD_REASON_TEXT = (
    "0:net_unreachable 1:host_unreachable 2:protocol_unreachable 3:port_unreachable 4:frag_needed "
    "5:src_route_failed 6:dst_net_unknown 7:dst_host_unknown 8:src_host_isolated 9:dst_net_prohibited "
    "10:dst_host_prohibited 11:dst_net_tos_unreachable 12:dst_host_tos_unreacheable "
    "13:comm_admin_prohibited 14:host_precedence_violation 15:precedence_cutoff 256:unknown "
    "257:ttl_exceeded 258:acl 259:no_buffer_space 260:red 261:traffic_shaping 262:pkt_too_big "
    "263:src_mac_is_multicast 264:vlan_tag_mismatch 265:ingress_vlan_filter "
    "266:ingress_spanning_tree_filter 267:port_list_is_empty 268:port_loopback_filter "
    "269:blackhole_route 270:non_ip 271:uc_dip_over_mc_dmac 272:dip_is_loopback_address 273:sip_is_mc "
    "274:sip_is_loopback_address 275:ip_header_corrupted 276:ipv4_sip_is_limited_bc "
    "277:ipv6_mc_dip_reserved_scope 278:ipv6_mc_dip_interface_local_scope 279:unresolved_neigh "
    "280:mc_reverse_path_forwarding 281:non_routable_packet 282:decap_error 283:overlay_smac_is_mc "
    "284:unknown_l2 285:unknown_l3 286:unknown_l3_exception 287:unknown_buffer 288:unknown_tunnel "
    "289:unknown_l4 290:sip_is_unspecified 291:mlag_port_isolation 292:blackhole_arp_neigh "
    "293:src_mac_is_dmac 294:dmac_is_reserved 295:sip_is_class_e 296:mc_dmac_mismatch 297:sip_is_dip "
    "298:dip_is_local_network 299:dip_is_link_local 300:overlay_smac_is_dmac 301:egress_vlan_filter "
    "302:uc_reverse_path_forwarding 303:split_horizon 304:locked_port 305:dmac_filter "
    "306:blackhole_nexthop 307:vxlan_parsing 308:llc_snap_parsing 309:vlan_parsing 310:pppoe_ppp_parsing "
    "311:mpls_parsing 312:arp_parsing 313:ip_1_parsing 314:ip_n_parsing 315:gre_parsing 316:udp_parsing "
    "317:tcp_parsing 318:ipsec_parsing 319:sctp_parsing 320:dccp_parsing 321:gtp_parsing 322:esp_parsing "
    "323:unknown_parsing 324:pkt_too_small 325:unhandled_proto 326:ipv6disabled 327:invalid_proto "
    "328:ip_noproto 329:skb_csum 330:skb_ucopy_fault 331:dev_ready 33:dev_hdr 333:dup_frag "
    "334:skb_gso_seg 335:reverse_path_forwarding 336:icmp_parsing 337:tcp_md5notfound "
    "338:tcp_md5unexpected 339:tcp_md5failure 340:tcp_flags 341:tcp_zerowindow 342:tcp_old_data "
    "343:tcp_overwindow 344:tcp_ofomerge 345:tcp_rfc7323_paws 346:tcp_invalid_sequence 347:tcp_reset "
    "348:tcp_invalid_syn 349:tcp_close 350:tcp_fastopen 351:tcp_old_ack 352:tcp_too_old_ack "
    "353:tcp_ack_unsent_data 354:tcp_ofo_queue_prune 355:tcp_ofo_drop 356:tcp_minttl 357:ipv6_bad_exthdr "
    "358:ipv6_ndisc_frag 359:ipv6_ndisc_hop_limit 360:ipv6_ndisc_bad_code 361:ipv6_ndisc_bad_options "
    "362:ipv6_ndisc_ns_otherhost 363:tap_filter 364:tap_txfilter 365:tc_ingress 36:tc_egress 367:xdp "
    "368:cpu_backlog 369:bpf_cgroup_egress 370:xfrm_policy 371:socket_filter "
)
DISCARD_REASONS.update((int(c), n) for c, n in (p.split(":") for p in _DISCARD_REASON_TEXT.split()))
