"""/proc/net/snmp: the IP, ICMP, TCP and UDP MIB-II counters, looked up by header name.

Each group is two lines, a header of names and a line of values, both prefixed ``Group:``.
Kernels insert columns (InCsumErrors in Icmp, Tcp and Udp since 3.10, right after InErrors in
Icmp; Icmp OutRateLimitGlobal/Host and Ip OutTransmits in 6.x), so values must be matched by
name: the established agent copies the Icmp line by position and reports every counter from
InDestUnreachs on under the wrong name.  Names an older kernel lacks read as 0.
"""

from __future__ import annotations

from pathlib import Path

from . import ReaderError, parsing, read_parsed


def parse_snmp(text: str) -> dict[str, dict[str, int]]:
    """Group → name → value.  Values are signed: Tcp MaxConn is -1 when there is no limit."""
    out: dict[str, dict[str, int]] = {}
    header: tuple[str, list[str]] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        group, found, rest = line.partition(":")
        if not found:
            continue
        if header is None or header[0] != group:
            header = (group, rest.split())
            continue
        with parsing(n, line):
            values = [int(v) for v in rest.split()]
        if len(values) != len(header[1]):
            raise ReaderError(f"{len(values)} values under {len(header[1])} names in group {group}", line=n)
        out[group] = dict(zip(header[1], values, strict=True))
        header = None
    return out


def read_snmp(root: Path) -> dict[str, dict[str, int]]:
    return read_parsed(root / "proc/net/snmp", parse_snmp)
