"""Counters that never go backwards, built from kernel readings that sometimes do.

sFlow collectors difference successive counter samples modulo 2^32 or 2^64, so a value that
steps back reads as a wrap: billions of bogus packets.  Kernel readings step back when

* a 32-bit source wraps: /proc/diskstats times are ``unsigned int`` on every kernel, and
  ``unsigned long`` counters (vmstat, net/dev, most of net/snmp) are 32 bits on 32-bit kernels;
* a source restarts: a driver that clears its statistics on reset, a device that is removed
  and re-created under the same name;
* the kernel's own accounting jitters: /proc/stat iowait can decrease (see the kernel's
  Documentation/filesystems/proc.rst);
* a sum loses a member: a disk is unplugged, a container's veth goes away.

:class:`Monotonic` keeps, per key, the last raw reading of each member and a running total, and
adds each member's step since its last reading:

* ``raw >= last``: the difference;
* ``raw < last`` with a wrap-corrected difference below half the source's range: a wrap,
  add the corrected difference;
* any other step back: a restart or jitter, add 0 and take the new value as the baseline.
  (A restart's own counts until the first reading after it are lost; treating the new raw value
  as the delta would instead add the whole value on every jitter.  A restart of a 32-bit source
  from above half its range is indistinguishable from a wrap and is taken as one.)

A member that joins an existing sum gives only a baseline at its first reading (what it counted
before we saw it is not ours to report); members missing from a reading are forgotten, so
a sum over a changing set only ever adds.  Outputs are the total modulo 2^bits of the sFlow field
(32 or 64).

Where the total starts (``from_zero``), following the established agent:

* from zero at agent start: interface counters (0:1) and host network I/O (2006), which are
  sums over interfaces that come and go, so the kernel's lifetime totals mean nothing there;
* the kernel's value as read: CPU time, interrupts and context switches (2003), paging (2004),
  disk I/O (2005) and the MIB-II counters (2007-2010).  Gauges in those records (load,
  uptime, ipForwarding, tcpCurrEstab, tcpMaxConn…) are reported as read and never pass here.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping


def long_bits(machine: str) -> int:
    """Width of the kernel's ``unsigned long`` from the uname machine string."""
    return 64 if "64" in machine or machine in ("alpha", "s390x") else 32


KERNEL_LONG_BITS = long_bits(os.uname().machine)
"""Source width of the kernel counters kept as ``unsigned long``."""


def step(last: int, raw: int, source_bits: int) -> int:
    """What a counter added between two readings (see the module docstring)."""
    if raw >= last:
        return raw - last
    wrapped = (raw - last) % (1 << source_bits)
    return wrapped if wrapped < 1 << (source_bits - 1) else 0


class Monotonic:
    """Running totals of counter readings, per key; see the module docstring for the rules."""

    __slots__ = ("_last", "_total")

    def __init__(self) -> None:
        self._last: dict[Hashable, dict[Hashable, int]] = {}
        self._total: dict[Hashable, int] = {}

    def update(self, key: Hashable, raw: int, *, bits: int, source_bits: int = 64, from_zero: bool = False) -> int:
        """Fold one reading of one counter into its total; returns the total mod 2^bits."""
        return self.update_sum(key, {None: raw}, bits=bits, source_bits=source_bits, from_zero=from_zero)

    def update_sum(
        self,
        key: Hashable,
        raws: Mapping[Hashable, int],
        *,
        bits: int,
        source_bits: int = 64,
        from_zero: bool = False,
    ) -> int:
        """Fold one reading of a sum over members (devices) into its total; returns it mod 2^bits."""
        last = self._last.get(key)
        if last is None:
            total = 0 if from_zero else sum(raws.values())
        else:
            total = self._total[key] + sum(step(last[m], r, source_bits) for m, r in raws.items() if m in last)
        self._last[key] = dict(raws)
        self._total[key] = total
        return total % (1 << bits)
