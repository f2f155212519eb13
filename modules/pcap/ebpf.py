"""The eBPF sampler: one tc program per direction on each interface (tcx where the kernel has it,
``tc.py``), samples through a BPF ring buffer.

``sampler.bpf.h`` counts every packet per interface (the true sample pool), keeps 1 in N and
writes it, numbered, to a ring buffer, waking the agent only once per ``WAKE_BYTES`` of samples
written; the agent drains the ring then, and ``DRAIN_S`` seconds after a drain when no wake-up
came meanwhile, for the samples of quiet periods (the timer is set again by every drain, so
under traffic it never fires).  When that quiet-period drain finds the ring empty, the agent
sleeps until the kernel's next sample wakes it (``WAKE_ASLEEP``), with only a slow timer
(``ASLEEP_S``) as a bound, so that an idle agent is not woken ten times a second for nothing.
On this project's machines a wake-up of the agent costs 150-300 µs of its CPU whatever it does
(the timer, the scheduler, the hypervisor, an interpreter whose caches went cold), as much as
sending 30-60 samples: wake-ups are the largest cost the agent can still cut.

Loading, in this order (``load``), each failure logged with its reason:

1. the BPF object built with the package, through libbpf in this process (``ebpf_core.py``):
   no compiler, no kernel headers, no child process; on a thread of its own, as the kernel's
   verifier takes ~0.8 s, which the loop (sampling the interfaces already open, on a reload)
   would stall for; an agent stopped meanwhile closes what the thread hands back;
2. bcc, for hosts without libbpf or the object: a short-lived child process
   (``ebpf_build.py``) compiles the program against the running kernel's headers with LLVM,
   hands the loaded programs and maps over as file descriptors and exits, so the agent never
   holds LLVM's ~130 MB;
3. when neither works the pcap module falls back to classic BPF.

``HSFLOWD_PY_EBPF_LOADER=libbpf`` or ``=bcc`` in the agent's environment allows only that
loader (benchmarks and tests compare them).  Either way the agent keeps the same descriptors:
the two programs, the ring buffer, two small hash maps and two one-entry arrays (the clock, the
bytes of samples written); libbpf's object has three more (``ebpf_core.DATAGRAM_FDS``): the program
``hsflowd_flush``, the ring of datagrams and the map ``assembly``.

Samples come out of the kernel as the flow samples the agent sends, complete, sequence number,
pool and drops included (``sampler.bpf.h``, ``wire.py``).  While no enricher needs the packets
(``EncodedFlows.direct``), libbpf's object builds whole datagrams in the kernel (``_assemble``):
samples go, in the order of their numbers, into the datagram being built, which goes to a ring of
its own (``DATAGRAM_RING_BYTES``) when the next sample would not fit in the agent's datagram.  The
drain then reads one record per datagram and hands it to the kernel where it lies, behind the agent's
header, a drain's datagrams in one ``sendmmsg`` (``_drain_datagrams``, ``EncodedFlows.send_in_place``:
no copy in Python; a capture on the sending host sees each datagram as a packet): nothing of a
sample is read in Python.  Against cutting the same samples out of the ring of samples in Python
(below) this took ~25% off the agent's CPU a sample (README, Benchmarks): a sample is no longer read
on the agent's CPU after the kernel wrote it on another (three cold cache lines a sample).  A
datagram being built while the traffic pauses goes out when the quiet-period drain runs the program
``hsflowd_flush`` (BPF_PROG_TEST_RUN), or at once for an agent asleep; it then joins the datagram the
agent builds, so that samples of a quiet hour share datagrams as before.  A full datagram that cannot
go yet (the ring of datagrams nearly full: the agent is behind; or its other half still being written
out by a CPU held up) takes the next samples past the agent's room, and the drain cuts it at its
samples' ends into datagrams within room (``_within``): no sample leaves the order of its number.

With bcc's build (the fallback for hosts without libbpf, left as it was: the kernel's datagrams need
a spin lock in a map and functions the verifier walks on their own, not tried with bcc 0.26), and
for the samples an enricher leaves as they are, the
drain cuts the ring of samples into datagram-sized runs (``_cut``): a datagram's samples are copied
out of the ring as one piece by a single struct unpacking (records lie at a fixed stride), and the
full datagrams of a drain go out together (``EncodedFlows.send_alone``, one ``sendmmsg``), with no
Python step per sample.
With an enricher active the same records are read back into
the flow path's usual entry (``emit``), with the kernel's sequence number, and encoded there with
the enrichers' records, unless the lone enricher knows its records from the header at once, as
the tcp module does for a socket read a moment ago: then the sample stays as the kernel wrote it,
its records appended, or cut as above when it has none (``_hand_over``).  Both ways number
an interface's samples alike, so turning an enricher on or off leaves no gap.  The kernel's
numbers restart when the interface is opened again (its counters are created anew), which is
what ``ModuleContext.restart_flow_sequence`` means for the other samplers.

Ring sizing (REFERENCE.md section 9): the ring reserves only sizes the verifier knows, so each
record has room for the largest sample, padded to 512 bytes with its ring header (``_STEP``):
records follow one another at that fixed stride, which the drain reads in bulk (``_read``), and
none lies across the ring's end, so the agent maps the data area once (the kernel offers it twice
in a row for records that do) and it counts once in the agent's resident memory, populated at
once: the ring is the agent's largest single cost in memory, hence no larger.  ``RING_BYTES`` is
2 MB: 4,096 samples, of which a wake-up comes after at most 623 (56 KB of the smallest samples;
377 of 64-byte packets): the other 3,473 are 24 ms at 145 k samples/s (1-in-1 of 64-byte packets
at this machine's veth rate) for the agent to answer.  Waking it less often would save CPU but
send larger bursts: 1,024 samples were ~150 datagrams at once, more than a collector's default
socket buffer holds (pmacct lost 2% of them in test_pcap_gso_wire); 56 KB are ~42.  A sample the
full ring refuses counts as a drop of that interface, reported in the flow samples' ``drops``.
"""

from __future__ import annotations

import array
import asyncio
import bisect
import functools
import itertools
import logging
import mmap
import operator
import os
import select
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
    run_program,
)
from hsflowd_py.enrichers import NO_RECORDS
from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, DIRECTION_UNKNOWN, HEADER_ETHERNET
from hsflowd_py.tasks import owned_by_thread

if TYPE_CHECKING:
    from hsflowd_py.enrichers import Records
    from hsflowd_py.flow_path import EncodedFlows

from . import ebpf_build, ebpf_core, wire
from .interfaces import Tap
from .sampler import FlowEntry, OpenFlows, Sampler, SamplerError
from .tc import TcHooks

log = logging.getLogger("hsflowd.pcap")

SOURCE = Path(__file__).with_name("sampler.bpf.c")
BUILDER = ebpf_build.__file__
"""The build process's script; a test points it at one that dies without replying."""
HEADER_MAX = 256
RING_BYTES = 2 << 20
DATAGRAM_RING_BYTES = 512 << 10
"""The ring of datagrams built in the kernel: ~360 of 1,400 bytes, of which a wake-up comes after ~40;
mapped twice in a row (a datagram may lie across its end), so 1 MB of the agent's resident memory."""
WAKE_BYTES = 56 << 10
"""As ``sampler.bpf.h`` defines it: the kernel wakes the agent once per this many bytes of samples written."""
SAMPLE_BYTES_MIN = wire.HEAD_BYTES + wire.TIMESTAMP_BYTES
"""No sample the program writes is smaller (one with no header bytes): ``WAKE_BYTES`` are at most
``WAKE_BYTES // SAMPLE_BYTES_MIN`` samples."""
DRAIN_S = 0.1
"""How long after a drain the timer drains again: how long a sample may wait in the ring while less than
``WAKE_BYTES`` are written (no longer: tcp {} answers from socket states at most 100 ms old, and a
socket may close meanwhile)."""
ASLEEP_S = 1.0
"""How long after a quiet-period drain that found the ring empty the timer drains again: the bound on a
sample's wait should the kernel's wake-up for it not come (the flag's update failed, or was seen late)."""
CLOCK_S = 1.0
"""How often the kernel's offset from CLOCK_MONOTONIC to the epoch (for 0:1043) is set again."""
BUILD_TIMEOUT_S = 120.0
LOAD_THREAD = "pcap-bpf-load"
"""The thread libbpf loads the object on, off the loop (a test watches for it)."""
WAKE_ASLEEP = 1
"""As ``sampler.bpf.h`` defines it: the slot of the map ``wake`` that, set, has the next sample wake the agent."""
LOADERS = ("libbpf", "bcc")
"""In the order tried; ``HSFLOWD_PY_EBPF_LOADER`` picks one."""

_CONFIG = struct.Struct("=II6sBBB3x")
"""struct tap_config: rate, header_bytes, mac, check_source, ethernet, loopback."""
_COUNTS = struct.Struct("=QQQ")
"""struct tap_counts: the pool (packets seen), drops, the last sequence number."""
_STEP = 512
"""A ring record's bytes with its ring header (RECORD_SLOT of ``sampler.bpf.h``): room for the largest
sample (the ring reserves only sizes the verifier knows), padded to a power of two so that no record
lies across the ring's end, which is therefore mapped once."""
_RECORD_BYTES = _STEP - BPF_RINGBUF_HDR_SZ
"""sizeof(struct record): the length in the ring header of every committed record."""
_WORDS = _STEP // 4
"""The stride of records in 32-bit words: a record's ring header word, its sample's length word and
source index are every ``_WORDS``th word from their first (``_drain``, ``_read``)."""
_SOURCE_WORD, _LENGTH_WORD = 6, 3
"""Where a sample's source index and length word are, in words from its record's ring header."""
_WIRE = struct.Struct(">19I")
"""A sample's words up to its header bytes (``wire.HEAD_BYTES``): head, input, output, 0:1's fixed words."""
_RATE_WORD, _PROTOCOL_WORD, _HLEN_WORD = 7, 17, 20
"""Where a sample's sampling rate, header protocol and header length are, in words from its record's ring
header (``_WIRE``'s words 5, 15 and 18)."""
_HEADER_AT = BPF_RINGBUF_HDR_SZ + wire.HEAD_BYTES
"""Where a sample's header bytes start, from its record's ring header."""
_TIMESTAMP = struct.Struct(">8xQ")
_DATAGRAM = struct.Struct("=IIIIII")
"""A datagram record of the ring datagrams: its ring header (length with the busy and discard bits, page
offset), then struct datagram's count, why, used and pad; the samples follow."""
_DATAGRAM_FLUSHED = 1
"""As ``sampler.bpf.h`` defines it: a datagram written before it was full (the agent asked, or slept)."""
_U32_WIRE = struct.Struct(">I")
"""A sample's length word, as on the wire."""
_ASSEMBLY = struct.Struct("=II")
"""struct assembly: the bytes of samples a datagram holds, and whether datagrams are built in the kernel."""
_KEY = struct.Struct("=I")
_U64 = struct.Struct("=Q")


def _committed(heads: list[int]) -> int:
    """How many records, of those whose ring headers' first words are ``heads``, precede the first
    still being written (busy): the reader stops there, as the kernel's order requires."""
    return next((i for i, head in enumerate(heads) if head & BPF_RINGBUF_BUSY_BIT), len(heads))


def _be_words(words: memoryview) -> list[int]:
    """Big-endian 32-bit words (read as native ones) as numbers."""
    values = array.array("I", words.tobytes())
    if sys.byteorder == "little":
        values.byteswap()
    return values.tolist()


def _within(body: memoryview, address: int, room: int) -> list[tuple[int, int, int]]:
    """A datagram's samples the kernel built past ``room`` bytes (it could not go: ``sampler.bpf.h``), at
    ``address``, cut at their ends into datagrams within ``room`` (a sample larger than that alone), each
    as its number of samples, where they start and their bytes."""
    out: list[tuple[int, int, int]] = []
    first = at = n = 0
    while at + 8 <= len(body):
        (length,) = _U32_WIRE.unpack_from(body, at + 4)
        if n and at + 8 + length - first > room:
            out.append((n, address + first, at - first))
            first, n = at, 0
        at += 8 + length
        n += 1
    if n:
        out.append((n, address + first, min(at, len(body)) - first))
    return out


@functools.lru_cache(maxsize=256)
def _samples(lengths: tuple[int, ...]) -> struct.Struct:
    """Reads samples of these length words (their sizes less their tag and length), one per record, from
    the first one's start: each as bytes."""
    sizes = [length + 8 for length in lengths]
    return struct.Struct("=" + "".join(f"{size}s{_STEP - size}x" for size in sizes[:-1]) + f"{sizes[-1]}s")


class _Loaded:
    """What a loader handed over: program and map descriptors (in ``ebpf_build.FDS`` order), the maps'
    sizes, and which loader it was."""

    def __init__(self, maps: dict[str, Any], fds: list[int], loader: str) -> None:
        names = ebpf_build.FDS + (ebpf_core.DATAGRAM_FDS if len(fds) > len(ebpf_build.FDS) else ())
        by_name = dict(zip(names, fds, strict=True))
        self.ingress, self.egress = by_name["hsflowd_ingress"], by_name["hsflowd_egress"]
        self.maps = maps
        self.fds = fds
        self.loader = loader
        self.config, self.counts, self.samples = by_name["config"], by_name["counts"], by_name["samples"]
        self.clock, self.wake = by_name["clock"], by_name["wake"]
        self.flush: int | None = by_name.get("hsflowd_flush")
        """The program that writes the datagram being built to the ring (None: bcc's build, which builds none)."""
        self.datagrams, self.assembly = by_name.get("datagrams"), by_name.get("assembly")

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
    import json  # here, not with the module: the libbpf path never reads JSON (#19 RSS)

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


def _load_core() -> _Loaded:
    """(On a thread of its own: the verifier takes most of a second, which the loop would stall for.)
    The object through libbpf."""
    return _Loaded(*ebpf_core.load(RING_BYTES, DATAGRAM_RING_BYTES), "libbpf")


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
                loaded = await owned_by_thread(_load_core, release=_Loaded.close, name=LOAD_THREAD)
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
    """An open interface: its settings, whether its clsact qdisc is ours."""

    __slots__ = ("created_qdisc", "tap")

    def __init__(self, tap: Tap, created_qdisc: bool) -> None:
        self.tap = tap
        self.created_qdisc = created_qdisc


class EbpfSampler(Sampler):
    """tc eBPF on every interface, one ring buffer for all, drained on a timer."""

    kind = "ebpf"

    def __init__(self, open_flows: OpenFlows, root: Path, loaded: _Loaded, flows: EncodedFlows | None = None) -> None:
        self.open_flows = open_flows
        self.flows = flows
        """Where samples go as the kernel wrote them; None: always through ``emit``."""
        self.loaded = loaded
        maps = loaded.maps
        self.config = Map(loaded.config, maps["config"]["key_size"], maps["config"]["value_size"])
        self.counts = Map(loaded.counts, maps["counts"]["key_size"], maps["counts"]["value_size"])
        self.ring = RingBuffer(loaded.samples, maps["samples"]["max_entries"], twice=False)
        self.tc = TcHooks()
        self.taps: dict[int, _TapState] = {}
        self.samples = 0
        self.kernel_datagrams = 0
        """Datagrams read as the kernel built them (``_drain_datagrams``)."""
        self.read_errors = 0
        self.clock = Map(loaded.clock, maps["clock"]["key_size"], maps["clock"]["value_size"])
        self.wake = Map(loaded.wake, maps["wake"]["key_size"], maps["wake"]["value_size"])
        self._clock_set = 0.0
        self._set_clock()
        self._words = self.ring.view.cast("I")
        self.datagrams: RingBuffer | None = None
        """Datagrams built in the kernel (libbpf's object; None with bcc's build)."""
        self.assembly: Map | None = None
        if loaded.datagrams is not None and loaded.assembly is not None:
            self.datagrams = RingBuffer(loaded.datagrams, maps["datagrams"]["max_entries"])
            self.assembly = Map(loaded.assembly, maps["assembly"]["key_size"], maps["assembly"]["value_size"])
        self._room = 0
        """The bytes of samples the kernel's datagrams hold, as last set (0: it builds none)."""
        self.loop = asyncio.get_running_loop()
        self._wake = select.epoll()
        """The ring's wake-ups, edge-triggered: the ring reads as ready while it holds anything."""
        self._wake.register(loaded.samples, select.EPOLLIN | select.EPOLLET)
        if loaded.datagrams is not None:
            self._wake.register(loaded.datagrams, select.EPOLLIN | select.EPOLLET)
        self.loop.add_reader(self._wake.fileno(), self._woken)
        self._timer: asyncio.TimerHandle | None = self.loop.call_later(DRAIN_S, self._tick)
        if flows is not None:
            flows.watch(self._drain_now)  # datagrams built in the kernel or not (``_assemble``) from a reload on

    @classmethod
    async def create(cls, open_flows: OpenFlows, root: Path, flows: EncodedFlows | None = None) -> EbpfSampler:
        loaded = await load()
        try:
            return cls(open_flows, root, loaded, flows)
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
        self._flush_kernel()
        self._drain()
        state = self.taps.pop(ifindex, None)
        if state is None:
            return
        self.tc.detach(ifindex, state.created_qdisc)
        self._flush_kernel()
        self._drain()  # what it wrote since: records passed over, samples in datagrams sent (numbered before the end)
        key = _KEY.pack(ifindex)
        self.config.delete(key)
        self.counts.delete(key)

    def stop(self) -> None:
        if self.flows is not None:
            self.flows.unwatch(self._drain_now)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.loop.remove_reader(self._wake.fileno())
        self._wake.close()
        for ifindex in list(self.taps):
            self.close(ifindex)
        self.tc.close()
        self._words.release()
        self.ring.close()
        if self.datagrams is not None:
            self.datagrams.close()
        self.loaded.close()

    def status(self) -> dict[str, int]:
        return {
            "interfaces": len(self.taps),
            "samples": self.samples,
            "kernel_datagrams": self.kernel_datagrams,
            "drops": sum(self._drops(ifindex) for ifindex in self.taps),
            "read_errors": self.read_errors,
        }

    def _drops(self, ifindex: int) -> int:
        values = self.counts.lookup(_KEY.pack(ifindex))
        return _COUNTS.unpack(values[0])[1] if values else 0

    # ------------------------------------------------------------ the hot path

    def _tick(self) -> None:
        """The quiet-period drain: ``DRAIN_S`` after the last drain, whichever way it came, with the datagram
        the kernel is building (``_flush_kernel``); with the rings empty, the agent sleeps until the kernel's
        next sample wakes it (``_asleep``), the timer set ``ASLEEP_S`` later."""
        self._flush_kernel()
        if self._rings_empty() and self._asleep():
            self._rearm(ASLEEP_S)
            return
        self._drain_now()
        self._rearm()

    def _asleep(self) -> bool:
        """Ask the kernel to wake the agent with its next sample (``WAKE_ASLEEP``); False when a sample came
        meanwhile (written before the request was seen: it would wake nobody)."""
        self.wake.update(_KEY.pack(WAKE_ASLEEP), _U64.pack(1))
        self._flush_kernel()
        return self._rings_empty()

    def _rings_empty(self) -> bool:
        """Nothing written since the last drain (a record still being written counts as something)."""
        return all(ring.consumer_pos[0] == ring.producer_pos[0] for ring in (self.ring, self.datagrams) if ring)

    def _flush_kernel(self) -> None:
        """Have the kernel write the datagram it is building to the ring (its program ``hsflowd_flush``)."""
        if self.loaded.flush is not None:
            try:
                run_program(self.loaded.flush)
            except OSError as e:  # the datagram goes when full, or at the next try
                self.read_errors += 1
                if self.read_errors == 1:
                    log.warning("pcap: flushing the kernel's datagram failed (further failures counted): %s", e)

    def _woken(self) -> None:
        """The kernel's wake-up (``WAKE_BYTES`` more sample bytes written), through the edge-triggered epoll."""
        self._wake.poll(0)  # taken: the next wake-up is the next edge
        self._drain_now()
        self._rearm()

    def _rearm(self, delay: float = DRAIN_S) -> None:
        """The timer set ``delay`` after this drain (``DRAIN_S``: no sample waits in the ring longer;
        ``ASLEEP_S`` once the ring was found empty and the kernel will wake the agent), and while the
        kernel wakes the agent more often than that the timer never fires: each timer that fires is a
        wake-up of its own (~150-300 µs of the agent's CPU here), cancelling one costs ~2 µs."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self.loop.call_later(delay, self._tick)

    def _drain_now(self) -> None:
        try:
            self._drain()
        except Exception:  # one bad drain must not stop sampling
            self.read_errors += 1
            if self.read_errors == 1:
                log.exception("pcap: draining the eBPF ring failed (further failures counted)")

    def _set_clock(self) -> None:
        """The offset the kernel adds to its CLOCK_MONOTONIC reading for a sample's time since the epoch."""
        self._clock_set = time.monotonic()
        self.clock.update(_KEY.pack(0), _U64.pack(time.time_ns() - time.monotonic_ns()))

    def _drain(self) -> None:
        """Everything the kernel has written so far to both rings, the older ring first: the one it wrote to
        before datagrams began or stopped being built in the kernel (``_assemble``)."""
        if time.monotonic() - self._clock_set >= CLOCK_S:
            self._set_clock()
        if self._assemble():
            self._drain_samples()
            self._drain_datagrams()
        else:
            self._drain_datagrams()
            self._drain_samples()

    def _assemble(self) -> bool:
        """Whether datagrams are built in the kernel, as the flow path now wants: while samples may go
        straight into datagrams, a datagram holding as many bytes of samples as an empty one of the agent's.
        Turned off, the datagram being built is written out at once."""
        flows = self.flows
        room = flows.capacity() if self.assembly is not None and flows is not None and flows.direct else 0
        if room != self._room:
            assert self.assembly is not None
            self.assembly.update(_KEY.pack(0), _ASSEMBLY.pack(room, 1 if room else 0))
            if not room:
                self._flush_kernel()
            self._room = room
        return room > 0

    def _drain_datagrams(self) -> None:
        """The datagrams the kernel built, up to the first still being written: a full one sent as it lies
        in the ring behind the agent's header, one that was written before it was full (the agent's
        quiet-period drain asked, or slept) added to the datagram the agent is building, where later samples
        may join it; with no flow path, passed over."""
        ring = self.datagrams
        if ring is None:
            return
        cons = ring.consumer_pos[0]
        prod = ring.producer_pos[0]
        if cons == prod:
            return
        flows = self.flows
        if flows is not None:
            flows.room()  # the uptime in this drain's datagrams
        m, view, base, mask = ring.data_map, ring.view, ring.data_offset, ring.mask
        head = _DATAGRAM.size
        body_at = ring.address + head
        room = flows.capacity() if flows is not None else 0
        full: list[tuple[int, int, int]] = []
        try:
            while cons < prod:
                pos = base + (cons & mask)
                length, _, count, why, used, _ = _DATAGRAM.unpack_from(m, pos)
                if length & BPF_RINGBUF_BUSY_BIT:
                    break
                cons += (length & ~BPF_RINGBUF_DISCARD_BIT) + BPF_RINGBUF_HDR_SZ + 7 & ~7
                if length & BPF_RINGBUF_DISCARD_BIT or flows is None:
                    continue
                if used > room:  # built past room while it could not go (sampler.bpf.h)
                    full += _within(view[pos + head : pos + head + used], body_at + pos, room)
                elif why != _DATAGRAM_FLUSHED:
                    full.append((count, body_at + pos, used))
                else:
                    if full:
                        flows.send_in_place(full)
                        full = []
                    flows.add_joined(view[pos + head : pos + head + used], count)
                self.samples += count
                self.kernel_datagrams += 1
        finally:  # the records are read: sent, or copied into the agent's datagram
            if full and flows is not None:
                flows.send_in_place(full)
            ring.consumer_pos[0] = cons

    def _drain_samples(self) -> None:
        """The samples the kernel wrote one by one, up to the first record still being written, in at most
        two runs of records (the ring's end may fall between two)."""
        ring = self.ring
        cons = ring.consumer_pos[0]
        prod = ring.producer_pos[0]
        if cons == prod:
            return
        read = 0
        try:
            while cons + read < prod:
                at = (cons + read) & ring.mask
                n = min(prod - cons - read, ring.size - at) // _STEP
                start = ring.data_offset + at
                words = self._words[start >> 2 : (start >> 2) + n * _WORDS]
                heads = words[0::_WORDS].tolist()
                ready = n if heads.count(_RECORD_BYTES) == n else _committed(heads)
                read += ready * _STEP  # before they are read: a record that fails is not read again
                self._read(start, words, heads[:ready])
                if ready < n:
                    break
        finally:  # records that failed are not read again
            ring.consumer_pos[0] = cons + read

    def _read(self, start: int, words: memoryview, heads: list[int]) -> None:
        """The committed records from ``start`` on (``heads``: their ring headers' first words, ``words``
        their words): cut into datagrams as they lie in the ring (``_cut``), or, while an enricher
        needs the packets (or there is no flow path), read back through ``emit``.  Records discarded
        or of an interface closed since are passed over."""
        n = len(heads)
        clean = heads.count(_RECORD_BYTES) == n
        sources = _be_words(words[_SOURCE_WORD::_WORDS])[:n]
        flows = self.flows if self.flows is not None and self.flows.direct else None
        all_good = clean and set(sources) <= self.taps.keys()
        if flows is not None and all_good:
            self._cut(flows, start, _be_words(words[_LENGTH_WORD::_WORDS])[:n])
            return
        taps = self.taps
        good = (
            [True] * n
            if all_good
            else [head == _RECORD_BYTES and source in taps for head, source in zip(heads, sources, strict=False)]
        )
        lengths = _be_words(words[_LENGTH_WORD::_WORDS])
        if flows is None:
            self._hand_over(start, words, good, sources, lengths)
            return
        for kept, run in itertools.groupby(range(n), good.__getitem__):
            if kept:
                first, *rest = run
                self._cut(flows, start + first * _STEP, lengths[first : first + 1 + len(rest)])

    def _cut(self, flows: EncodedFlows, start: int, lengths: list[int]) -> None:
        """The samples of the records from ``start`` on, ``lengths`` their length words, to the flow
        path a datagram at a time: the hot path, in bulk operations (each datagram's last sample
        found by bisection of the running total, its samples copied out of the ring by one
        ``_samples`` unpacking: a few list items per sample, no Python step of its own)."""
        n = len(lengths)
        ring = self.ring.data_map
        total = list(itertools.accumulate(map(operator.add, lengths, itertools.repeat(8))))
        room, waiting = flows.room(), flows.pending()
        at = start + BPF_RINGBUF_HDR_SZ
        whole: list[tuple[int, tuple[bytes, ...]]] = []  # full datagrams, sent together
        i = used = 0
        try:
            while i < n:
                j = bisect.bisect_right(total, used + room, i)
                if j == i:  # the next sample does not fit
                    if waiting:
                        room, waiting = flows.send(), 0
                        continue
                    j = i + 1  # larger than an empty datagram: alone
                samples = _samples(tuple(lengths[i:j])).unpack_from(ring, at + i * _STEP)
                if j < n and not waiting:  # a whole datagram
                    whole.append((j - i, samples))
                else:
                    if whole:
                        flows.send_alone(whole)
                        whole = []
                    flows.add(samples)
                    room -= total[j - 1] - used
                    waiting += j - i
                used = total[j - 1]
                i = j
        finally:
            if whole:
                flows.send_alone(whole)
            self.samples += i

    def _hand_over(
        self, start: int, words: memoryview, good: list[bool], sources: list[int], lengths: list[int]
    ) -> None:
        """The ``good`` records from ``start`` on (``words`` theirs) while an enricher needs the packets: the
        lone enricher is asked for the records of the packets of each interface's run of records at once
        (``FlowEntry.records_at_once_many``); a sample whose records it knows goes as the kernel wrote it,
        with them appended (``add_encoded``), or, with none to add, in runs cut as on the direct path
        (``_cut``); any other is read back from its wire form into the flow path's usual entry (``emit``,
        with its number).  Samples keep their order."""
        n = len(good)
        if not n:  # the first record still being written
            return
        flows = self.flows
        m = self.ring.data_map
        view = self.ring.view
        rates = _be_words(words[_RATE_WORD::_WORDS])[:n]
        protocols = _be_words(words[_PROTOCOL_WORD::_WORDS])[:n]
        hlens = _be_words(words[_HLEN_WORD::_WORDS])
        if sources.count(sources[0]) == n and rates.count(rates[0]) == n and protocols.count(protocols[0]) == n:
            keys = [(sources[0], rates[0], protocols[0])] * n  # one interface (the common case): no step per sample
        else:
            keys = list(zip(sources, rates, protocols, strict=False))
        entries: dict[tuple[int, int, int], FlowEntry] = {}  # a drain runs within one turn: none changes
        known: list[Records | None] = []
        for key, run in itertools.groupby(keys):
            a = len(known)
            b = a + len(list(run))
            if not any(good[a:b]):
                known += [None] * (b - a)
                continue
            entry = entries.get(key)
            if entry is None:
                entry = entries[key] = self.open_flows(key[0], key[1], key[2] == HEADER_ETHERNET)
            at = start + a * _STEP
            known += entry.records_at_once_many(view[at : start + b * _STEP], _HEADER_AT, _STEP, hlens[a:b])
        nothing = map(operator.is_, known, itertools.repeat(NO_RECORDS))
        cut = list(map(operator.and_, good, nothing)) if flows is not None else [False] * n
        for nothing_to_add, run in itertools.groupby(range(n), cut.__getitem__):
            if nothing_to_add:
                assert flows is not None
                first, *rest = run
                self._cut(flows, start + first * _STEP, lengths[first : first + 1 + len(rest)])
                continue
            for i in run:
                if not good[i]:
                    continue
                pos = start + BPF_RINGBUF_HDR_SZ + i * _STEP
                entry = entries[keys[i]]
                records = known[i]
                if records is not None:
                    entry.add_encoded(m, pos, lengths[i] + 8, records)
                else:
                    self._emit_record(pos, sources[i], entry)
                self.samples += 1

    def _emit_record(self, pos: int, ifindex: int, entry: FlowEntry) -> None:
        """A sample read back from its wire form, for the flow path's usual entry (with its number)."""
        m = self.ring.data_map
        start = pos + wire.HEAD_BYTES
        w = _WIRE.unpack_from(m, pos)
        sequence, pool, drops, inp, out, frame, hlen = w[2], w[6], w[7], w[9], w[11], w[16], w[18]
        direction = DIRECTION_IN if inp == ifindex else DIRECTION_OUT if out == ifindex else DIRECTION_UNKNOWN
        (timestamp,) = _TIMESTAMP.unpack_from(m, start + (hlen + 3 & ~3))
        entry.emit(
            sample_pool=pool,
            drops=drops,
            direction=direction,
            frame_length=frame,
            header=self.ring.view,
            start=start,
            length=hlen,
            timestamp_ns=timestamp,
            sequence=sequence,
        )
