"""The packaged scrape job and Grafana dashboard: valid for Prometheus, and naming only metrics the exporter makes.

(The end-to-end test in test_prometheus_server.py runs every panel against
a real Prometheus; this one also runs where that cannot, and says which
name is wrong.)
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from procs import ROOT

from hsflowd_py.collector.forward import Forwarder
from hsflowd_py.collector.pcapfile import read_pcap
from hsflowd_py.sflow.codec import decode_datagram

pytest.importorskip("prometheus_client")
from hsflowd_py.collector.exporter.server import families  # noqa: E402
from hsflowd_py.collector.exporter.state import ExportState  # noqa: E402

VECTORS = Path("/work/shared/vectors")
DASHBOARD = ROOT / "packaging/grafana/hsflowd-py.json"


@dataclass
class Counts:
    datagrams: int = 0
    errors: int = 0


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus (promtool)")
def test_scrape_config_is_valid() -> None:
    done = subprocess.run(
        ["promtool", "check", "config", str(ROOT / "packaging/prometheus/prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not (VECTORS / "docker-containers.pcap").is_file(), reason="shared sFlow vectors absent")
def test_dashboard_uses_only_metrics_the_exporter_makes() -> None:
    state = ExportState(Counts())
    for name in ("host-flows", "docker-containers"):
        with open(VECTORS / f"{name}.pcap", "rb") as f:
            for packet in read_pcap(f):
                state.observe(decode_datagram(packet.payload), 0)
    forwarder = Forwarder([("127.0.0.1", 9)])
    try:
        made = set()
        for family in families(state, forwarder, now=2):
            made.add(family.name + ("_total" if family.type == "counter" else ""))
    finally:
        forwarder.close()
    dashboard = json.loads(DASHBOARD.read_text())
    used = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
            used |= set(re.findall(r"\bsflow_[a-z0-9_]+", target["expr"]))
    assert len(used) >= 20
    assert used - made == set()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(re.findall(r"\bsflow_[a-z0-9_]+", variables["agent"]["definition"])) <= made
