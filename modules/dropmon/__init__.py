"""dropmon { }: every packet the kernel drops, rate-limited, as sFlow discard samples (0:5).

The established agent reads the kernel's drop-monitor netlink channel (NET_DM), which needs
``CONFIG_NET_DROP_MONITOR``; many kernels, this project's among them, lack it.  What every kernel
since 5.17 has is the ``skb:kfree_skb`` tracepoint with the drop's reason (``enum
skb_drop_reason``), so this module attaches a BPF program there (``dropmon.bpf.c``, built with the
package and loaded through libbpf: no compiler, no kernel headers at run time; the few
``sk_buff`` fields it reads are relocated against the kernel's BTF).  Consumed packets go through
another tracepoint (consume_skb) and are never seen; NOT_DROPPED_YET and CONSUMED are refused in
the kernel as well.

The kernel does the rate limit (``limit`` a second, burst a tenth of it as the established agent's
quota) before copying anything, so a flood of drops costs the agent at most ``limit`` records a
second; the rest are counted per CPU and reported, as the established agent does, in each
sample's ``drops`` (cumulative).  The agent drains the ring every ``DRAIN_S``.

Each sample: data source 0:0 (one for the whole host, as the established agent), input the
interface the packet came in on (0x3FFFFFFF, internal, when this host sent it), output the one it
was leaving through (else 0, unknown); 0:1 with the packet's first bytes (Ethernet when the MAC
header is there, else its IPv4/IPv6 header), 0:1038 the function that dropped it (/proc/kallsyms,
read on a thread when a new one comes, as is the program loaded: the loop samples meanwhile),
0:1042 the kernel's reason name (``rn = off`` leaves it out), 0:1043 the time of the drop; the
discard code maps the reason as the established agent does (``reasons.py``).

``hide``: reasons whose names it matches are refused in the kernel (they use no part of the
limit); a function name it matches is dropped here, after the limit.  ``max``/``max_trip``: more
than ``max`` drops a second for ``max_trip`` seconds in a row stops the module (logged).  Keys for
NET_DM and hardware drops are accepted and do nothing (``settings.py``).

Without the permission (CAP_BPF, CAP_PERFMON or root), the kernel support (BTF, the tracepoint)
or libbpf, the module says why once and the agent runs on without it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import struct
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hsflowd_py import bpf_loader
from hsflowd_py.bpf import Map, RingBuffer, possible_cpus
from hsflowd_py.flow import HEADER_ETHERNET, HEADER_IPV4, HEADER_IPV6
from hsflowd_py.module import Module, register
from hsflowd_py.netns import in_new_thread
from hsflowd_py.privileges import Privileges
from hsflowd_py.sflow.records import (
    INTERNAL_PORT,
    ExtendedFunction,
    ExtendedLinuxReason,
    ExtendedTimestamp,
    Record,
    SampledHeader,
)
from hsflowd_py.sflow.samples import DiscardSample
from hsflowd_py.tasks import cancel, owned_by_thread

from .kallsyms import Kallsyms
from .reasons import NOT_DROPS, ReasonsError, drop_code, read_reasons
from .settings import DropmonSettings

if TYPE_CHECKING:
    from hsflowd_py.config import Settings
    from hsflowd_py.module_context import ModuleContext


log = logging.getLogger("hsflowd.dropmon")

OBJECT = bpf_loader.object_path(Path(__file__).parent, "dropmon")
"""The BPF object for this host's byte order; a test points it elsewhere."""
PROGRAM = "hsflowd_kfree_skb"
TRACEPOINT = "kfree_skb"
NAMES = (PROGRAM, "config", "bucket", "hidden", "counts", "drops")
HEADER_MAX = 256
LOAD_THREAD = "dropmon-bpf-load"
KALLSYMS_THREAD = "dropmon-kallsyms"
"""Where /proc/kallsyms is read (a thread started from the loop's: it needs CAP_SYSLOG, kept by it alone)."""
RING_BYTES = 1 << 20
"""Room for 3400 records: a drain's worth at the highest limit (10 000 a second), three times over."""
DRAIN_S = 0.1
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
FCS_BYTES = 4
SYMBOL_MAX = 64

_CONFIG = struct.Struct("=QQII")
"""struct dropmon_config: interval_ns, tolerance_ns, header_bytes."""
_COUNTS = struct.Struct("=QQQQ")
"""struct dropmon_counts: seen, hidden, suppressed, lost."""
_RECORD = struct.Struct("=I4xQQIIIIHHB3x")
"""Ring record header (length) then struct drop up to its header bytes."""
_KEY = struct.Struct("=I")


def bucket(limit: int) -> tuple[int, int]:
    """The kernel's token bucket for ``limit`` a second: ns per token and the tolerance of a burst of a
    tenth of the limit (at least one), as the established agent's quota refilled ten times a second."""
    interval = 1_000_000_000 // limit
    return interval, (max(limit // 10, 1) - 1) * interval


def interfaces(iif: int, ifindex: int) -> tuple[int, int]:
    """Input and output ifIndex of a dropped packet: where it came in (internal when this host sent
    it) and, when its device is another one, where it was going (else 0, unknown)."""
    if iif:
        return iif, ifindex if ifindex and ifindex != iif else 0
    return INTERNAL_PORT, ifindex


class _Loaded:
    """The program's descriptors and what reads them; ``link`` attached while not None."""

    def __init__(self, maps: dict[str, dict[str, int]], fds: list[int]) -> None:
        by_name = dict(zip(NAMES, fds, strict=True))
        self.fds = fds
        self.program = by_name[PROGRAM]
        self.config = Map(by_name["config"], 4, maps["config"]["value_size"])
        self.bucket = Map(by_name["bucket"], 4, maps["bucket"]["value_size"])
        self.hidden = Map(by_name["hidden"], 4, maps["hidden"]["value_size"])
        self.counts = Map(by_name["counts"], 4, maps["counts"]["value_size"], per_cpu=possible_cpus())
        self.ring = RingBuffer(by_name["drops"], maps["drops"]["max_entries"])
        self.link: int | None = None

    def totals(self) -> tuple[int, int, int, int]:
        """seen, hidden, suppressed, lost: summed over CPUs."""
        seen = hidden = suppressed = lost = 0
        for value in self.counts.lookup(_KEY.pack(0)) or []:
            a, b, c, d = _COUNTS.unpack_from(value)
            seen, hidden, suppressed, lost = seen + a, hidden + b, suppressed + c, lost + d
        return seen, hidden, suppressed, lost

    def detach(self) -> None:
        if self.link is not None:
            os.close(self.link)
            self.link = None

    def close(self) -> None:
        self.detach()
        self.ring.close()
        for fd in self.fds:
            os.close(fd)


def _close(opened: tuple[dict[int, str], str, _Loaded]) -> None:
    """What a load the agent stopped waiting for (stopped meanwhile) handed back: detached and closed."""
    opened[2].close()


@register
class Dropmon(Module):
    name = "dropmon"
    settings_type = DropmonSettings

    def __init__(self, context: ModuleContext, settings: Settings) -> None:
        super().__init__(context, settings)
        self.loaded: _Loaded | None = None
        self.reasons: dict[int, str] = {}
        self.kallsyms = Kallsyms(context.root)
        self.hide: re.Pattern[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_seen = 0
        self._flood_seconds = 0
        self._epoch_offset = 0

    @property
    def config(self) -> DropmonSettings:
        assert self.settings.dropmon is not None
        return self.settings.dropmon

    @classmethod
    def wanted(cls, settings: Settings) -> bool:
        """While the block asks for drops: ``start = off`` (or ``sw = off``, as the tracepoint sees only
        software drops) keeps the module stopped, and a reload (SIGHUP) that turns it on starts it,
        one that turns it off stops it, through the core's module life cycle."""
        s = settings.dropmon
        return s is not None and s.start and s.sw

    async def start(self) -> None:
        s = self.config
        try:
            self.reasons, where, self.loaded = await owned_by_thread(self._load, release=_close, name=LOAD_THREAD)
        except ReasonsError as e:
            log.warning("dropmon: not monitoring drops: %s", e)
            return
        except (bpf_loader.BpfError, OSError) as e:
            log.warning("dropmon: not monitoring drops (the agent runs on without it): %s", e)
            return
        log.info(
            "dropmon: BPF program on the skb:%s tracepoint (NET_DM is not used), loaded through libbpf from %s; "
            "%d drop reasons from %s; limit %d a second",
            TRACEPOINT, OBJECT.name, len(self.reasons), where, s.limit,
        )  # fmt: skip
        self._last_seen = self.loaded.totals()[0]
        self._task = asyncio.create_task(self._run(), name="dropmon")

    def _load(self) -> tuple[dict[int, str], str, _Loaded]:
        """(On a thread of its own: the reasons may come from the kernel's BTF, megabytes walked in Python,
        and the verifier and the tracepoint's attach take their time; the loop samples meanwhile.)  The
        reasons and where they were read, the program loaded, configured and attached."""
        reasons, where = read_reasons(self.context.root)
        loaded = _Loaded(*bpf_loader.load(OBJECT, NAMES, {"drops": RING_BYTES}))
        try:
            self._configure(loaded, reasons)
            loaded.link = bpf_loader.attach_raw_tracepoint(TRACEPOINT, loaded.program)
        except BaseException:
            loaded.close()
            raise
        return reasons, where, loaded

    def _configure(self, loaded: _Loaded, reasons: dict[int, str]) -> None:
        """Limit, header size and hidden reasons into the kernel's maps."""
        s = self.config
        self.hide = re.compile(s.hide) if s.hide else None
        interval, tolerance = bucket(s.limit)
        header_bytes = min(self.settings.header_bytes, HEADER_MAX)
        loaded.config.update(_KEY.pack(0), _CONFIG.pack(interval, tolerance, header_bytes, 0))
        not_drops = {n for n, name in reasons.items() if name in NOT_DROPS} | set(range(min(reasons)))
        for number in sorted(not_drops | set(reasons)):
            name = reasons.get(number, "")
            hidden = number in not_drops or (self.hide is not None and self.hide.search(name) is not None)
            if hidden:
                loaded.hidden.update(_KEY.pack(number), b"\1")
            else:
                loaded.hidden.delete(_KEY.pack(number))

    def reconfigure(self, settings: Settings) -> None:
        old = self.settings
        super().reconfigure(settings)
        if (
            self.loaded is not None
            and settings.dropmon is not None
            and (settings.dropmon != old.dropmon or settings.header_bytes != old.header_bytes)
        ):
            self._configure(self.loaded, self.reasons)

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        if self.loaded is not None:
            self.loaded.detach()
            await self._drain()
            self.loaded.close()
            self.loaded = None
            log.info("dropmon: stopped monitoring drops")

    async def _run(self) -> None:
        next_tick = time.monotonic() + 1.0
        while True:
            await asyncio.sleep(DRAIN_S)
            try:
                await self._drain()
                if time.monotonic() >= next_tick:
                    next_tick += 1.0
                    self._tick()
            except Exception:  # one bad record or map read must not end monitoring
                self.stats["faults"] += 1
                if self.stats["faults"] == 1:
                    log.exception("dropmon: reading drops failed (further failures counted, not logged)")
            if self.loaded is None or self.loaded.link is None:
                return

    def _tick(self) -> None:
        """The established agent's circuit breaker: ``max`` drops a second, ``max_trip`` seconds running."""
        assert self.loaded is not None
        s = self.config
        seen = self.loaded.totals()[0]
        this_second, self._last_seen = seen - self._last_seen, seen
        if this_second <= s.max:
            self._flood_seconds = 0
            return
        self._flood_seconds += 1
        log.error(
            "dropmon: threshold exceeded (%d > %d drops a second) for %d seconds (max_trip=%d)",
            this_second, s.max, self._flood_seconds, s.max_trip,
        )  # fmt: skip
        if self._flood_seconds >= s.max_trip:
            log.error("dropmon: stopped by max_trip: no more discard samples until restarted or reloaded")
            self.loaded.detach()

    async def _drain(self) -> None:
        """The records the kernel wrote since, copied out of the ring (taken, they may be written over),
        the functions that dropped them named on a thread (a read of /proc/kallsyms takes ~0.2 s, which
        would stall the loop's sampling), then sent."""
        loaded = self.loaded
        if loaded is None:
            return
        ring = loaded.ring
        if ring.consumer_pos[0] == ring.producer_pos[0]:
            return
        _, _, suppressed, lost = loaded.totals()
        drops = suppressed + lost
        self._epoch_offset = time.time_ns() - time.monotonic_ns()
        data = ring.data_map
        records = [data[pos : pos + _RECORD.size + _RECORD.unpack_from(data, pos)[8]] for pos in ring.records()]
        unnamed = {_RECORD.unpack_from(r)[2] for r in records} - self.kallsyms.cache.keys()
        if unnamed:
            await in_new_thread(self.kallsyms.resolve, unnamed, name=KALLSYMS_THREAD)
        for record in records:
            self._emit(record, drops)

    def _emit(self, record: bytes, drops: int) -> None:
        _, ktime, location, reason, iif, ifindex, frame, protocol, hlen, mac = _RECORD.unpack_from(record)
        function = self.kallsyms.lookup(location)
        if function is not None and self.hide is not None and self.hide.search(function):
            self.stats["hidden_by_function"] += 1
            return
        name = self.reasons.get(reason, f"reason {reason}")
        records: list[Record] = []
        header = record[_RECORD.size : _RECORD.size + hlen]
        ethertype = socket.ntohs(protocol)
        if hlen and mac:
            records.append(SampledHeader(HEADER_ETHERNET, frame + FCS_BYTES, FCS_BYTES, header))
        elif hlen and ethertype in (ETH_P_IP, ETH_P_IPV6):
            records.append(SampledHeader(HEADER_IPV4 if ethertype == ETH_P_IP else HEADER_IPV6, frame, 0, header))
        if function is not None:
            records.append(ExtendedFunction(function.encode()[:SYMBOL_MAX].decode(errors="ignore")))
        if self.config.rn:
            records.append(ExtendedLinuxReason(name[:SYMBOL_MAX]))
        records.append(ExtendedTimestamp(ktime + self._epoch_offset))
        inp, out = interfaces(iif, ifindex)
        sample = DiscardSample(0, 0, drops, inp, out, drop_code(name), records)
        self.context.send_discard(sample)
        self.stats["discard_samples"] += 1

    def privileges(self) -> Privileges:
        """bpf() on the maps (kernels before 6.5 refuse it without CAP_BPF while unprivileged BPF is off)
        and the addresses in /proc/kallsyms (zeros without CAP_SYSLOG)."""
        return Privileges({"CAP_BPF", "CAP_SYSLOG"}) if self.loaded is not None else Privileges()

    def status(self) -> dict[str, int]:
        out = dict(self.stats)
        if self.loaded is not None:
            seen, hidden, suppressed, lost = self.loaded.totals()
            out.update(drops_seen=seen, drops_hidden=hidden, drops_suppressed=suppressed, ring_full=lost)
        return out
