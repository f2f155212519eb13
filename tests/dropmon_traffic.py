"""Drops made on purpose inside a test namespace, each of a kernel reason known in advance.

Every function sends from the root namespace (or inside the namespace) over the test's own veth
pair, so nothing leaves the namespaces the test made.  Frames with a broken IPv4 header go out on
an AF_PACKET socket (a raw socket): the kernel's IP stack would fix them before sending.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from netns import VethNamespace, sh

ETH_P_IP = 0x0800


def mac_of(v: VethNamespace, inside: bool) -> bytes:
    if inside:
        text = subprocess.run(v.exec("cat", f"/sys/class/net/{v.ns_dev}/address"), capture_output=True, text=True)
        return bytes.fromhex(text.stdout.strip().replace(":", ""))
    return bytes.fromhex(Path(f"/sys/class/net/{v.host_dev}/address").read_text().strip().replace(":", ""))


def ns_ifindex(v: VethNamespace) -> int:
    out = subprocess.run(v.exec("cat", f"/sys/class/net/{v.ns_dev}/ifindex"), capture_output=True, text=True)
    return int(out.stdout)


def checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_udp_frame(
    v: VethNamespace, dst: str, port: int, payload: bytes, bad_checksum: bool = False, claimed_extra: int = 0
) -> bytes:
    """An Ethernet frame from the host end to the namespace's MAC: IPv4/UDP to ``dst``:``port``; the IP
    checksum wrong on purpose, or the total length ``claimed_extra`` bytes more than the frame holds."""
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    total = 20 + len(udp) + claimed_extra
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0, socket.inet_aton(v.host_ip), socket.inet_aton(dst)
    )
    good = checksum(header)
    header = header[:10] + struct.pack("!H", good ^ 0x5555 if bad_checksum else good) + header[12:]
    return mac_of(v, inside=True) + mac_of(v, inside=False) + struct.pack("!H", ETH_P_IP) + header + udp


def send_frames(v: VethNamespace, frames: list[bytes]) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((v.host_dev, 0))
        for frame in frames:
            s.send(frame)


def udp(dst: str, port: int, count: int = 1, size: int = 10) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            s.sendto(b"d" * size, (dst, port))


def nft_drop(v: VethNamespace, port: int) -> None:
    """An nftables rule in the namespace that drops UDP to ``port`` on input."""
    sh(*v.exec("nft", "add table inet hsfpy_drop"))
    sh(*v.exec("nft", "add chain inet hsfpy_drop input { type filter hook input priority 0; }"))
    sh(*v.exec("nft", f"add rule inet hsfpy_drop input udp dport {port} drop"))


def qdisc_overflow(v: VethNamespace, port: int, count: int = 60) -> None:
    """A tbf of one packet's room on the namespace's end, and a burst from inside past it."""
    tbf = ("tbf", "rate", "64kbit", "burst", "1600", "limit", "1600")
    sh(*v.exec("tc", "qdisc", "replace", "dev", v.ns_dev, "root", *tbf))
    code = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for _ in range({count}): s.sendto(b'q' * 1000, ('{v.host_ip}', {port}))"
    )
    subprocess.run(v.exec(sys.executable, "-c", code), check=False, capture_output=True, timeout=30)
    sh(*v.exec("tc", "qdisc", "del", "dev", v.ns_dev, "root"), check=False)


def discard_samples(datagrams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each discard sample of the bundled collector's JSON datagrams, with its records' fields merged in."""
    out = []
    for d in datagrams:
        for s in d["samples"]:
            if s.get("sampleType_tag") == "0:5":
                merged = {k: v for k, v in s.items() if k != "elements"}
                for e in s["elements"]:
                    merged.update(e)
                out.append(merged)
    return out


def sflowtool_discards(text: str) -> dict[str, dict[str, str]]:
    """sflowtool's discard samples by sequence number: their fields, records' included."""
    out = {}
    for block in re.findall(r"startSample -+\n(.*?)endSample", text, flags=re.S):
        fields = dict(line.split(" ", 1) for line in block.strip().splitlines() if " " in line)
        if fields.get("sampleType_tag") == "0:5":
            out[fields["sampleSequenceNo"]] = fields
    return out
