"""Counter samples of a sampled interface: 0:1 generic, 0:1005 name and, for a NIC, 0:2 Ethernet.

0:1 and 0:1005 come from the core (``host_counters.interface_counters``).  0:2 is built from
the kernel's standard link statistics, which ``include/uapi/linux/if_link.h`` defines in
IEEE 802.3 terms: ``rx_frame_errors`` are AlignmentErrors, ``rx_crc_errors``
FrameCheckSequenceErrors, ``tx_window_errors`` LateCollisions, ``tx_aborted_errors``
FramesAbortedDueToXSColls (ExcessiveCollisions) and ``tx_carrier_errors``
CarrierSenseErrors.  The other dot3 counters have no standard kernel source (only
driver-specific ``ethtool -S`` names, not read here) and are sent as unknown
(0xFFFFFFFF).  0:2 is sent only for interfaces backed by a device, a NIC driver: veth,
bridges and other software devices have no MAC layer to count.  A driver that leaves these
statistics at zero (virtio does) cannot be told apart from one that saw no error.
"""

from __future__ import annotations

from hsflowd_py.counters import KERNEL_LONG_BITS, Monotonic
from hsflowd_py.host_counters import interface_counters
from hsflowd_py.readers.netclass import ARPHRD_ETHER, InterfaceInfo
from hsflowd_py.sflow.records import UNKNOWN_COUNTER, EthernetInterface, Record

DOT3_FROM_STATISTICS = {
    "AlignmentErrors": "rx_frame_errors",
    "FCSErrors": "rx_crc_errors",
    "LateCollisions": "tx_window_errors",
    "ExcessiveCollisions": "tx_aborted_errors",
    "CarrierSenseErrors": "tx_carrier_errors",
}
"""dot3Stats field → /sys/class/net/<dev>/statistics file."""


def ethernet_counters(info: InterfaceInfo, monotonic: Monotonic) -> EthernetInterface | None:
    """The 0:2 record of a NIC, or None for software devices."""
    if not info.has_device or info.arp_type != ARPHRD_ETHER:
        return None
    values = {f.name: UNKNOWN_COUNTER for f in EthernetInterface.FIELDS}
    for field, name in DOT3_FROM_STATISTICS.items():
        if name in info.stats:
            values[field] = monotonic.update(
                ("dot3", field), info.stats[name], bits=32, source_bits=KERNEL_LONG_BITS, from_zero=True
            )
    return EthernetInterface(**values)


def interface_records(info: InterfaceInfo, monotonic: Monotonic, port_name: str | None = None) -> list[Record]:
    """Everything an interface's counter sample carries (``port_name``: see ``interface_counters``)."""
    records: list[Record] = list(interface_counters(info, monotonic, port_name))
    ethernet = ethernet_counters(info, monotonic)
    if ethernet is not None:
        records.append(ethernet)
    return records
