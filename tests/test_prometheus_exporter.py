"""``sflowtool-py --prometheus`` as a process: what /metrics says, bounded memory, hostile input, expiry.

The exporter is fed real hsflowd datagrams (``/work/shared/vectors``) and
datagrams made with the codec, over UDP, and read back over HTTP with
prometheus_client's own parser.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import Proc, python

from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.sflow.codec import encode_datagram
from hsflowd_py.sflow.records import HostMemory, SampledHeader
from hsflowd_py.sflow.samples import CounterSample, Datagram, FlowSample, UnknownRecord, UnknownSample

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

VECTORS = Path("/work/shared/vectors")
needs_vectors = pytest.mark.skipif(not (VECTORS / "host-flows.pcap").is_file(), reason="shared sFlow vectors absent")
AGENT = ipaddress.ip_address("192.0.2.44")

Samples = dict[str, list[tuple[dict[str, str], float]]]


class Exporter:
    """The collector process with the exporter on loopback ports it picks itself."""

    def __init__(self, *flags: str) -> None:
        self.proc = Proc(python("-m", "hsflowd_py.collector", "-p", "0", "--prometheus", "127.0.0.1:0", *flags))
        deadline = time.monotonic() + 15
        self.udp = self.http = 0
        while time.monotonic() < deadline and not (self.udp and self.http):
            for line in list(self.proc.stderr):
                if m := re.search(r"listening on UDP \S*:(\d+)$", line.strip()):
                    self.udp = int(m.group(1))
                if m := re.search(r"serving metrics on http://127.0.0.1:(\d+)/metrics", line):
                    self.http = int(m.group(1))
            time.sleep(0.02)
        assert self.udp and self.http, self.proc.stderr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, payloads: list[bytes], batch: int = 500) -> None:
        """Send in batches, each once the exporter has taken in the one before, so none is dropped."""
        for start in range(0, len(payloads), batch):
            before = self.received()
            chunk = payloads[start : start + batch]
            for payload in chunk:
                self.sock.sendto(payload, ("127.0.0.1", self.udp))
            self.wait_received(before + len(chunk))

    def received(self) -> int:
        return int(value(self.scrape(), "sflow_collector_datagrams_total"))

    def wait_received(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.received() < count:
            assert time.monotonic() < deadline, f"exporter took in {self.received()} of {count}"
            time.sleep(0.05)

    def scrape(self) -> Samples:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=10).read().decode()
        out: Samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out.setdefault(s.name, []).append((s.labels, s.value))
        return out

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.p.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]

    def close(self) -> None:
        self.sock.close()
        assert self.proc.stop() == 0
        assert "Traceback" not in "".join(self.proc.stderr)


@pytest.fixture
def exporter(request: pytest.FixtureRequest) -> Iterator[Exporter]:
    e = Exporter(*getattr(request, "param", ()))
    yield e
    e.close()


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    found = [v for got, v in samples.get(metric, []) if all(got.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (metric, labels, samples.get(metric))
    return found[0]


def vector_payloads(name: str) -> list[bytes]:
    with open(VECTORS / f"{name}.pcap", "rb") as f:
        return [p.payload for p in read_pcap(f)]


@needs_vectors
def test_real_hsflowd_datagrams_become_the_metrics_sflowtool_would_read(exporter: Exporter) -> None:
    exporter.send(vector_payloads("host-flows") + vector_payloads("docker-containers"))
    time.sleep(1.2)  # one rank of the flow tables
    m = exporter.scrape()
    host = {"agent": "192.0.2.2", "datasource": "2:1", "name": "vm"}
    assert value(m, "sflow_mem_total_bytes", **host) == 25276514304
    assert value(m, "sflow_host_info", **host, os_release="6.18.44-fc-v595", machine_type="3") == 1
    assert value(m, "sflow_vcpu_cpu_seconds_total", name="vec-burn") == pytest.approx(17.837)
    assert value(m, "sflow_vmem_max_memory_bytes", name="vec-sleep") == 25276514304
    assert value(m, "sflow_if_speed", agent="192.0.2.2", datasource="0:8", name="vec0") == 10**10
    assert "sflow_if_in_multicast_pkts_total" not in m  # 4294967295 = unknown
    # Every sampled byte, scaled up, in exactly one flow series: the totals sflowtool's decode gives.
    samples = [
        s for line in (VECTORS / "host-flows.jsonl").read_text().splitlines() for s in json.loads(line)["samples"]
    ]
    headers = [(s, e) for s in samples for e in s.get("elements", []) if e.get("flowSampleType") == "HEADER"]
    expected_bytes = sum((int(e["sampledPacketSize"]) - 4) * int(s["meanSkipCount"]) for s, e in headers)
    for table in ("ip", "port"):
        assert sum(v for _, v in m[f"sflow_flow_{table}_bytes_total"]) == expected_bytes
        assert sum(v for _, v in m[f"sflow_flow_{table}_packets_total"]) == 653 * 10
    assert value(m, "sflow_collector_agent_samples_total", agent="192.0.2.2", type="flow") == 653
    assert value(m, "sflow_collector_agent_lost_datagrams_total", agent="192.0.2.2") == 0
    assert value(m, "sflow_collector_decode_errors_total") == 0


def _lost_sequence(exporter: Exporter) -> float:
    counters = [
        encode_datagram(Datagram(AGENT, 100001, n, n * 1000, [CounterSample(2, 1, [HostMemory(mem_total=n)], n)]))
        for n in (1, 2, 3, 7, 8)
    ]
    exporter.send(counters)
    m = exporter.scrape()
    assert value(m, "sflow_mem_total_bytes", agent=str(AGENT)) == 8
    return value(m, "sflow_collector_agent_lost_datagrams_total", agent=str(AGENT))


def test_sequence_gaps_count_as_lost_datagrams(exporter: Exporter) -> None:
    assert _lost_sequence(exporter) == 3


def _hostile() -> tuple[list[bytes], list[bytes]]:
    """(malformed datagrams, well-formed ones with record and sample types nobody knows)."""
    good = encode_datagram(
        Datagram(AGENT, 1, 1, 1, [CounterSample(2, 1, [HostMemory(mem_total=1), UnknownRecord(9 << 12 | 9, bytes(8))])])
    )
    rng = random.Random(11)
    malformed = [good[:n] for n in range(0, len(good), 7)]  # truncated
    huge = bytearray(good)
    struct.pack_into(">I", huge, 28 + 4, 0x7FFFFFF0)  # the sample's length
    malformed.append(bytes(huge))
    huge_record = bytearray(good)
    struct.pack_into(">I", huge_record, 28 + 8 + 16 + 4, 0xFFFFFFF0)  # the first record's length
    malformed.append(bytes(huge_record))
    bad_unknown = bytearray(encode_datagram(Datagram(AGENT, 1, 1, 1, [UnknownSample(5 << 12 | 5, bytes(12))])))
    struct.pack_into(">I", bad_unknown, 28 + 4, 13)  # an unknown sample type whose length is not whole words
    malformed.append(bytes(bad_unknown))
    malformed += [rng.randbytes(rng.randrange(1, 1500)) for _ in range(200)]
    malformed += [b"\0\0\0\5" + rng.randbytes(rng.randrange(0, 200)) for _ in range(100)]
    unknown = [encode_datagram(Datagram(AGENT, 1, 1, 1, [UnknownSample(5 << 12 | 5, bytes(12))])), good]
    return malformed, unknown


def test_hostile_datagrams_are_counted_and_never_stop_the_exporter(exporter: Exporter) -> None:
    malformed, unknown = _hostile()
    exporter.send(malformed + unknown, batch=100)
    m = exporter.scrape()
    assert value(m, "sflow_collector_datagrams_total") == len(malformed) + len(unknown)
    assert value(m, "sflow_collector_decode_errors_total") == len(malformed)
    assert value(m, "sflow_collector_unknown_samples_total") == 1
    assert value(m, "sflow_collector_unknown_records_total") == 1
    assert value(m, "sflow_collector_export_failures_total") == 0
    assert _lost_sequence(exporter) == 3  # still decoding and exporting afterwards


@pytest.mark.parametrize("exporter", [("--prometheus-expiry", "2")], indirect=True)
def test_agents_and_sources_that_stop_sending_disappear(exporter: Exporter) -> None:
    assert _lost_sequence(exporter) == 3
    time.sleep(3.5)
    m = exporter.scrape()
    assert "sflow_mem_total_bytes" not in m
    assert m.get("sflow_collector_agent_datagrams_total", []) == []
    assert value(m, "sflow_collector_agents") == 0


def _flow(src: int, dst: int, size: int, rate: int) -> FlowSample:
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, size - 14, 0, 0, 64, 17, 0, src.to_bytes(4), dst.to_bytes(4))
    frame = bytes(12) + b"\x08\x00" + ip + struct.pack(">HHHH", 40000, 4789, size - 34, 0)
    return FlowSample(0, 3, rate, 0, 0, 3, 0x3FFFFFFF, [SampledHeader(1, size + 4, 4, frame)])


def _flood(start: int, count: int, per_datagram: int = 8) -> list[bytes]:
    """``count`` distinct flows, each datagram also carrying one sample of the same heavy flow."""
    heavy_src, heavy_dst = int(ipaddress.ip_address("10.9.9.9")), int(ipaddress.ip_address("10.8.8.8"))
    out = []
    for first in range(start, start + count, per_datagram):
        flows = [_flow(0x0A000000 + i, 0x0B000000 + i, 100, 10) for i in range(first, first + per_datagram)]
        flows.append(_flow(heavy_src, heavy_dst, 1500, 100))
        out.append(encode_datagram(Datagram(AGENT, 100000, first // per_datagram + 1, first, flows)))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("exporter", [("--prometheus-flows", "50")], indirect=True)
def test_a_hundred_thousand_flows_keep_series_and_memory_bounded(exporter: Exporter) -> None:
    exporter.send(_flood(0, 20_000))
    time.sleep(1.2)
    first_rss = exporter.rss_kib()
    for start in range(20_000, 100_000, 20_000):
        exporter.send(_flood(start, 20_000))
    time.sleep(1.2)
    m = exporter.scrape()
    last_rss = exporter.rss_kib()
    for name in ("sflow_flow_ip_bytes_total", "sflow_flow_port_packets_total"):
        assert len(m[name]) <= 50 + 1  # the top 50 and "other"
    assert value(m, "sflow_flow_ip_bytes_total", src="10.9.9.9", dst="10.8.8.8") > 0  # the heavy flow is exported
    assert value(m, "sflow_collector_flows_tracked", table="ip") <= 10 * 50
    assert value(m, "sflow_collector_agent_samples_total", agent=str(AGENT), type="flow") == 100_000 * 9 / 8
    print(f"RSS after 20k flows {first_rss} KiB, after 100k {last_rss} KiB")
    assert last_rss - first_rss < 4 * 1024
    assert last_rss < 100 * 1024


def test_without_prometheus_client_the_flag_is_refused_with_a_hint() -> None:
    code = "import sys; sys.modules['prometheus_client'] = None; from hsflowd_py.collector.cli import main; "
    code += "sys.exit(main(['-p', '0', '--prometheus', '0']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "apt-get install python3-prometheus-client" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("listen", ["not-a-port", "[::1]:99999", "192.0.2.1:9"])
def test_bad_listen_addresses_are_refused(listen: str) -> None:
    done = subprocess.run(
        python("-m", "hsflowd_py.collector", "-p", "0", "--prometheus", listen), capture_output=True, text=True
    )
    assert done.returncode == 2 and f"--prometheus {listen}" in done.stderr and "Traceback" not in done.stderr
