"""The one table of sFlow v5 records that this agent sends.

Both the encoder and the bundled collector's decoder are driven from these
declarations, so the two cannot drift apart.  Attribute names follow the sFlow
specification structures; labels are the names sflowtool prints, so the
collector's text and JSON output come straight from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from .layout import Field, Struct, define
from .xdr import FLOAT, IPV4, IPV6, MAC, OPAQUE, PERCENT100, U32, U64, UUID, Scalar, array, enum, string

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
) -> Any:
    cls = define(class_name, fields, base=Record, KIND=kind, FORMAT=fmt, INTRO=intro)
    (FLOW_RECORDS if kind == FLOW else COUNTER_RECORDS)[cls.tag()] = cls
    return cls


def _u32s(prefix: str, names: str) -> list[tuple[str, Any, str]]:
    """u32 fields whose label is ``prefix`` + the spec name (mib2 groups)."""
    return [(n, U32, prefix + n) for n in names.split()]


# ---------------------------------------------------------------- flow records

SampledHeader = _record(FLOW, 1, "SampledHeader", [
    ("header_protocol", U32, "headerProtocol"),
    ("frame_length", U32, "sampledPacketSize"),
    ("stripped", U32, "strippedBytes"),
    Field("header", OPAQUE, "headerBytes", count_label="headerLen"),
], intro=("flowSampleType", "HEADER"))
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
    ("cpu_steal", U32, "cpu_steal"),
    ("cpu_guest", U32, "cpu_guest"),
    ("cpu_guest_nice", U32, "cpu_guest_nice"),
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
