"""The real ``sflowtool-py`` process: UDP on IPv4 and IPv6, garbage, signals, exit status."""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import Proc, python

from hsflowd_py.collector.cli import ERRORS_PER_SECOND
from hsflowd_py.sflow.codec import encode_datagram
from hsflowd_py.sflow.records import HostDescription, PortName
from hsflowd_py.sflow.samples import CounterSample, Datagram

DATAGRAM = encode_datagram(
    Datagram(
        ipaddress.ip_address("192.0.2.2"),
        100001,
        42,
        3600,
        [
            CounterSample(2, 1, [HostDescription("vm", bytes(16), 3, 2, "6.1"), PortName("eth0")], sequence=7),
        ],
    )
)
GARBAGE = b"\0\0\0\5" + b"\xff" * 40


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def start(*flags: str) -> tuple[Proc, int]:
    """The collector on a port the kernel picks; its stderr announces which."""
    proc = Proc(python("-m", "hsflowd_py.collector", "-p", "0", *flags))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in proc.stderr:
            found = re.search(r"listening on UDP \S*:(\d+)$", line.strip())
            if found:
                return proc, int(found.group(1))
        time.sleep(0.02)
    proc.stop()
    raise AssertionError(f"collector did not start: {proc.stderr}")


def send(host: str, port: int, *payloads: bytes) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        for payload in payloads:
            s.sendto(payload, (host, port))


def read_until(proc: Proc, marker: str, count: int) -> list[str]:
    lines: list[str] = []
    for line in proc.lines_until(10):
        lines.append(line.rstrip("\n"))
        if sum(x.startswith(marker) for x in lines) == count:
            break
    return lines


def test_text_over_ipv4_and_ipv6_with_garbage_counted_and_sigterm_exit_0() -> None:
    proc, port = start()
    senders = ["127.0.0.1", "::1"] if ipv6_loopback() else ["127.0.0.1"]
    for host in senders:
        send(host, port, GARBAGE, DATAGRAM)
    lines = read_until(proc, "endDatagram", len(senders))
    assert proc.stop(signal.SIGTERM) == 0
    sources = [line.split(" ", 1)[1] for line in lines if line.startswith("datagramSourceIP ")]
    expected = {"127.0.0.1": "127.0.0.1", "::1": "0000:0000:0000:0000:0000:0000:0000:0001"}
    assert sources == [expected[h] for h in senders]
    for wanted in ("agent 192.0.2.2", "agentSubId 100001", "packetSequenceNo 42", "sourceId 2:1", "ifName eth0"):
        assert wanted in lines
    stderr = "".join(proc.stderr)
    assert f"{2 * len(senders)} datagrams, {len(senders)} decode errors" in stderr
    assert "decode error from 127.0.0.1:" in stderr
    if len(senders) == 2:
        assert "decode error from [::1]:" in stderr
    assert "Traceback" not in stderr


def test_json_one_object_per_line_and_sigint_exit_0() -> None:
    proc, port = start("-j")
    send("127.0.0.1", port, DATAGRAM)
    obj = next(json.loads(line) for line in proc.lines_until(10) if line.startswith("{"))
    assert proc.stop(signal.SIGINT) == 0
    assert obj["datagramSourceIP"] == "127.0.0.1" and obj["packetSequenceNo"] == "42"
    assert obj["samples"][0]["elements"] == [
        {
            "counterBlock_tag": "0:2000",
            "hostname": "vm",
            "UUID": "00000000-0000-0000-0000-000000000000",
            "machine_type": "3",
            "os_name": "2",
            "os_release": "6.1",
        },
        {"counterBlock_tag": "0:1005", "ifName": "eth0"},
    ]
    assert "Traceback" not in "".join(proc.stderr)


def test_decode_error_flood_is_rate_limited_but_fully_counted() -> None:
    proc, port = start()
    send("127.0.0.1", port, *[GARBAGE] * 60)  # few enough that the socket buffer drops none
    time.sleep(0.5)
    assert proc.stop() == 0
    errors = [line for line in proc.stderr if line.startswith("decode error from")]
    assert 1 <= len(errors) <= 2 * ERRORS_PER_SECOND
    assert "60 datagrams, 60 decode errors" in "".join(proc.stderr)


def test_unreadable_file_is_an_error_without_traceback(tmp_path: Path) -> None:
    missing = subprocess.run(
        python("-m", "hsflowd_py.collector", "-r", str(tmp_path / "none.pcap")), capture_output=True, text=True
    )
    (tmp_path / "bad.pcap").write_bytes(b"not a capture at all")
    bad = subprocess.run(
        python("-m", "hsflowd_py.collector", "-r", str(tmp_path / "bad.pcap")), capture_output=True, text=True
    )
    for result in (missing, bad):
        assert result.returncode == 1 and result.stdout == ""
        assert "Traceback" not in result.stderr and "0 datagrams" in result.stderr
    assert f"{tmp_path / 'bad.pcap'}: file shorter than a pcap header" in bad.stderr


def test_pcap_from_stdin_into_a_closed_pipe() -> None:
    vectors = Path("/work/shared/vectors/host-flows.pcap")
    if not vectors.is_file():
        pytest.skip("shared sFlow vectors not present")
    shell = f"{sys.executable} -m hsflowd_py.collector -r - < {vectors} | head -n 3"
    result = subprocess.run(["sh", "-c", shell], capture_output=True, text=True)
    assert result.stdout.splitlines() == [
        "startDatagram =================================",
        "datagramSourceIP -",
        "datagramSize 848",
    ]
    assert "Traceback" not in result.stderr
