"""A real Prometheus scrapes the exporter fed by the real agent: host, container, top flows, every Grafana panel.

The whole stack runs once for this module, everything real and stopped by pid:

* Debian's Prometheus on a loopback port with the packaged
  ``packaging/prometheus/prometheus.yml`` (scrape interval 1 s for the test),
  its own storage directory;
* ``sflowtool-py --prometheus`` (also forwarding to a closed port, so the
  forward-error panel has data);
* the agent (``hsflowd-py``) with polling 1, the pcap module sampling a
  veth 1 in 8 with the classic BPF sampler, and the docker module following
  the test Docker engine, where a busybox container burns about a third of
  a CPU;
* iperf3 sending UDP at 50 Mbit/s for 10 s from a namespace across the veth
  (UDP, 1400-byte datagrams: one packet each, about 560 samples a second at
  1 in 8; TCP over a veth travels as 45 KB segmentation-offload packets,
  about 20 samples a second, too few for a 15% check on a few seconds).

Then Prometheus's HTTP query API must give the host's memory total of
/proc/meminfo, the container's CPU counter growing, the top flow at the rate
iperf3 measured (within 15%), and data for every PromQL expression of every
panel of ``packaging/grafana/hsflowd-py.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dockerd
import pytest
from netns import VethNamespace
from procs import ROOT, Proc, free_udp_port, start_agent, terminate
from test_prometheus_exporter import Exporter

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.docker,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, packet sockets)"),
    pytest.mark.skipif(not Path("/usr/bin/prometheus").exists(), reason="needs Debian's prometheus"),
]

DASHBOARD = ROOT / "packaging/grafana/hsflowd-py.json"
SCRAPE_CONFIG = ROOT / "packaging/prometheus/prometheus.yml"
IPERF_TIME = "10"
SAMPLING = 8


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """Debian's Prometheus with the packaged scrape job pointed at ``target``, scraping every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        text = SCRAPE_CONFIG.read_text()
        for old, new in (("scrape_interval: 15s", "scrape_interval: 1s"), ('"localhost:9343"', f'"{target}"')):
            assert old in text, f"{SCRAPE_CONFIG} no longer has {old}"
            text = text.replace(old, new)
        config = workdir / "prometheus.yml"
        config.write_text(text)
        self.port = free_tcp_port()
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - open for the server's life
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)
                return
            except OSError:
                alive = self.proc.poll() is None
                assert alive and time.monotonic() < deadline, (workdir / "prometheus.log").read_text()
                time.sleep(0.2)

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        url = f"http://127.0.0.1:{self.port}/api/v1/query?{urllib.parse.urlencode(params)}"
        reply = json.load(urllib.request.urlopen(url, timeout=10))
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def scalar(self, expr: str, at: float | None = None) -> float:
        result = self.query(expr, at)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    def wait_for(self, expr: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.query(expr):
            assert time.monotonic() < deadline, f"Prometheus never had data for {expr}"
            time.sleep(0.5)

    def stop(self) -> None:
        terminate(self.proc, 30)
        self.log.close()


@dataclass
class Stack:
    prometheus: Prometheus
    exporter: Exporter
    veth: VethNamespace
    container: str
    iperf: dict[str, Any]
    iperf_start: float
    iperf_end: float


def _agent_config(workdir: Path, udp_port: int, dev: str) -> Path:
    config = workdir / "hsflowd.conf"
    config.write_text(
        "sflow {\n"
        "  polling = 1\n"
        f"  sampling = {SAMPLING}\n"
        "  sampling.bps_ratio = 0\n"
        f"  collector {{ ip = 127.0.0.1 udpport = {udp_port} }}\n"
        f"  pcap {{ dev = {dev} sampler = cbpf }}\n"
        f"  docker {{ socket = {dockerd.SOCKET} }}\n"
        "}\n"
    )
    return config


def _iperf(v: VethNamespace) -> tuple[dict[str, Any], float, float]:
    server = Proc(["iperf3", "-s", "-1", "-B", v.host_ip, "-p", "5201"])
    try:
        time.sleep(0.5)
        start = time.time()
        client = subprocess.run(
            v.exec("iperf3", "-c", v.host_ip, "-p", "5201", "-u", "-l", "1400", "-b", "50M", "-t", IPERF_TIME, "-J"),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        end = time.time()
    finally:
        server.stop()
    return json.loads(client.stdout), start, end


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: dockerd.Engine, busybox_image: str
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("prometheus")
    name = f"co-burn-{os.getpid()}"
    burn = ["sh", "-c", "while :; do :; done"]  # no network: the engine's bridge is shared with other tests
    with contextlib.ExitStack() as cleanup:
        dockerd.docker("run", "-d", "--rm", "--name", name, "--network", "none", "--cpus", "0.3", busybox_image, *burn)
        cleanup.callback(dockerd.docker, "rm", "-f", name, check=False)
        exporter = Exporter("-f", f"127.0.0.1/{free_udp_port()}", "--prometheus-flows", "20")
        cleanup.callback(exporter.close)
        prometheus = Prometheus(workdir, f"127.0.0.1:{exporter.http}")
        cleanup.callback(prometheus.stop)
        v = cleanup.enter_context(VethNamespace("coprom", 65))
        agent = start_agent(_agent_config(workdir, exporter.udp, v.host_dev), workdir / "hsflowd.auto")
        cleanup.callback(lambda: agent.stop() == 0 or pytest.fail("".join(agent.stderr)[-3000:]))
        prometheus.wait_for(f'sflow_vcpu_cpu_seconds_total{{name="{name}"}}')
        prometheus.wait_for(f'sflow_if_in_octets_total{{name="{v.host_dev}"}}')
        iperf, start, end = _iperf(v)
        time.sleep(3)  # a few scrapes after the end
        yield Stack(prometheus, exporter, v, name, iperf, start, end)


def meminfo_bytes(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def test_the_exporter_is_scraped_cleanly(stack: Stack) -> None:
    p = stack.prometheus
    assert p.scalar('up{job="sflowtool-py"}') == 1
    assert p.scalar("sflow_collector_decode_errors_total") == 0
    assert p.scalar("sflow_collector_export_failures_total") == 0


def test_host_memory_total_equals_proc_meminfo(stack: Stack) -> None:
    expr = f'sflow_mem_total_bytes{{datasource="2:1",name="{socket.gethostname()}"}}'
    assert stack.prometheus.scalar(expr) == meminfo_bytes("MemTotal")


def test_container_cpu_counter_grows(stack: Stack) -> None:
    expr = f'sflow_vcpu_cpu_seconds_total{{datasource=~"3:.*",name="{stack.container}"}}'
    before = stack.prometheus.scalar(expr, stack.iperf_start)
    after = stack.prometheus.scalar(expr, stack.iperf_end)
    assert after - before > 0.1 * (stack.iperf_end - stack.iperf_start)  # --cpus 0.3 busy loop
    rate = stack.prometheus.scalar(f"rate({expr}[5s])", stack.iperf_end)
    assert 0.1 < rate < 0.5


def test_top_flow_bit_rate_is_what_iperf3_measured(stack: Stack) -> None:
    at = stack.iperf_end - 1
    window = int(stack.iperf_end - stack.iperf_start) - 3
    top = stack.prometheus.query(f'topk(1, rate(sflow_flow_ip_bytes_total{{src!="other"}}[{window}s]) * 8)', at)
    assert len(top) == 1
    labels, bits_per_second = top[0]["metric"], float(top[0]["value"][1])
    assert (labels["src"], labels["dst"]) == (stack.veth.ns_ip, stack.veth.host_ip)
    measured = stack.iperf["end"]["sum_received"]["bits_per_second"]
    print(f"top flow {bits_per_second / 1e6:.2f} Mbit/s, iperf3 {measured / 1e6:.2f} Mbit/s")
    assert abs(bits_per_second - measured) <= 0.15 * measured


def grafana_expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$agent", ".*").replace("$__rate_interval", "15s")
            out.append((f"{panel['title']} / {target['refId']}", expr))
    return out


def test_every_grafana_panel_finds_data(stack: Stack) -> None:
    expressions = grafana_expressions()
    assert len(expressions) >= 15
    empty = [(title, expr) for title, expr in expressions if not stack.prometheus.query(expr)]
    assert empty == []
