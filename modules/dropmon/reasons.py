"""The running kernel's drop reasons (``enum skb_drop_reason``) by number, and their sFlow drop codes.

Names come from the kernel itself, so a newer kernel's reasons are named right: first the
``skb:kfree_skb`` tracepoint's format (its print fmt spells every reason
``__print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, ...)``) wherever tracefs is mounted; else
the enum in the kernel's BTF (``/sys/kernel/btf/vmlinux``), whose ``SKB_DROP_REASON_NO_SOCKET``
is the same reason without its prefix.  Both readers take a root path, so tests use fixtures too.

Codes: the established agent's table from kernel reason to sFlow drop reason
(host-sflow ``src/Linux/dropPoints_rn.h``), numbered as in the record table (sflowtool's ``sflow_drop.h``);
any other reason is ``unknown`` (256) and still goes out with its name in 0:1042.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from hsflowd_py.sflow.records import DISCARD_REASONS

FORMAT_PATHS = (
    "sys/kernel/tracing/events/skb/kfree_skb/format",
    "sys/kernel/debug/tracing/events/skb/kfree_skb/format",
)
BTF_PATH = "sys/kernel/btf/vmlinux"
ENUM = "skb_drop_reason"
NOT_DROPS = ("NOT_DROPPED_YET", "CONSUMED")
"""Values of the enum that are no drop: never reported."""

_SYMBOL = re.compile(r'\{\s*(\d+)\s*,\s*"([^"]+)"\s*\}')


class ReasonsError(Exception):
    """Neither the tracepoint's format nor the kernel's BTF could be read for the reason names."""


def from_format(text: str) -> dict[int, str]:
    """The reasons of the tracepoint format's ``__print_symbolic(REC->reason, ...)`` (its MAX is none)."""
    at = text.find("__print_symbolic(REC->reason")
    if at < 0:
        return {}
    return {int(number): name for number, name in _SYMBOL.findall(text[at:]) if name != "MAX"}


_BTF_HEADER = struct.Struct("=HBBIIIII")
"""magic, version, flags, hdr_len, type_off, type_len, str_off, str_len."""
_BTF_TYPE = struct.Struct("=III")
"""name_off, info (vlen, kind, kind_flag), size or type."""
_KIND_ENUM = 6
_KIND_ENUM64 = 19
_EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}
"""Bytes after the type of kinds with a fixed extra (int, array, var, decl_tag)."""
_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}
"""Bytes per member of kinds with ``vlen`` members (struct, union, enum, func_proto, datasec, enum64)."""


def from_btf(data: bytes, enum: str = ENUM) -> dict[int, str]:
    """The members of ``enum`` in a BTF blob, their common ``SKB_DROP_REASON_``/``SKB_`` prefix cut."""
    magic, _, _, hdr_len, type_off, type_len, str_off, _ = _BTF_HEADER.unpack_from(data)
    if magic != 0xEB9F:
        raise ValueError(f"not BTF in this byte order (magic {magic:#x})")
    strings = hdr_len + str_off
    wanted = enum.encode() + b"\0"
    at, end = hdr_len + type_off, hdr_len + type_off + type_len
    while at < end:
        name_off, info, _ = _BTF_TYPE.unpack_from(data, at)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        at += _BTF_TYPE.size
        if kind in (_KIND_ENUM, _KIND_ENUM64) and data.startswith(wanted, strings + name_off):
            size = _PER_MEMBER[kind]
            members = {}
            for i in range(vlen):
                member_name, value = struct.unpack_from("=Ii", data, at + i * size)
                name = data[strings + member_name : data.index(b"\0", strings + member_name)].decode()
                members[value & 0xFFFFFFFF] = name
            return {value: _short(name) for value, name in members.items() if not name.endswith(("_MAX", "_MASK"))}
        at += _EXTRA.get(kind, 0) + _PER_MEMBER.get(kind, 0) * vlen
    return {}


def _short(name: str) -> str:
    for prefix in ("SKB_DROP_REASON_", "SKB_"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def read_reasons(root: Path = Path("/")) -> tuple[dict[int, str], str]:
    """The kernel's reasons by number and where they were read; ReasonsError when nowhere."""
    for relative in FORMAT_PATHS:
        try:
            names = from_format((root / relative).read_text())
        except OSError:
            continue
        if names:
            return names, f"/{relative}"
    try:
        names = from_btf((root / BTF_PATH).read_bytes())
    except (OSError, ValueError, struct.error) as e:
        raise ReasonsError(f"no tracefs format of skb:kfree_skb and no kernel BTF at /{BTF_PATH}: {e}") from None
    if not names:
        raise ReasonsError(f"/{BTF_PATH} has no enum {ENUM}")
    return names, f"/{BTF_PATH}"


SFLOW_REASON = {
    "NOT_SPECIFIED": "unknown", "NO_SOCKET": "port_unreachable", "PKT_TOO_SMALL": "pkt_too_small",
    "TCP_CSUM": "tcp_parsing", "SOCKET_FILTER": "socket_filter", "UDP_CSUM": "udp_parsing",
    "NETFILTER_DROP": "acl", "OTHERHOST": "dst_host_unknown", "IP_CSUM": "ip_1_parsing",
    "IP_INHDR": "ip_1_parsing", "IP_RPFILTER": "reverse_path_forwarding",
    "UNICAST_IN_L2_MULTICAST": "uc_dip_over_mc_dmac", "XFRM_POLICY": "xfrm_policy",
    "IP_NOPROTO": "protocol_unreachable", "SOCKET_RCVBUFF": "no_buffer_space", "PROTO_MEM": "no_buffer_space",
    "TCP_MD5NOTFOUND": "tcp_md5notfound", "TCP_MD5UNEXPECTED": "tcp_md5unexpected",
    "TCP_MD5FAILURE": "tcp_md5failure", "SOCKET_BACKLOG": "no_buffer_space", "TCP_FLAGS": "tcp_flags",
    "TCP_ZEROWINDOW": "tcp_zerowindow", "TCP_OLD_DATA": "tcp_old_data", "TCP_OVERWINDOW": "tcp_overwindow",
    "TCP_OFOMERGE": "tcp_ofomerge", "TCP_RFC7323_PAWS": "tcp_rfc7323_paws",
    "TCP_INVALID_SEQUENCE": "tcp_invalid_sequence", "TCP_RESET": "tcp_reset",
    "TCP_INVALID_SYN": "tcp_invalid_syn", "TCP_CLOSE": "tcp_close", "TCP_FASTOPEN": "tcp_fastopen",
    "TCP_OLD_ACK": "tcp_old_ack", "TCP_TOO_OLD_ACK": "tcp_too_old_ack",
    "TCP_ACK_UNSENT_DATA": "tcp_ack_unsent_data", "TCP_OFO_QUEUE_PRUNE": "tcp_ofo_queue_prune",
    "TCP_OFO_DROP": "tcp_ofo_drop", "IP_OUTNOROUTES": "dst_net_unknown",
    "BPF_CGROUP_EGRESS": "bpf_cgroup_egress", "IPV6DISABLED": "ipv6disabled",
    "NEIGH_CREATEFAIL": "unresolved_neigh", "NEIGH_FAILED": "unresolved_neigh",
    "NEIGH_QUEUEFULL": "unresolved_neigh", "NEIGH_DEAD": "unresolved_neigh", "TC_EGRESS": "tc_egress",
    "QDISC_DROP": "traffic_shaping", "CPU_BACKLOG": "cpu_backlog", "XDP": "xdp", "TC_INGRESS": "tc_ingress",
    "UNHANDLED_PROTO": "unhandled_proto", "SKB_CSUM": "skb_csum", "SKB_GSO_SEG": "skb_gso_seg",
    "SKB_UCOPY_FAULT": "skb_ucopy_fault", "DEV_HDR": "dev_hdr", "DEV_READY": "dev_ready",
    "FULL_RING": "no_buffer_space", "NOMEM": "no_buffer_space", "HDR_TRUNC": "pkt_too_small",
    "TAP_FILTER": "tap_filter", "TAP_TXFILTER": "tap_txfilter", "ICMP_CSUM": "icmp_parsing",
    "INVALID_PROTO": "invalid_proto", "IP_INADDRERRORS": "host_unreachable", "IP_INNOROUTES": "net_unreachable",
    "PKT_TOO_BIG": "pkt_too_big", "DUP_FRAG": "dup_frag", "FRAG_REASM_TIMEOUT": "frag_needed",
    "FRAG_TOO_FAR": "frag_needed", "TCP_MINTTL": "tcp_minttl", "IPV6_BAD_EXTHDR": "ipv6_bad_exthdr",
    "IPV6_NDISC_FRAG": "ipv6_ndisc_frag", "IPV6_NDISC_HOP_LIMIT": "ipv6_ndisc_hop_limit",
    "IPV6_NDISC_BAD_CODE": "ipv6_ndisc_bad_code", "IPV6_NDISC_BAD_OPTIONS": "ipv6_ndisc_bad_options",
    "IPV6_NDISC_NS_OTHERHOST": "ipv6_ndisc_ns_otherhost",
}  # fmt: skip
"""Kernel reason → sFlow drop reason, as the established agent maps them."""

DROP_CODES = {name: code for code, name in DISCARD_REASONS.items()}
"""sFlow drop codes by name, from the record table's (sflowtool's ``sflow_drop.h``)."""
UNKNOWN = DROP_CODES["unknown"]


def drop_code(reason: str) -> int:
    """The sFlow discard code of a kernel reason; 256 (unknown) for one without a mapping."""
    return DROP_CODES[SFLOW_REASON.get(reason, "unknown")]
