"""The eBPF sampler: one tc program per direction on each interface (tcx where the kernel has it,
``tc.py``), samples through a BPF ring buffer.

``sampler.bpf.h`` counts every packet per CPU, interface and direction (the true sample
pool), keeps 1 in N and writes it to a ring buffer without waking anyone; the agent drains
the ring every ``DRAIN_S`` seconds, which bounds its wake-ups whatever the packet rate.

Loading, in this order (``load``), each failure logged with its reason:

1. the BPF object built with the package, through libbpf in this process (``ebpf_core.py``):
   no compiler, no kernel headers, no child process;
2. bcc, for hosts without libbpf or the object: a short-lived child process
   (``ebpf_build.py``) compiles the program against the running kernel's headers with LLVM,
   hands the loaded programs and maps over as file descriptors and exits, so the agent never
   holds LLVM's ~130 MB;
3. when neither works the pcap module falls back to classic BPF.

``HSFLOWD_PY_EBPF_LOADER=libbpf`` or ``=bcc`` in the agent's environment allows only that
loader (benchmarks and tests compare them).  Either way the agent keeps the same descriptors:
the two programs, the ring buffer and two small hash maps.

Samples come out of the kernel as the flow samples the agent sends (``sampler.bpf.h``,
``wire.py``).  While no enricher needs the packets, the drain fills in each one's sequence
number, pool and drops (the first 32 bytes, written into the datagram being built) and adds
the rest as it lies in the ring to the datagram, which goes out as one ``sendmsg`` of those
pieces (``DatagramAssembler.add_pieces``): nothing of the sample is decoded or copied
in Python.  With an enricher active the same records are read back into the flow path's
usual entry (``emit``) and encoded there with the enrichers' records.

Ring sizing (REFERENCE.md section 9): a record is 8 bytes of ring header and the sample,
92 bytes plus the header bytes (228 with the default 128).  ``RING_BYTES`` is 2 MB: 60 ms of
the agent not draining at 150 k samples/s of 128-byte headers, 85 ms with 64-byte packets;
a sample the full ring refuses counts as a drop of that interface, reported in the flow
samples' ``drops``.  The kernel maps the data area twice in a row and populates the mapping
at once, so the ring shows as 4 MB of the agent's resident (file) memory although it exists
once, in the kernel: the ring is the agent's largest single cost in memory, hence no larger.

Per-CPU map look-ups return one value per *possible* CPU, summed here.  The counters are
read once per drain, after the producer position, so that every drained sample's packet is
already counted; the samples of one drain get pools spread over the packets counted since the
previous reading by their place in the ring, strictly increasing per interface, the last one
equal to the count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mmap
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hsflowd_py.bpf import (
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
    Map,
    RingBuffer,
    possible_cpus,
)
from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, DIRECTION_UNKNOWN

if TYPE_CHECKING:
    from hsflowd_py.flow_path import EncodedFlows

from . import ebpf_build, ebpf_core, wire
from .interfaces import Tap
from .sampler import Emit, Sampler, SamplerError
from .tc import TcHooks

log = logging.getLogger("hsflowd.pcap")

SOURCE = Path(__file__).with_name("sampler.bpf.c")
BUILDER = ebpf_build.__file__
"""The build process's script; a test points it at one that dies without replying."""
HEADER_MAX = 256
RING_BYTES = 2 << 20
DRAIN_S = 0.01
CLOCK_S = 1.0
"""How often the kernel's offset from CLOCK_MONOTONIC to the epoch (for 0:1043) is set again."""
BUILD_TIMEOUT_S = 120.0
LOADERS = ("libbpf", "bcc")
"""In the order tried; ``HSFLOWD_PY_EBPF_LOADER`` picks one."""

_CONFIG = struct.Struct("=II6sBBB3x")
"""struct tap_config: rate, header_bytes, mac, check_source, ethernet, loopback."""
_COUNTS = struct.Struct("=QQQ")
"""struct tap_counts: packets in, packets out, drops."""
_RECORD = struct.Struct(">I4x8I")
"""A ring record: its header's first word (native order; only its busy and discard bits are used: the
length is the sample's own, kept in its second word plus 8), then ``wire.PATCHED``."""
_BUSY, _DISCARD = (
    (BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT)
    if sys.byteorder == "big"
    else (socket.ntohl(BPF_RINGBUF_BUSY_BIT), socket.ntohl(BPF_RINGBUF_DISCARD_BIT))
)
"""The busy and discard bits of the header's first word as ``_RECORD`` (big-endian) reads it."""
_WIRE = struct.Struct(">19I")
"""A sample's words up to its header bytes (``wire.HEAD_BYTES``): head, input, output, 0:1's fixed words."""
_TIMESTAMP = struct.Struct(">8xQ")
_KEY = struct.Struct("=I")
_CLOCK = struct.Struct("=Q")


class _Loaded:
    """What a loader handed over: program and map descriptors (in ``ebpf_build.FDS`` order), the maps'
    sizes, and which loader it was."""

    def __init__(self, maps: dict[str, Any], fds: list[int], loader: str) -> None:
        by_name = dict(zip(ebpf_build.FDS, fds, strict=True))
        self.ingress, self.egress = by_name["hsflowd_ingress"], by_name["hsflowd_egress"]
        self.maps = maps
        self.fds = fds
        self.loader = loader
        self.config, self.counts, self.samples = by_name["config"], by_name["counts"], by_name["samples"]
        self.clock = by_name["clock"]

    def close(self) -> None:
        for fd in self.fds:
            socket.close(fd)


def _no_reply(returncode: int | None, stderr: bytes) -> SamplerError:
    """The build process ended without a reply (LLVM crashed, the OOM killer, a fault in its own error
    handler): say how it ended and its last words, so that the fallback's log line explains itself."""
    if returncode is None or returncode >= 0:
        how = f"exit status {returncode}"
    else:
        try:
            how = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"killed by signal {-returncode}"
    lines = stderr.decode(errors="replace").strip().splitlines()
    last = f": {lines[-1].strip()}" if lines else ""
    return SamplerError(f"the eBPF build process ended without replying ({how}){last}")


async def build() -> _Loaded:
    """Compile and load the programs in a child process; raises SamplerError saying why not."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cflags = [f"-I{SOURCE.parent}", f"-DHEADER_MAX={HEADER_MAX}", f"-DRING_PAGES={RING_BYTES // mmap.PAGESIZE}"]
    cflags.append("-DNO_BPF_LOOP")  # bcc cannot pass bpf_loop its callback
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            BUILDER,
            str(theirs.fileno()),
            str(SOURCE),
            *cflags,
            pass_fds=[theirs.fileno()],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        theirs.close()
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), BUILD_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SamplerError(f"compiling the eBPF program took more than {BUILD_TIMEOUT_S:.0f} s") from None
        ours.setblocking(False)
        try:
            message, fds, _, _ = socket.recv_fds(ours, 65536, len(ebpf_build.FDS))
        except BlockingIOError:  # a process the child started still holds its end
            message, fds = b"", []
    finally:
        theirs.close()
        ours.close()
    if not message:  # end of stream: the child exited without sending anything
        raise _no_reply(proc.returncode, stderr)
    try:
        reply = json.loads(message)
    except ValueError:
        for fd in fds:
            socket.close(fd)
        raise SamplerError(f"the eBPF build process sent an unreadable reply: {message[:80]!r}") from None
    if not reply.get("ok"):
        for fd in fds:
            socket.close(fd)
        compiler = [x.strip() for x in stderr.decode(errors="replace").splitlines() if "error:" in x]
        raise SamplerError("; ".join([reply.get("error", "unknown error"), *compiler[:1]]))
    if len(fds) != len(ebpf_build.FDS):
        for fd in fds:
            socket.close(fd)
        raise SamplerError(f"the eBPF build process sent {len(fds)} descriptors, expected {len(ebpf_build.FDS)}")
    return _Loaded(reply["maps"], fds, "bcc")


async def load() -> _Loaded:
    """The programs through the first loader that works (``LOADERS``).  One log line says which loader
    it was and, as a warning, why each one before it was not; when none works, SamplerError carries
    every loader's reason in that order (the pcap module logs it as it falls back to classic BPF)."""
    wanted = os.environ.get("HSFLOWD_PY_EBPF_LOADER", "")
    loaders = [wanted] if wanted in LOADERS else list(LOADERS)
    if wanted and wanted not in LOADERS:
        log.warning("pcap: HSFLOWD_PY_EBPF_LOADER=%s is not one of %s; trying each", wanted, ", ".join(LOADERS))
    failures = []
    for loader in loaders:
        try:
            if loader == "libbpf":
                loaded = _Loaded(*ebpf_core.load(RING_BYTES), loader)
                how = f"its BPF object {ebpf_core.OBJECT.name} loaded through libbpf"
            else:
                loaded = await build()
                how = "compiled and loaded by bcc"
        except SamplerError as e:
            failures.append(f"{loader}: {e}")
            continue
        if failures:
            log.warning("pcap: the eBPF sampler is %s (%s)", how, "; ".join(failures))
        else:
            log.info("pcap: the eBPF sampler is %s", how)
        return loaded
    raise SamplerError("; ".join(failures))


class _TapState:
    """An open interface: its settings, whether its clsact qdisc is ours, its running totals."""

    __slots__ = ("before", "created_qdisc", "drops", "last", "pool", "spread", "tap")

    def __init__(self, tap: Tap, created_qdisc: bool) -> None:
        self.tap = tap
        self.created_qdisc = created_qdisc
        self.pool = 0
        self.drops = 0
        self.before = 0
        self.spread = 0
        self.last = 0
        """The last sample's pool."""


class EbpfSampler(Sampler):
    """tc eBPF on every interface, one ring buffer for all, drained on a timer."""

    kind = "ebpf"

    def __init__(self, emit: Emit, root: Path, loaded: _Loaded, flows: EncodedFlows | None = None) -> None:
        self.emit = emit
        self.flows = flows
        """Where samples go as the kernel wrote them; None: always through ``emit``."""
        self.loaded = loaded
        maps = loaded.maps
        self.config = Map(loaded.config, maps["config"]["key_size"], maps["config"]["value_size"])
        self.counts = Map(
            loaded.counts, maps["counts"]["key_size"], maps["counts"]["value_size"], per_cpu=possible_cpus(root)
        )
        self.ring = RingBuffer(loaded.samples, maps["samples"]["max_entries"])
        self.tc = TcHooks()
        self.taps: dict[int, _TapState] = {}
        self.samples = 0
        self.read_errors = 0
        self.clock = Map(loaded.clock, maps["clock"]["key_size"], maps["clock"]["value_size"])
        self._clock_set = 0.0
        self._set_clock()
        self.loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self.loop.call_later(DRAIN_S, self._tick)

    @classmethod
    async def create(cls, emit: Emit, root: Path, flows: EncodedFlows | None = None) -> EbpfSampler:
        loaded = await load()
        try:
            return cls(emit, root, loaded, flows)
        except BaseException:
            loaded.close()
            raise

    # ------------------------------------------------------------ interfaces

    def _configure(self, tap: Tap) -> None:
        mac = tap.mac if tap.ethernet and tap.mac else b""
        value = _CONFIG.pack(
            tap.sampling_rate, min(tap.header_bytes, HEADER_MAX), mac, 1 if mac else 0, tap.ethernet, tap.loopback
        )
        self.config.update(_KEY.pack(tap.ifindex), value)

    def open(self, tap: Tap) -> None:
        key = _KEY.pack(tap.ifindex)
        try:
            self.counts.update(key, _COUNTS.pack(0, 0, 0))
            self._configure(tap)
            created = self.tc.attach(tap.ifindex, self.loaded.ingress, self.loaded.egress)
        except OSError as e:
            self.config.delete(key)
            self.counts.delete(key)
            raise SamplerError(e.strerror or str(e)) from None
        self.taps[tap.ifindex] = _TapState(tap, created)

    def update(self, tap: Tap) -> None:
        state = self.taps.get(tap.ifindex)
        if state is not None:
            state.tap = tap
            self._configure(tap)

    def close(self, ifindex: int) -> None:
        self._drain()
        state = self.taps.pop(ifindex, None)
        if state is None:
            return
        self.tc.detach(ifindex, state.created_qdisc)
        key = _KEY.pack(ifindex)
        self.config.delete(key)
        self.counts.delete(key)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for ifindex in list(self.taps):
            self.close(ifindex)
        self.tc.close()
        self.ring.close()
        self.loaded.close()

    def status(self) -> dict[str, int]:
        return {
            "interfaces": len(self.taps),
            "samples": self.samples,
            "drops": sum(s.drops for s in self.taps.values()),
            "read_errors": self.read_errors,
        }

    # ------------------------------------------------------------ the hot path

    def _tick(self) -> None:
        try:
            self._drain()
        except Exception:  # one bad drain must not stop sampling
            self.read_errors += 1
            if self.read_errors == 1:
                log.exception("pcap: draining the eBPF ring failed (further failures counted)")
        finally:
            if self._timer is not None:
                self._timer = self.loop.call_later(DRAIN_S, self._tick)

    def _set_clock(self) -> None:
        """The offset the kernel adds to its CLOCK_MONOTONIC reading for a sample's time since the epoch."""
        self._clock_set = time.monotonic()
        self.clock.update(_KEY.pack(0), _CLOCK.pack(time.time_ns() - time.monotonic_ns()))

    def _read_totals(self) -> None:
        """Fold every CPU's counters of each interface into its pool and drop totals."""
        for ifindex, state in self.taps.items():
            values = self.counts.lookup(_KEY.pack(ifindex))
            if values is None:
                continue
            packets = drops = 0
            for raw in values:
                rx, tx, lost = _COUNTS.unpack_from(raw)
                packets += rx + tx
                drops += lost
            state.before, state.spread = state.pool, packets - state.pool
            state.pool, state.drops = packets, drops

    def _drain(self) -> None:
        """Everything the kernel has written so far: into the datagram as it lies in the ring, or,
        while an enricher needs the packets (or there is no flow path), through ``emit``."""
        ring = self.ring
        cons = ring.consumer_pos[0]
        prod = ring.producer_pos[0]
        if cons == prod:
            return
        self._read_totals()
        if time.monotonic() - self._clock_set >= CLOCK_S:
            self._set_clock()
        flows = self.flows if self.flows is not None and self.flows.direct else None
        first, span = cons, prod - cons
        m, view, taps, record = ring.data_map, ring.view, self.taps, _RECORD.unpack_from
        mask, base, pack, head = ring.mask, ring.data_offset + BPF_RINGBUF_HDR_SZ, wire.PATCHED.pack, wire.PATCHED.size
        room = flows.room() if flows is not None else 0
        pieces: list[Any] = []  # of the samples that fit in the datagram being built, and their bytes
        count = size = 0
        # the interface of the last record, and its running values as locals (most runs are of one interface)
        current, state, seq, last, before, spread, drops = -1, None, 0, 0, 0, 0, 0
        samples = 0
        try:
            while cons < prod:
                pos = base + (cons & mask)
                bits, tag, body, _, ds_class, ifindex, rate, _, _ = record(m, pos - BPF_RINGBUF_HDR_SZ)
                if bits & _BUSY:
                    break
                cons += body + 23 & ~7  # ring header, sample (8 + body), padded to 8
                if bits & _DISCARD:
                    continue
                if ifindex != current:
                    if state is not None:
                        state.last = last
                        if flows is not None:
                            flows.set_sequence(current, seq)
                    state = taps.get(ifindex)
                    if state is None:
                        current = -1
                        continue
                    current, seq, last = ifindex, flows.sequence(ifindex) if flows is not None else 0, state.last
                    before, spread, drops = state.before, state.spread, state.drops
                pool = before + spread * (cons - first) // span
                if pool <= last:
                    pool = last + 1
                last = pool
                samples += 1
                if flows is None:
                    self._emit_record(pos, ifindex, rate, pool, drops)
                    continue
                if size + body + 8 > room and (count or flows.pending()):  # the datagram is full
                    flows.add(pieces, count, size)
                    room = flows.send()
                    pieces, count, size = [], 0, 0
                seq = seq + 1 & 0xFFFFFFFF
                pieces += (
                    pack(tag, body, seq, ds_class, ifindex, rate, pool & 0xFFFFFFFF, drops & 0xFFFFFFFF),
                    view[pos + head : pos + 8 + body],
                )
                count += 1
                size += body + 8
        finally:  # a record that failed is not read again
            if state is not None:
                state.last = last
                if flows is not None:
                    flows.set_sequence(current, seq)
            if flows is not None:  # the datagram being built, not an emit
                flows.add(pieces, count, size)
                flows.keep()  # before the kernel may write over them
            ring.consumer_pos[0] = cons
            self.samples += samples

    def _emit_record(self, pos: int, ifindex: int, rate: int, pool: int, drops: int) -> None:
        """A sample read back from its wire form, for the flow path's usual entry."""
        m = self.ring.data_map
        w = _WIRE.unpack_from(m, pos)
        inp, out, protocol, frame, hlen = w[9], w[11], w[15], w[16], w[18]
        direction = DIRECTION_IN if inp == ifindex else DIRECTION_OUT if out == ifindex else DIRECTION_UNKNOWN
        start = pos + wire.HEAD_BYTES
        (timestamp,) = _TIMESTAMP.unpack_from(m, start + (hlen + 3 & ~3))
        self.emit(ifindex, rate, pool, drops, direction, frame, self.ring.view, start, hlen, timestamp, protocol)
