"""Where decoded datagrams go: the collector's stdout formats, one per run.

Text, ``-j``/``-J`` JSON and ``-g`` grep lines render sflowtool's view of a
datagram; ``-l`` writes FLOW/CNTR lines; ``-t``/``-T`` write the sampled
headers as a capture stream (``pcapout``).  Each output flushes after every
datagram so that a reader on a pipe sees it at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, Protocol, TextIO

from ..sflow.samples import Datagram
from .jsonout import format_json
from .lines import format_lines
from .pcapout import PcapNgWriter, PcapWriter
from .text import DatagramView, Received, datagram_view, format_grep, format_text

__all__ = ["FORMATTERS", "PROG", "LineOutput", "Output", "ViewOutput", "make_output"]

PROG = "sflowtool-py"

Formatter = Callable[[DatagramView], str]

FORMATTERS: dict[str, Formatter] = {
    "text": format_text,
    "json": format_json,
    "json-indented": lambda view: format_json(view, indent=True),
    "grep": format_grep,
}


class Output(Protocol):
    def write(self, datagram: Datagram, size: int, received: Received) -> None: ...


class ViewOutput:
    """Text, JSON and grep: the sflowtool view of each datagram, formatted."""

    def __init__(self, out: TextIO, formatter: Formatter) -> None:
        self.out = out
        self.formatter = formatter

    def write(self, datagram: Datagram, size: int, received: Received) -> None:
        self.out.write(self.formatter(datagram_view(datagram, size, received)))
        self.out.flush()


class LineOutput:
    """``-l``: FLOW/CNTR lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def write(self, datagram: Datagram, size: int, received: Received) -> None:
        lines = format_lines(datagram)
        if lines:
            self.out.write(lines)
            self.out.flush()


def make_output(kind: str | None, text: TextIO, binary: BinaryIO) -> Output | None:
    """The output for a format name (``text``, ``json``, ``lines``, ``pcap``...), or None for none."""
    if kind is None:
        return None
    if kind == "lines":
        return LineOutput(text)
    if kind == "pcap":
        return PcapWriter(binary)
    if kind == "pcapng":
        return PcapNgWriter(binary, PROG)
    return ViewOutput(text, FORMATTERS[kind])
