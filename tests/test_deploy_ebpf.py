"""The unit's capability bounding set is enough for eBPF sampling.

The deb test's container has no bcc (and Docker 20.10 cannot grant CAP_BPF by name), so the
eBPF sampler is proven here instead: the real agent on this host, started the way systemd
starts it — root restricted to the unit's CapabilityBoundingSet, no_new_privs — samples a veth
with eBPF, drops to its user, and keeps sampling.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy import unit_capabilities
from netns import VethNamespace
from procs import Proc, free_udp_port, json_datagrams, python, start_collector

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(importlib.util.find_spec("bcc") is None, reason="python3-bpfcc not installed"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="util-linux setpriv not installed"),
]


def agent_as_systemd_starts_it(tmp_path: Path, config: Path, caps: set[str]) -> Proc:
    bounding = ",".join(["-all", *(f"+{c.removeprefix('CAP_').lower()}" for c in sorted(caps))])
    agent = python("-m", "hsflowd_py", "-d", "-f", str(config), "-o", str(tmp_path / "auto"))
    return Proc(["setpriv", f"--bounding-set={bounding}", "--no-new-privs", *agent, "-s", str(tmp_path / "sock")])


def flow_samples(tmp_path: Path, v: VethNamespace, caps: set[str]) -> tuple[int, str]:
    port = free_udp_port()
    config = tmp_path / "hsflowd.conf"
    config.write_text(
        f"sflow {{\n polling = 2\n collector {{ ip = 127.0.0.1 udpport = {port} }}\n"
        f" pcap {{ dev = {v.host_dev} sampling = 2 sampler = ebpf }}\n}}\n"
    )
    with start_collector(port, "-j") as collector, agent_as_systemd_starts_it(tmp_path, config, caps) as agent:
        # the first counter sample of the interface means its sampler is attached
        next((d for d in json_datagrams(collector, 20) if sources(d) & {f"0:{v.host_ifindex}"}), None)
        subprocess.run(["ping", "-c", "100", "-i", "0.01", "-q", v.ns_ip], capture_output=True, check=True)
        flows = 0
        for d in json_datagrams(collector, 3):
            flows += sum(s["sampleType"] == "FLOWSAMPLE" for s in d["samples"])
        agent.stop()
        return flows, "".join(agent.stderr)


def sources(datagram: dict) -> set[str]:
    return {s["sourceId"] for s in datagram["samples"]}


def test_ebpf_sampling_inside_the_units_bounding_set(tmp_path: Path) -> None:
    caps = unit_capabilities()
    with VethNamespace("dply", 81, ipv6=False) as v:
        flows, log = flow_samples(tmp_path, v, caps)
        if "with the eBPF sampler" not in log:
            _, as_root = flow_samples(tmp_path, v, caps | {"CAP_SYS_ADMIN", "CAP_PERFMON", "CAP_SYS_RESOURCE"})
            if "with the eBPF sampler" not in as_root:
                pytest.skip(f"eBPF sampling is unavailable on this machine even as root:\n{as_root[-1500:]}")
    assert "with the eBPF sampler" in log, f"eBPF works as root but not in the unit's bounding set:\n{log}"
    assert "running as nobody" in log and "cannot drop privileges" not in log
    # 200 packets (100 pings and their replies) sampled 1-in-2
    assert 50 <= flows <= 150, log
