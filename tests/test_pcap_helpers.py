"""The samplers' shared pieces: VLAN tag restoration, GSO frame lengths, running totals, 0:2 counters."""

from __future__ import annotations

import struct
from dataclasses import replace

from test_pcap_interfaces import iface

from hsflowd_py.counters import Monotonic
from hsflowd_py.modules.pcap.counters import ethernet_counters, interface_records
from hsflowd_py.modules.pcap.sampler import (
    RunningTotal,
    header_bytes_before_payload,
    restore_vlan_tag,
    segment_frame_length,
)
from hsflowd_py.sflow.records import UNKNOWN_COUNTER, EthernetInterface, GenericInterface, PortName

MACS = bytes.fromhex("020000000001020000000002")


def ipv4(proto: int, ihl: int = 5) -> bytes:
    return bytes([0x40 | ihl, 0]) + struct.pack(">HHHBB", 1500, 0, 0, 64, proto) + bytes(2 + 8 + (ihl - 5) * 4)


def tcp(doff: int = 8) -> bytes:
    return struct.pack(">HHIIBB", 1, 2, 0, 0, doff << 4, 0x10) + bytes(doff * 4 - 14)


ETH_TCP = MACS + b"\x08\x00" + ipv4(6) + tcp()
ETH_TCP6 = MACS + b"\x86\xdd" + bytes([0x60, 0, 0, 0, 0, 0, 6, 64]) + bytes(32) + tcp(5)
ETH_UDP_VLAN = MACS + b"\x81\x00\x00\x07\x08\x00" + ipv4(17, ihl=6) + bytes(8)


def test_header_lengths_of_tcp_udp_ipv6_vlan_and_ip_only_frames() -> None:
    assert header_bytes_before_payload(ETH_TCP, 0, len(ETH_TCP), True) == 14 + 20 + 32
    assert header_bytes_before_payload(ETH_TCP6, 0, len(ETH_TCP6), True) == 14 + 40 + 20
    assert header_bytes_before_payload(ETH_UDP_VLAN, 0, len(ETH_UDP_VLAN), True) == 18 + 24 + 8
    ip_only = ETH_TCP[14:]
    assert header_bytes_before_payload(b"xx" + ip_only, 2, len(ip_only), False) == 20 + 32
    assert header_bytes_before_payload(ETH_TCP, 0, 30, True) is None  # cut inside the IP header
    assert header_bytes_before_payload(MACS + b"\x08\x06" + bytes(28), 0, 42, True) is None  # ARP


def test_a_gso_packet_reports_the_average_wire_frame_of_its_segments() -> None:
    headers = 14 + 20 + 32
    # 10 full segments of 1448 bytes of payload: each one a 1514-byte frame
    assert segment_frame_length(headers + 14480, 10, ETH_TCP, 0, len(ETH_TCP), True) == 1514
    # the last segment shorter: the average rounds up
    assert segment_frame_length(headers + 14000, 10, ETH_TCP, 0, len(ETH_TCP), True) == headers + 1400
    # headers that do not parse: the plain share
    assert segment_frame_length(10000, 4, b"", 0, 0, True) == 2500


def test_restore_vlan_tag_inserts_after_the_macs_and_respects_the_limit() -> None:
    frame = MACS + b"\x08\x00" + bytes(range(100))
    out = bytearray(300)
    n = restore_vlan_tag(out, memoryview(b"??" + frame), 2, len(frame), 0x88A8, 0x2007, 128)
    assert n == len(frame) + 4
    assert bytes(out[:n]) == MACS + b"\x88\xa8\x20\x07" + frame[12:]
    n = restore_vlan_tag(out, frame, 0, 64, 0, 7, 64)  # tpid unknown: 802.1Q; still at most 64 bytes
    assert n == 64 and bytes(out[12:16]) == b"\x81\x00\x00\x07" and bytes(out[16:64]) == frame[12:60]
    assert restore_vlan_tag(out, frame, 0, 10, 0, 7, 64) == 10  # too short to hold MACs: left as is


def test_running_totals_survive_wraps_and_restarts() -> None:
    total = RunningTotal(100)
    assert total.update(150) == 50
    assert total.update(10) == 50  # the counter restarted (device re-created): nothing counted backwards
    assert total.update(30) == 70


def test_ethernet_counters_only_for_nics_from_the_standard_statistics() -> None:
    stats = {"rx_crc_errors": 3, "rx_frame_errors": 1, "tx_window_errors": 2, "tx_aborted_errors": 4, "rx_packets": 9}
    nic = iface("eth0", 2, stats=stats)
    mono = Monotonic()
    first = ethernet_counters(nic, mono)
    assert isinstance(first, EthernetInterface)
    assert (first.FCSErrors, first.AlignmentErrors, first.LateCollisions) == (0, 0, 0)  # from zero at start
    assert first.CarrierSenseErrors == UNKNOWN_COUNTER  # no tx_carrier_errors file here
    assert first.SingleCollisionFrames == UNKNOWN_COUNTER and first.SymbolErrors == UNKNOWN_COUNTER
    later = ethernet_counters(replace(nic, stats={**stats, "rx_crc_errors": 8, "tx_aborted_errors": 5}), mono)
    assert later is not None and (later.FCSErrors, later.ExcessiveCollisions) == (5, 1)
    assert ethernet_counters(iface("veth1", 3, has_device=False, iflink=4), Monotonic()) is None
    assert ethernet_counters(iface("docker0", 5, devtype="bridge", has_device=False), Monotonic()) is None


def test_an_interface_sample_carries_generic_name_and_ethernet_records() -> None:
    records = interface_records(iface("eth0", 2, stats={"rx_packets": 5}), Monotonic())
    assert [type(r) for r in records] == [GenericInterface, PortName, EthernetInterface]
    assert records[0].if_index == 2 and records[1].name == "eth0"
    assert [type(r) for r in interface_records(iface("veth1", 3, has_device=False, iflink=4), Monotonic())] == [
        GenericInterface,
        PortName,
    ]
