"""Drop locations to function names, through ``/proc/kallsyms``.

The tracepoint gives the return address in the function that freed the packet.  Drops come from a
few dozen places in practice, so names are looked up per new address (cached) rather than keeping
the kernel's 120 k symbols in memory: one read of the file (~0.1 s) answers every address of a
drain.  The kernel's own symbols are listed in address order, so an address is found by bisection;
those of loadable modules (``name [module]``) follow unordered and are scanned.

Addresses read as zero without CAP_SYSLOG (``kptr_restrict``); then nothing is named.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from pathlib import Path

TEXT = (b"t", b"T", b"w", b"W")
CACHE_MAX = 4096


def _address(line: bytes) -> int:
    return int(line[: line.index(b" ")], 16)


def _name(line: bytes) -> str:
    return line.split(b" ", 2)[2].split(b"\t", 1)[0].decode(errors="replace")


def _is_text(line: bytes) -> bool:
    parts = line.split(b" ", 2)
    return len(parts) == 3 and parts[1] in TEXT


class Kallsyms:
    """Function names of kernel addresses; ``root`` is where ``proc/kallsyms`` is read from."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.path = root / "proc/kallsyms"
        self.cache: dict[int, str | None] = {}

    def lookup(self, address: int) -> str | None:
        """The function containing ``address`` (cached), None when no text symbol precedes it."""
        if address not in self.cache:
            self.resolve([address])
        return self.cache.get(address)

    def resolve(self, addresses: Iterable[int]) -> None:
        """Name every address not yet cached, in one read of the file."""
        wanted = sorted({a for a in addresses if a not in self.cache})
        if not wanted:
            return
        if len(self.cache) + len(wanted) > CACHE_MAX:
            self.cache.clear()
        try:
            lines = self.path.read_bytes().split(b"\n")
        except OSError:
            self.cache.update(dict.fromkeys(wanted))
            return
        core = [line for line in lines if line and not line.endswith(b"]")]
        modules = [line for line in lines if line.endswith(b"]") and _is_text(line)]
        last = _address(core[-1]) if core else 0
        for address in wanted:
            name = None
            if core and _address(core[0]) <= address <= last + (1 << 20):
                i = bisect.bisect_right(core, address, key=_address) - 1
                while i >= 0 and not _is_text(core[i]):
                    i -= 1
                if i >= 0 and _address(core[i]):
                    name = _name(core[i])
            if name is None:
                best = max((line for line in modules if 0 < _address(line) <= address), key=_address, default=None)
                name = _name(best) if best is not None else None
            self.cache[address] = name
