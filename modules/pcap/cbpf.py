"""The classic sampler: a random classic BPF filter on an AF_PACKET socket with a TPACKET_V3 ring.

Standard library only.  Per interface, one raw socket whose filter keeps 1 packet in N in
the kernel (REFERENCE.md section 7: ``ld rand; mod #N; jneq #0 drop; ret #snaplen;
drop: ret #0``; the established agent compares with 1, which never matches when N = 1),
and a memory-mapped TPACKET_V3 ring that the kernel fills a block at a time and the agent
walks in place: one wake-up per block, no system call and no bytes object per packet.

Kernel facts this relies on (REFERENCE.md section 9):

* the socket is opened with protocol 0, so that nothing is queued before the filter and
  the ring are in place, and only then bound to the interface with ETH_P_ALL;
* blocks are handed back in order by zeroing ``block_status``; a block reaches user space
  when it is full or ``tp_retire_blk_tov`` ms after its first packet, never empty;
* ``sll_pkttype`` gives the direction: 4 (PACKET_OUTGOING) was sent, host, broadcast and
  multicast were received, 3 (PACKET_OTHERHOST, seen in promiscuous mode) was neither;
* ``PACKET_STATISTICS`` resets on each read, and its ``tp_packets`` includes ``tp_drops``:
  ``tp_drops`` are samples the full ring could not take, summed here into the drop total;
* packets the filter rejects are counted nowhere, so the sample pool comes from the
  interface's own packet counters (``statistics/rx_packets + tx_packets``), read once per
  block and spread over its samples.

Cost per interface: two descriptors (the socket, and the duplicate Python's mmap keeps of it)
and a ring sized from the interface's rate and
speed (:func:`ring_bytes`, 64 KB to 4 MB): 300 bridges at the default 1-in-400 take 75 MB of
rings, where a fixed 4 MB ring took 1.2 GB.

Limits: the ring sees GSO/GRO packets as the stack builds them, and carries no segment
count: such a packet is one sample of its full length (the established agent does the
same), while the counters of a physical NIC count wire packets.  The eBPF sampler does not
have this limit.  Every egress packet is cloned before the filter runs, which costs the
kernel more than the tc hook of the eBPF sampler does.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import mmap
import os
import socket
import struct
from pathlib import Path

from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, DIRECTION_UNKNOWN, Header
from hsflowd_py.malloc_tuning import release_freed

from .interfaces import Tap
from .sampler import (
    FCS_BYTES,
    VLAN_TAG_BYTES,
    FlowEntry,
    OpenFlows,
    OutOfDescriptors,
    RunningTotal,
    Sampler,
    SamplerError,
    restore_vlan_tag,
)

log = logging.getLogger("hsflowd.pcap")

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
ETH_P_ALL = 3
SO_ATTACH_FILTER = 26
SKF_AD_RANDOM = 0xFFFFF000 + 56
"""SKF_AD_OFF + SKF_AD_RANDOM: a load from here yields prandom_u32()."""

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40

PACKET_OTHERHOST = 3
PACKET_OUTGOING = 4
DIRECTIONS = (DIRECTION_IN, DIRECTION_IN, DIRECTION_IN, DIRECTION_UNKNOWN, DIRECTION_OUT) + (DIRECTION_UNKNOWN,) * 251
"""By sll_pkttype (a byte): host, broadcast, multicast, otherhost, outgoing; the rest is unknown."""

BLOCK_COUNT = 8
FRAME_SIZE = 2048
"""Only checked by the kernel for TPACKET_V3 (packets are packed in a block); a block holds several."""
RETIRE_BLOCK_MS = 50
RING_MIN = 64 << 10
RING_MAX = 4 << 20
HOLD_S = 0.25
"""Seconds of worst-case samples a ring holds: blocks retire every RETIRE_BLOCK_MS, and the loop
may be busy elsewhere for a while before it drains them."""
UNKNOWN_SPEED = 1_000_000_000
"""Assumed for an interface that reports no speed (a bridge, a dummy, a tunnel)."""
MIN_FRAME_BITS = 84 * 8
"""A minimum Ethernet frame on the wire (64 bytes, preamble and gap): the most packets a link carries."""
SAMPLE_OVERHEAD = 112
"""Ring bytes per sample besides its header bytes: tpacket3_hdr, sockaddr_ll and alignment."""


def ring_bytes(tap: Tap) -> int:
    """The ring an interface needs: HOLD_S of samples at its rate when its link is full of minimum
    frames, a power of two between RING_MIN and RING_MAX: 1-in-1000 on 1G (1-in-10000 on 10G)
    gets 128 KB, an interface of unknown speed at the default 1-in-400 256 KB.  Sized when the
    interface is opened."""
    packets_per_s = (tap.speed or UNKNOWN_SPEED) / MIN_FRAME_BITS
    wanted = packets_per_s / tap.sampling_rate * HOLD_S * (SAMPLE_OVERHEAD + tap.header_bytes)
    size = RING_MIN
    while size < wanted and size < RING_MAX:
        size *= 2
    return size

_BLOCK = struct.Struct("=III")
"""tpacket_block_desc at +8: block_status, num_pkts, offset_to_first_pkt."""
_BLOCK_STATUS = 8
_PACKET = struct.Struct("=IIIIIIH32xB")
"""tpacket3_hdr: tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len, tp_status, tp_mac; then sll_pkttype at 58."""
_VLAN = struct.Struct("=32xIH")
"""tpacket3_hdr hv1: tp_vlan_tci at 32, tp_vlan_tpid at 36."""
_STATS = struct.Struct("=III")
"""tpacket_stats_v3: tp_packets, tp_drops, tp_freeze_q_cnt."""
_REQ3 = struct.Struct("=7I")
"""tpacket_req3."""


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def random_filter(rate: int, snaplen: int) -> list[tuple[int, int, int, int]]:
    """The classic BPF program keeping one packet in ``rate``, cut to ``snaplen`` bytes."""
    return [
        (0x20, 0, 0, SKF_AD_RANDOM),  # ld  [rand]          BPF_LD|BPF_W|BPF_ABS
        (0x94, 0, 0, rate),  # mod #rate                     BPF_ALU|BPF_MOD|BPF_K
        (0x15, 0, 1, 0),  # jeq #0, keep, drop               BPF_JMP|BPF_JEQ|BPF_K
        (0x06, 0, 0, snaplen),  # keep: ret #snaplen         BPF_RET|BPF_K
        (0x06, 0, 0, 0),  # drop: ret #0
    ]


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """SO_ATTACH_FILTER: the kernel copies the program, and replaces any filter atomically."""
    insns = (_SockFilter * len(program))(*program)
    fprog = _SockFprog(len(program), ctypes.cast(insns, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))


class _Ring:
    """One interface: its socket, its mapped ring and its running totals."""

    def __init__(self, tap: Tap, root: Path, open_flows: OpenFlows) -> None:
        self.tap = tap
        self.open_flows = open_flows
        self.flow: FlowEntry  # set by configure, with the rate
        self.block = 0
        self.samples = 0
        self.failed: str | None = None
        stats = root / "sys/class/net" / tap.name / "statistics"
        self.counter_paths = (str(stats / "rx_packets"), str(stats / "tx_packets"))
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.pool = RunningTotal(self._packets())
            self.drops = 0
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            self.configure(tap)
            self.ring_bytes = ring_bytes(tap)
            self.block_size = block = self.ring_bytes // BLOCK_COUNT
            req = _REQ3.pack(block, BLOCK_COUNT, FRAME_SIZE, block // FRAME_SIZE * BLOCK_COUNT, RETIRE_BLOCK_MS, 0, 0)
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self.map = mmap.mmap(self.sock.fileno(), self.ring_bytes)
            self.view = memoryview(self.map)
            self.sock.bind((tap.name, ETH_P_ALL))
            if tap.promisc:
                mreq = struct.pack("=iHH8s", tap.ifindex, PACKET_MR_PROMISC, 0, b"")
                self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            self.sock.setblocking(False)
            self._statistics()  # start the kernel's drop count from here
            self.pool_seen = 0
            self.vlan_scratch = bytearray(512)
        except BaseException:
            self.close()
            raise

    def configure(self, tap: Tap) -> None:
        self.tap = tap
        self.header_bytes = tap.header_bytes
        self.flow = self.open_flows(tap.ifindex, tap.sampling_rate, tap.ethernet)
        attach_filter(self.sock, random_filter(tap.sampling_rate, max(tap.header_bytes, 1)))

    def _packets(self) -> int:
        """The interface's packet count, read by path once per block: a descriptor kept open for
        each counter would double the descriptors an interface costs."""
        total = 0
        for path in self.counter_paths:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                total += int(os.read(fd, 32))
            finally:
                os.close(fd)
        return total

    def _statistics(self) -> tuple[int, int]:
        packets, drops, _ = _STATS.unpack(self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
        return packets, drops

    def drain(self) -> int:
        """Walk every block the kernel has handed over; returns the number of samples."""
        done = 0
        while True:
            base = self.block * self.block_size
            status, count, first = _BLOCK.unpack_from(self.map, base + _BLOCK_STATUS)
            if not status & TP_STATUS_USER:
                break
            try:
                self._walk(base + first, count)
            finally:  # a block that failed half-way is given back all the same: no spinning on it
                self.map[base + _BLOCK_STATUS : base + _BLOCK_STATUS + 4] = b"\0\0\0\0"
                self.block = (self.block + 1) % BLOCK_COUNT
            done += count
        self.samples += done
        return done

    def _walk(self, p: int, count: int) -> None:
        """The hot loop: ``count`` packets from offset ``p``, each straight into the flow path's ``emit``."""
        try:
            _, dropped = self._statistics()
            self.drops += dropped
            before = self.pool_seen
            self.pool_seen = after = self.pool.update(self._packets())
        except (OSError, ValueError) as e:  # the interface vanished under us: keep the last totals
            self._fail(f"cannot read its counters: {e}")
            before = after = self.pool_seen
        drops, spread = self.drops, after - before
        m, view, emit, unpack = self.map, self.view, self.flow.emit, _PACKET.unpack_from
        tap = self.tap
        limit, mac, ethernet = self.header_bytes, tap.mac, tap.ethernet
        check_source = ethernet and mac is not None
        fcs = FCS_BYTES if ethernet else 0
        for i in range(1, count + 1):
            step, sec, nsec, snaplen, length, pstatus, mac_off, pkttype = unpack(m, p)
            direction = DIRECTIONS[pkttype]
            start = p + mac_off
            if direction == DIRECTION_OUT and check_source and m[start + 6 : start + 12] != mac:
                direction = DIRECTION_UNKNOWN  # forwarded, not sent by this host
            hlen = snaplen if snaplen <= limit else limit
            frame = length + fcs
            src: Header = view
            if pstatus & TP_STATUS_VLAN_VALID and ethernet:
                tci, tpid = _VLAN.unpack_from(m, p)
                if not pstatus & TP_STATUS_VLAN_TPID_VALID:
                    tpid = 0
                hlen = restore_vlan_tag(self.vlan_scratch, view, start, hlen, tpid, tci, limit)
                src, start, frame = self.vlan_scratch, 0, frame + VLAN_TAG_BYTES
            emit(
                sample_pool=before + spread * i // count,
                drops=drops,
                direction=direction,
                frame_length=frame,
                header=src,
                start=start,
                length=hlen,
                timestamp_ns=sec * 1_000_000_000 + nsec,
            )
            p += step

    def check_error(self) -> None:
        """A wake-up with nothing to read is a socket error (ENETDOWN when the interface goes down)."""
        err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(os.strerror(err))

    def _fail(self, why: str) -> None:
        if self.failed != why:
            self.failed = why
            log.info("pcap: %s (classic BPF): %s", self.tap.name, why)

    def close(self) -> None:
        view = getattr(self, "view", None)
        if view is not None:
            view.release()
            self.map.close()
        self.sock.close()


class CbpfSampler(Sampler):
    """Classic BPF on AF_PACKET: one socket and ring per interface, read when the kernel retires a block."""

    kind = "cbpf"

    def __init__(self, open_flows: OpenFlows, root: Path) -> None:
        self.open_flows = open_flows
        self.root = root
        self.rings: dict[int, _Ring] = {}
        self.loop = asyncio.get_running_loop()
        self.read_errors = 0
        release_freed()  # heap freed at start-up (.pyc reads), before the first ring is mapped (up to 4 MB)

    def open(self, tap: Tap) -> None:
        try:
            ring = _Ring(tap, self.root, self.open_flows)
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                raise OutOfDescriptors(f"no file descriptor left: {e.strerror}") from None
            if e.errno == errno.EPERM:
                raise SamplerError(f"no permission for a raw socket ({e.strerror}; needs CAP_NET_RAW)") from None
            raise SamplerError(f"cannot open a raw socket on it: {e.strerror or e}") from None
        self.rings[tap.ifindex] = ring
        self.loop.add_reader(ring.sock.fileno(), self._readable, ring)

    def _readable(self, ring: _Ring) -> None:
        try:
            if ring.drain() == 0:
                ring.check_error()
        except Exception:  # a fault on one interface must not stop the others
            self.read_errors += 1
            if self.read_errors == 1:
                log.exception("pcap: reading the ring of %s failed (further failures counted)", ring.tap.name)

    def update(self, tap: Tap) -> None:
        ring = self.rings.get(tap.ifindex)
        if ring is not None:
            ring.configure(tap)

    def close(self, ifindex: int) -> None:
        ring = self.rings.pop(ifindex, None)
        if ring is not None:
            self.loop.remove_reader(ring.sock.fileno())
            ring.close()

    def stop(self) -> None:
        for ifindex in list(self.rings):
            self.close(ifindex)

    def status(self) -> dict[str, int]:
        return {
            "interfaces": len(self.rings),
            "samples": sum(r.samples for r in self.rings.values()),
            "drops": sum(r.drops for r in self.rings.values()),
            "read_errors": self.read_errors,
        }
