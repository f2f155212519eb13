"""Real traffic for the tcp module's tests: shaped veth links, iperf3 transfers, frames captured off the wire.

The link is shaped with tbf (this kernel has no netem): its queue adds real
delay and, when it overflows, real drops; ``ip route ... advmss`` clamps the
MSS each end advertises.  Frames are captured with an AF_PACKET socket on the
root-namespace end of the veth, as a sampler would see them, and handed to
the module as SampledPackets.
"""

from __future__ import annotations

import json
import re
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from netns import VethNamespace, sh
from packets import sampled_packet

from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, SampledPacket
from hsflowd_py.packet import parse

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SNAPLEN = 128


def packed(address: str) -> bytes:
    """An IPv4 or IPv6 address as the kernel and the tcp module hold it."""
    return socket.inet_pton(socket.AF_INET6 if ":" in address else socket.AF_INET, address)


def shape(link: VethNamespace, rate: str = "20mbit", burst: str = "32kbit", latency: str = "40ms") -> None:
    """tbf on both directions of the link: queueing delay up to ``latency``, drops beyond it."""
    sh("tc", "qdisc", "replace", "dev", link.host_dev, "root", "tbf", "rate", rate, "burst", burst, "latency", latency)
    sh(*link.exec("tc", "qdisc", "replace", "dev", link.ns_dev, "root", "tbf", "rate", rate, "burst", burst,
                  "latency", latency))  # fmt: skip


def clamp_mss(link: VethNamespace, advmss: int) -> None:
    """Both ends advertise ``advmss`` on the link's routes, IPv4 and IPv6."""
    sh("ip", "route", "replace", f"10.253.{link.subnet}.0/24", "dev", link.host_dev, "advmss", str(advmss))
    sh(*link.exec("ip", "route", "replace", f"10.253.{link.subnet}.0/24", "dev", link.ns_dev, "advmss", str(advmss)))
    if link.ipv6:  # metric 256 is the kernel's own prefix route, which another metric would only shadow
        net6 = f"fd00:253:{link.subnet}::/64"
        sh("ip", "-6", "route", "replace", net6, "dev", link.host_dev, "advmss", str(advmss), "metric", "256")
        sh(*link.exec("ip", "-6", "route", "replace", net6, "dev", link.ns_dev, "advmss", str(advmss), "metric", "256"))


@dataclass
class Frame:
    data: bytes
    outgoing: bool
    length: int


class Capture:
    """Frames on one device, first SNAPLEN bytes, with their direction."""

    def __init__(self, dev: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((dev, ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.ifindex = socket.if_nametoindex(dev)

    def read(self, timeout: float) -> Frame | None:
        if not select.select([self.sock], [], [], timeout)[0]:
            return None
        data, addr = self.sock.recvfrom(65536, socket.MSG_TRUNC)
        return Frame(data[:SNAPLEN], addr[2] == PACKET_OUTGOING, len(data))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sampled(frame: Frame, ifindex: int, rate: int = 10, netns: str | None = None) -> SampledPacket:
    direction = DIRECTION_OUT if frame.outgoing else DIRECTION_IN
    length, data = frame.length + 4, frame.data
    packet = sampled_packet(ifindex, data, direction, rate=rate, frame_length=length, header_bytes=len(data))
    packet.netns = netns
    return packet


def tcp_payload(frame: Frame) -> int:
    """Bytes of TCP payload in a captured IPv4/IPv6 Ethernet frame (from the IP length fields)."""
    b = frame.data
    ethertype = b[12] << 8 | b[13]
    if ethertype == 0x0800:
        ihl = (b[14] & 15) * 4
        total = b[16] << 8 | b[17]
        return total - ihl - (b[14 + ihl + 12] >> 4) * 4
    payload = b[18] << 8 | b[19]
    return payload - (b[54 + 12] >> 4) * 4


@dataclass
class Iperf:
    """An iperf3 server in the namespace and a client in the root namespace on a fixed client port."""

    link: VethNamespace
    port: int
    cport: int
    server: subprocess.Popen[str] | None = None
    client: subprocess.Popen[str] | None = None

    def start(self, seconds: float, reverse: bool = False, ipv6: bool = False) -> None:
        addr = self.link.ns_ip6 if ipv6 else self.link.ns_ip
        self.server = subprocess.Popen(
            self.link.exec("iperf3", "-s", "-1", "-B", addr, "-p", str(self.port)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        wait_listening(self.link, self.port)
        # cubic fills the tbf queue (delay) until it overflows (drops); bbr, this kernel's default, would drain it
        args = ["iperf3", "-c", addr, "-p", str(self.port), "--cport", str(self.cport), "-t", str(seconds), "-J",
                "-C", "cubic"]  # fmt: skip
        self.client = subprocess.Popen([*args, *(["-R"] if reverse else [])], stdout=subprocess.PIPE, text=True)

    def result(self, timeout: float = 30) -> dict[str, object]:
        assert self.client is not None
        out, _ = self.client.communicate(timeout=timeout)
        return json.loads(out)

    def stop(self) -> None:
        for p in (self.client, self.server):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()


def wait_listening(link: VethNamespace, port: int, timeout: float = 5) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        out = sh(*link.exec("ss", "-Htln", f"sport = :{port}")).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} in {link.ns}")


SS_FIELDS = {"mss": r"\bmss:(\d+)", "min_rtt": r"\bminrtt:([\d.]+)", "retrans": r"\bretrans:\d+/(\d+)",
             "rtt": r"\brtt:([\d.]+)/"}  # fmt: skip


def ss_info(cport: int, ns: VethNamespace | None = None) -> dict[str, float]:
    """What ``ss -tin`` reads for the socket whose local (root ns) or remote (in ``ns``) port is ``cport``."""
    cmd = ["ss", "-Htin", f"sport = :{cport}" if ns is None else f"dport = :{cport}"]
    out = sh(*(ns.exec(*cmd) if ns is not None else cmd)).stdout
    info: dict[str, float] = {}
    for name, pattern in SS_FIELDS.items():
        m = re.search(pattern, out)
        if m:
            info[name] = float(m.group(1))
    info.setdefault("retrans", 0.0)  # ss leaves retrans out until the first one
    return info


def flow_ports(frame: Frame) -> tuple[int, int] | None:
    flow = parse(frame.data, 1)
    return None if flow is None else (flow.sport, flow.dport)


SINK = """
import socket, sys, threading
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
server = socket.create_server((sys.argv[1], int(sys.argv[2])), family=family)
def drain(c):
    while c.recv(65536):
        pass
while True:
    threading.Thread(target=drain, args=(server.accept()[0],), daemon=True).start()
"""

SEND = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(bytes(int(sys.argv[3])))
print(s.getsockname()[1], flush=True)
time.sleep(float(sys.argv[4]))
"""


class InNamespace:
    """A small Python program run inside the link's namespace, killed by its pid on exit."""

    def __init__(self, link: VethNamespace, code: str, *args: object) -> None:
        self.proc = subprocess.Popen(
            link.exec(sys.executable, "-c", code, *map(str, args)), stdout=subprocess.PIPE, text=True
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def __enter__(self) -> InNamespace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


def sink(link: VethNamespace, port: int, address: str = "0.0.0.0") -> InNamespace:
    """A TCP server in the namespace that reads and discards whatever it is sent."""
    server = InNamespace(link, SINK, address, port)
    wait_listening(link, port)
    return server


def send_from_namespace(link: VethNamespace, address: str, port: int, nbytes: int, linger: float) -> InNamespace:
    """A client in the namespace that connects, sends ``nbytes``, prints its port and stays connected."""
    return InNamespace(link, SEND, address, port, nbytes, linger)
