"""/proc/net/dev: per-device traffic counters of the reader's network namespace.

Columns are taken from the second header line, receive names prefixed ``rx_`` and transmit
names ``tx_`` (``rx_bytes``, ``rx_packets``, ``rx_errs``, ``rx_drop``, … ``tx_colls``), so a
kernel that changes the columns cannot shift values into the wrong counter.
"""

from __future__ import annotations

from pathlib import Path

from . import ReaderError, parsing, read_parsed


def _columns(header: str) -> list[str]:
    parts = header.split("|")
    if len(parts) != 3:
        raise ReaderError(f"header {header.strip()!r} is not 'face |receive|transmit'", line=2)
    return ["rx_" + name for name in parts[1].split()] + ["tx_" + name for name in parts[2].split()]


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """Device name → column name → value."""
    lines = text.splitlines()
    if len(lines) < 2:
        raise ReaderError("no header")
    columns = _columns(lines[1])
    out = {}
    for n, line in enumerate(lines[2:], 3):
        if not line.strip():
            continue
        # Old kernels glued large numbers to the colon ("eth0:1234567"); names cannot hold ':'.
        name, found, values = line.partition(":")
        if not found:
            raise ReaderError("no ':' after the device name", line=n)
        with parsing(n, line):
            numbers = [int(v) for v in values.split()]
            if len(numbers) != len(columns):
                raise ValueError(f"{len(numbers)} values for {len(columns)} columns")
        out[name.strip()] = dict(zip(columns, numbers, strict=True))
    return out


def read_net_dev(root: Path) -> dict[str, dict[str, int]]:
    return read_parsed(root / "proc/net/dev", parse_net_dev)
