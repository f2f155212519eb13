"""The samplers' shared pieces: VLAN tag restoration (classic BPF), running totals, 0:2 counters."""

from __future__ import annotations

from dataclasses import replace

from test_pcap_interfaces import iface

from hsflowd_py.counters import Monotonic
from hsflowd_py.modules.pcap.counters import ethernet_counters, interface_records
from hsflowd_py.modules.pcap.sampler import RunningTotal, restore_vlan_tag
from hsflowd_py.sflow.records import UNKNOWN_COUNTER, EthernetInterface, GenericInterface, PortName

MACS = bytes.fromhex("020000000001020000000002")


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


def test_a_named_port_sends_its_name_in_0_1005() -> None:
    veth = iface("veth1", 3, has_device=False, iflink=4)
    assert interface_records(veth, Monotonic(), "k8s__web-1_shop_u_a")[1] == PortName(name="k8s__web-1_shop_u_a")
    assert interface_records(veth, Monotonic(), None)[1] == PortName(name="veth1")


def test_an_interface_sample_carries_generic_name_and_ethernet_records() -> None:
    records = interface_records(iface("eth0", 2, stats={"rx_packets": 5}), Monotonic())
    assert [type(r) for r in records] == [GenericInterface, PortName, EthernetInterface]
    assert records[0].if_index == 2 and records[1].name == "eth0"
    assert [type(r) for r in interface_records(iface("veth1", 3, has_device=False, iflink=4), Monotonic())] == [
        GenericInterface,
        PortName,
    ]
