"""``sflowtool-py``: print sFlow datagrams received on a UDP port or read from a pcap file.

A small stand-in for sflowtool built on the agent's own codec, so the agent
can be checked end to end without the C tool.  Output is flushed after every
datagram so it can be piped.  A datagram that does not decode costs one
(rate-limited) line on stderr and is counted; nothing a sender can put in a
datagram stops the collector.  SIGINT and SIGTERM end it with status 0 after
a summary on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ..sflow.codec import decode_datagram
from ..sflow.xdr import ADDRESS, DecodeError
from .jsonout import format_json
from .pcapfile import PcapError, read_pcap
from .text import DatagramView, Received, datagram_view, format_grep, format_text

PROG = "sflowtool-py"
DEFAULT_PORT = 6343
MAX_DATAGRAM = 65535
ERRORS_PER_SECOND = 10

Formatter = Callable[[DatagramView], str]

FORMATTERS: dict[str, Formatter] = {
    "text": format_text,
    "json": format_json,
    "json-indented": lambda view: format_json(view, indent=True),
    "grep": format_grep,
}


class _Stop(Exception):
    """Raised from the signal handler so a blocking receive returns at once."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop


class Collector:
    """Decodes datagrams, writes them out, counts them and their errors."""

    def __init__(self, out: TextIO, err: TextIO, formatter: Formatter) -> None:
        self.out = out
        self.err = err
        self.formatter = formatter
        self.datagrams = 0
        self.errors = 0
        self._error_second = 0
        self._errors_this_second = 0

    def datagram(self, payload: bytes, origin: str, received: Received) -> None:
        try:
            decoded = decode_datagram(payload)
        except DecodeError as e:
            self.refuse(origin, str(e))
            return
        self.datagrams += 1
        self.out.write(self.formatter(datagram_view(decoded, len(payload), received)))
        self.out.flush()

    def refuse(self, origin: str, why: str) -> None:
        """Count every bad datagram; print at most a few a second so a flood cannot drown stderr."""
        self.datagrams += 1
        self.errors += 1
        message = f"decode error from {origin}: {why}"
        now = int(time.monotonic())
        if now != self._error_second:
            self._error_second, self._errors_this_second = now, 0
        self._errors_this_second += 1
        if self._errors_this_second <= ERRORS_PER_SECOND:
            print(message, file=self.err, flush=True)
        elif self._errors_this_second == ERRORS_PER_SECOND + 1:
            print(f"{PROG}: more decode errors this second not shown", file=self.err, flush=True)

    def summary(self) -> str:
        return f"{PROG}: {self.datagrams} datagrams, {self.errors} decode errors"


def _origin(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _peer_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """A dual-stack socket reports IPv4 senders as ::ffff:a.b.c.d; show them as IPv4 like sflowtool."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if address.version == 6 and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


# ------------------------------------------------------------------ sources


def _open_udp(port: int) -> socket.socket:
    """A dual-stack socket on :: where IPv6 exists, else IPv4 only."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    except OSError:
        sock = None
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", port))
            return sock
        except OSError:
            sock.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("0.0.0.0", port))
    except OSError:
        sock.close()
        raise
    return sock


def listen(collector: Collector, port: int) -> None:
    """Receive until a signal stops us."""
    with _open_udp(port) as sock:
        host, bound_port = sock.getsockname()[:2]
        print(
            f"{PROG}: listening on UDP {_origin(ipaddress.ip_address(host), bound_port)}",
            file=collector.err,
            flush=True,
        )
        while True:
            payload, peer = sock.recvfrom(MAX_DATAGRAM)
            now_us = time.time_ns() // 1000
            address = _peer_address(peer[0])
            received = Received(ADDRESS.text(address), now_us // 1_000_000, now_us % 1_000_000)
            collector.datagram(payload, _origin(address, peer[1]), received)


def read_file(collector: Collector, path: str) -> None:
    """Decode every UDP payload of a pcap file, printing what sflowtool -r prints."""
    with contextlib.ExitStack() as stack:
        stream = sys.stdin.buffer if path == "-" else stack.enter_context(open(path, "rb"))
        for packet in read_pcap(stream):
            origin = _origin(packet.source, packet.source_port)
            if packet.truncated:
                collector.refuse(origin, "datagram cut short by the capture's snaplen")
                continue
            received = Received("-", 0, 0, packet.seconds, packet.microseconds)
            collector.datagram(packet.payload, origin, received)


# ------------------------------------------------------------------ main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Print sFlow datagrams the way sflowtool does.")
    p.add_argument(
        "-p",
        dest="port",
        type=int,
        default=DEFAULT_PORT,
        metavar="PORT",
        help=f"UDP port to listen on, IPv6 and IPv4 (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    p.add_argument("-r", dest="read", metavar="FILE", help="read a pcap file ('-' for stdin) instead of listening")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("-j", dest="format", action="store_const", const="json", help="one JSON object per line")
    fmt.add_argument("-J", dest="format", action="store_const", const="json-indented", help="indented JSON")
    fmt.add_argument(
        "-g",
        dest="format",
        action="store_const",
        const="grep",
        help="grep-friendly: every line prefixed with its datagram, sample and record",
    )
    p.set_defaults(format="text")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"{PROG}: port {args.port} out of range", file=sys.stderr)
        return 2
    collector = Collector(sys.stdout, sys.stderr, FORMATTERS[args.format])
    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    try:
        if args.read:
            read_file(collector, args.read)
        else:
            listen(collector, args.port)
    except _Stop:
        pass
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, without Python's flush-at-exit complaint.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, PcapError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        status = 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    print(collector.summary(), file=sys.stderr, flush=True)
    return status
