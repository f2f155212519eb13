"""``sflowtool-py``: sFlow datagrams from a UDP port or a pcap file, printed, forwarded, exported.

A stand-in for sflowtool built on the agent's own codec.  Each received
datagram is first forwarded unchanged (``-f``), then decoded once and handed
to the chosen output (text, ``-j``/``-J`` JSON, ``-g`` grep lines, ``-l``
FLOW/CNTR lines, ``-t`` pcap, ``-T`` pcapng) and to the Prometheus exporter
(``--prometheus``).  With ``-f`` or ``--prometheus`` nothing is printed
unless an output is asked for, as sflowtool's ``-f`` prints nothing.

Output is flushed after every datagram so it can be piped.  A datagram that
does not decode costs one (rate-limited) line on stderr and is counted;
nothing a sender can put in a datagram stops the collector.  SIGINT and
SIGTERM end it with status 0 after a summary on stderr.
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
from typing import TYPE_CHECKING, TextIO

from ..sflow.codec import decode_datagram
from ..sflow.records import Record
from ..sflow.samples import Datagram
from ..sflow.xdr import ADDRESS, DecodeError
from .exporter import options as exporter_options
from .forward import Forwarder, TargetError, parse_target
from .outputs import PROG, Output, make_output
from .pcapfile import PcapError, udp_datagrams
from .text import Received

if TYPE_CHECKING:
    from .exporter.server import MetricsServer
    from .exporter.state import ExportState

DEFAULT_PORT = 6343
MAX_DATAGRAM = 65535
ERRORS_PER_SECOND = 10
MIN_DATAGRAM = 28
"""The shortest sFlow v5 datagram: version, address type, IPv4 agent, sub-agent, sequence, uptime, count."""
VERSION_5 = b"\0\0\0\5"
RECEIVE_BUFFER = 8 << 20
"""Bytes of socket buffer to ride out bursts while a scrape or a slow pipe holds us up."""
PEER_CACHE = 4096
"""Senders whose printed forms are kept: parsing an address costs more than decoding a small datagram."""
DEFAULT_FLOWS = 100
DEFAULT_EXPIRY = 300


class _Stop(Exception):
    """Raised from the signal handler so a blocking receive returns at once."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop


class Collector:
    """Forwards, decodes and hands on each datagram; counts them and their errors."""

    def __init__(
        self,
        err: TextIO,
        output: Output | None,
        forwarder: Forwarder | None = None,
        exporter: ExportState | None = None,
    ) -> None:
        self.err = err
        self.output = output
        self.forwarder = forwarder
        self.only: frozenset[type[Record]] | None = None
        self.exporter = exporter
        self.datagrams = 0
        self.errors = 0
        self.output_failures = 0
        self._error_second = 0
        self._errors_this_second = 0

    def datagram(self, payload: bytes, origin: str, received: Received) -> None:
        if self.forwarder is not None:
            self.forwarder.send(payload)
        if len(payload) < MIN_DATAGRAM or not payload.startswith(VERSION_5):
            # Most garbage stops here, before the decoder; it says why only if the line is printed.
            self.refuse(origin, lambda: _why_not(payload))
            return
        try:
            decoded = decode_datagram(payload, self.only)
        except DecodeError as e:
            # As sflowtool does, what decoded before the fault is still printed (not exported).
            partial = getattr(e, "partial", None)
            if partial is not None and self.output is not None:
                self._write(partial, len(payload), received, origin)
            self.refuse(origin, str(e))
            return
        self.datagrams += 1
        if self.output is not None:
            self._write(decoded, len(payload), received, origin)
        if self._exporter is not None:
            self._export(self._exporter, decoded, origin)

    @property
    def exporter(self) -> ExportState | None:
        return self._exporter

    @exporter.setter
    def exporter(self, exporter: ExportState | None) -> None:
        """Exporting only, the decoder builds only the records the exporter reads (set here, as
        ``main`` starts the exporter after it makes the collector)."""
        self._exporter = exporter
        self.only = exporter.read if self.output is None and exporter is not None else None

    def _write(self, decoded: Datagram, size: int, received: Received, origin: str) -> None:
        """Outputs range-check what they write; should one still fail, the datagram is counted and
        the failure told once, and the collector goes on (a pipe closed by its reader still ends it)."""
        assert self.output is not None
        try:
            self.output.write(decoded, size, received)
        except (BrokenPipeError, _Stop):
            raise
        except Exception as e:
            if not self.output_failures:
                print(f"{PROG}: output failed on a datagram from {origin}: {e!r} (told once)", file=self.err)
            self.output_failures += 1

    def _export(self, exporter: ExportState, decoded: Datagram, origin: str) -> None:
        """The exporter must never stop the collector: a failure is counted, and told once."""
        try:
            exporter.observe(decoded, time.monotonic(), origin.rpartition(":")[0])
        except Exception as e:
            if not exporter.failures:
                print(f"{PROG}: exporter failed on a datagram from {origin}: {e!r} (told once)", file=self.err)
            exporter.failed()

    def refuse(self, origin: str, why: str | Callable[[], str]) -> None:
        """Count every bad datagram; print at most a few a second so a flood cannot drown stderr."""
        self.datagrams += 1
        self.errors += 1
        now = int(time.monotonic())
        if now != self._error_second:
            self._error_second, self._errors_this_second = now, 0
        self._errors_this_second += 1
        if self._errors_this_second <= ERRORS_PER_SECOND:
            print(f"decode error from {origin}: {why if isinstance(why, str) else why()}", file=self.err, flush=True)
        elif self._errors_this_second == ERRORS_PER_SECOND + 1:
            print(f"{PROG}: more decode errors this second not shown", file=self.err, flush=True)

    def summary(self) -> list[str]:
        lines = [f"{PROG}: {self.datagrams} datagrams, {self.errors} decode errors"]
        if self.output_failures:
            lines.append(f"{PROG}: {self.output_failures} datagrams the output failed to write")
        skipped = getattr(self.output, "skipped", 0)
        if skipped:
            lines.append(f"{PROG}: {skipped} sampled headers of a protocol a capture cannot hold were skipped")
        if self.forwarder is not None:
            lines.extend(f"{PROG}: {line}" for line in self.forwarder.summary())
        return lines


def _why_not(payload: bytes) -> str:
    """The decoder's own words for a datagram the cheap checks refused."""
    try:
        decode_datagram(payload)
    except DecodeError as e:
        return str(e)
    return "not sFlow version 5"


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


def _grow_receive_buffer(sock: socket.socket) -> None:
    """SO_RCVBUFFORCE passes net.core.rmem_max as root; otherwise take what SO_RCVBUF gives."""
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
            return
        except OSError:
            continue


def listen(collector: Collector, port: int) -> None:
    """Receive until a signal stops us."""
    with _open_udp(port) as sock:
        _grow_receive_buffer(sock)
        host, bound_port = sock.getsockname()[:2]
        print(
            f"{PROG}: listening on UDP {_origin(ipaddress.ip_address(host), bound_port)}",
            file=collector.err,
            flush=True,
        )
        peers: dict[tuple[str, int], tuple[str, str]] = {}
        while True:
            payload, peer = sock.recvfrom(MAX_DATAGRAM)
            now_us = time.time_ns() // 1000
            known = peers.get(peer[:2])
            if known is None:
                if len(peers) >= PEER_CACHE:
                    peers.clear()
                address = _peer_address(peer[0])
                known = peers[peer[:2]] = (ADDRESS.text(address), _origin(address, peer[1]))
            collector.datagram(payload, known[1], Received(known[0], now_us // 1_000_000, now_us % 1_000_000))


def read_file(collector: Collector, path: str) -> None:
    """Decode every UDP payload of a pcap file, printing what sflowtool -r prints."""
    with contextlib.ExitStack() as stack:
        stream = sys.stdin.buffer if path == "-" else stack.enter_context(open(path, "rb"))
        origins: dict[tuple[bytes, int], str] = {}
        datagram = collector.datagram
        timed = collector.output is not None  # only an output prints the capture time
        untimed = Received("-", 0, 0)
        for seconds, microseconds, source, port, payload, truncated in udp_datagrams(stream):
            origin = origins.get((source, port))
            if origin is None:  # as ``listen``'s peers: printing an address costs more than a small datagram's decode
                if len(origins) >= PEER_CACHE:
                    origins.clear()
                origin = origins[source, port] = _origin(ipaddress.ip_address(source), port)
            if truncated:
                collector.refuse(origin, "datagram cut short by the capture's snaplen")
                continue
            datagram(payload, origin, Received("-", 0, 0, seconds, microseconds) if timed else untimed)


# ------------------------------------------------------------------ main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Print, forward and export sFlow datagrams, as sflowtool does.")
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
    for flag, kind, text in (
        ("-j", "json", "one JSON object per line"),
        ("-J", "json-indented", "indented JSON"),
        ("-g", "grep", "grep-friendly: every line prefixed with its datagram, sample and record"),
        ("-l", "lines", "one CSV line per flow sample (FLOW) and per counter record (CNTR, REC)"),
        ("-t", "pcap", "sampled packet headers as a pcap stream on stdout (| tcpdump -r -)"),
        ("-T", "pcapng", "the same as pcapng, one interface per agent and data source"),
    ):
        fmt.add_argument(flag, dest="format", action="store_const", const=kind, help=text)
    p.add_argument(
        "-f",
        dest="forward",
        action="append",
        default=[],
        metavar="HOST/PORT",
        help="also send every datagram unchanged to HOST/PORT (repeatable; IPv4 or IPv6)",
    )
    p.add_argument(
        "--prometheus",
        metavar="[ADDR:]PORT",
        help="serve metrics on http://ADDR:PORT/metrics (ADDR: 127.0.0.1 unless given; 0.0.0.0 or [::] serves others)",
    )
    p.add_argument(
        "--prometheus-flows",
        type=int,
        default=DEFAULT_FLOWS,
        metavar="N",
        help=f"flow series per flow table: the top N by rate, the rest in one 'other' (default {DEFAULT_FLOWS})",
    )
    p.add_argument(
        "--prometheus-expiry",
        type=float,
        default=DEFAULT_EXPIRY,
        metavar="SECONDS",
        help=f"forget agents, data sources and flows silent this long (default {DEFAULT_EXPIRY})",
    )
    exporter_options.add_arguments(p)
    return p


def _exporter(args: argparse.Namespace, collector: Collector) -> tuple[ExportState, MetricsServer] | str:
    """The exporter's state and its running HTTP server, or why it cannot start."""
    try:
        from .exporter.server import MetricsServer, parse_listen
        from .exporter.state import ExportState
    except ImportError as e:
        debian = "apt-get install python3-prometheus-client"
        return f"--prometheus needs the prometheus_client library ({e}); on Debian: {debian}"
    try:
        addr, port = parse_listen(args.prometheus)
        limits = exporter_options.limits_of(args)
        state = ExportState(
            collector, flows=args.prometheus_flows, expiry=args.prometheus_expiry, now=time.monotonic(), limits=limits
        )
        server = MetricsServer(state, collector.forwarder, addr, port, **exporter_options.server_options(args))
    except (ValueError, OSError) as e:
        return f"--prometheus {args.prometheus}: {e}"
    server.start()
    host, bound = server.address
    shown = f"[{host}]" if ":" in host else host
    print(f"{PROG}: serving metrics on http://{shown}:{bound}/metrics", file=sys.stderr, flush=True)
    return state, server


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not 0 <= args.port <= 65535:
        print(f"{PROG}: port {args.port} out of range", file=sys.stderr)
        return 2
    if args.prometheus_flows < 0 or args.prometheus_expiry <= 0:
        print(f"{PROG}: --prometheus-flows must be >= 0 and --prometheus-expiry > 0", file=sys.stderr)
        return 2
    try:
        forwarder = Forwarder([parse_target(t) for t in args.forward]) if args.forward else None
    except TargetError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    kind = args.format or (None if forwarder or args.prometheus else "text")
    collector = Collector(sys.stderr, make_output(kind, sys.stdout, sys.stdout.buffer), forwarder)
    server = None
    if args.prometheus:
        started = _exporter(args, collector)
        if isinstance(started, str):
            print(f"{PROG}: {started}", file=sys.stderr)
            return 2
        collector.exporter, server = started
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
    except PcapError as e:
        print(f"{PROG}: {args.read}: {e}", file=sys.stderr)
        status = 1
    except OSError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        status = 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if forwarder is not None:
            forwarder.close()
        if server is not None:
            server.close()
    for line in collector.summary():
        print(line, file=sys.stderr, flush=True)
    return status
