"""The container image, built from the deb and run the way the established image is run.

No registry is reachable, so the image is built FROM the debootstrapped bookworm of
tests/debian_image.py (``BASE=`` replaces debian:bookworm-slim); it already holds Debian's
python3-* libraries, so the build needs no network either. The container then runs as in
``docker run --net=host -v /var/run/docker.sock:/var/run/docker.sock:ro -e COLLECTOR=… -e SAMPLING=10``
with the test engine's socket, and this host's collector hears the host, the engine's
containers, and this test's pings to a container, sampled on that container's bridge (NET=pattern).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerd
import pytest
from deploy import bridge_network, build
from procs import free_udp_port, json_datagrams, start_collector

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def image(debian_systemd_image: str) -> Iterator[str]:
    tag = f"hsflowd-test/hsflowd-py:deploy-{os.getpid()}"
    with tempfile.TemporaryDirectory() as dist:
        started = time.monotonic()
        r = build(Path(dist), {"IMAGE": tag, "BASE": debian_systemd_image, "DOCKER_HOST": dockerd.HOST})
        assert r.returncode == 0, r.stdout + r.stderr
        print(f"deb, rpm and image built in {time.monotonic() - started:.1f} s")
    try:
        yield tag
    finally:
        dockerd.docker("rmi", "-f", tag, check=False)


@pytest.fixture
def workload(busybox_image: str) -> Iterator[tuple[str, str]]:
    """A container on a bridge of our own: (its name, the bridge's name)."""
    name = f"hsflowd-deploy-wl-{os.getpid()}"
    with bridge_network("dpimg", 83) as (network, bridge):
        dockerd.docker("rm", "-f", name, check=False)
        dockerd.docker("run", "-d", "--name", name, "--network", network, busybox_image, "sleep", "120")
        try:
            yield name, bridge
        finally:
            dockerd.docker("rm", "-f", name, check=False)


def samples(datagrams: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for d in datagrams for s in d["samples"]]


def test_image_sends_host_container_and_flow_samples(image: str, workload: tuple[str, str]) -> None:
    container, bridge = workload
    name = f"hsflowd-deploy-img-{os.getpid()}"
    port = free_udp_port()
    networks = json.loads(dockerd.docker("inspect", container).stdout)[0]["NetworkSettings"]["Networks"]
    (container_ip,) = [n["IPAddress"] for n in networks.values()]
    bridge_ds = f"0:{Path(f'/sys/class/net/{bridge}/ifindex').read_text().strip()}"
    with start_collector(port, "-j") as collector:
        dockerd.docker("rm", "-f", name, check=False)
        dockerd.docker(
            "run", "-d", "--name", name, "--net=host",
            "-v", f"{dockerd.SOCKET}:/var/run/docker.sock:ro",
            "-e", "COLLECTOR=127.0.0.1", "-e", f"PORT={port}", "-e", "SAMPLING=10", "-e", "POLLING=2",
            "-e", f"NET=^{bridge}$",
            image,
        )  # fmt: skip
        try:
            got = []
            for d in json_datagrams(collector, 20):
                got.append(d)
                if any(s["sourceId"] == bridge_ds for s in d["samples"]):
                    break  # the bridge's sampler is attached
            subprocess.run(["ping", "-c", "200", "-i", "0.01", "-q", container_ip], capture_output=True, check=True)
            got += list(json_datagrams(collector, 6))
            pid1 = dockerd.docker("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
            config = dockerd.docker("exec", name, "cat", "/etc/hsflowd.conf").stdout
            probe = dockerd.docker("exec", name, "hsflowd-py", "--status", check=False)  # the DaemonSet's probe
            host_pid = json.loads(dockerd.docker("inspect", name).stdout)[0]["State"]["Pid"]
            rss = next(ln for ln in Path(f"/proc/{host_pid}/status").read_text().splitlines() if ln.startswith("VmRSS"))
            print(f"agent in the image: {rss.split(':')[1].strip()} resident")
            dockerd.docker("stop", "-t", "10", name)
            state = json.loads(dockerd.docker("inspect", name).stdout)[0]["State"]
            logs = dockerd.docker("logs", name).stderr
        finally:
            dockerd.docker("rm", "-f", name, check=False)

    assert pid1[:2] == ["/usr/bin/python3", "/usr/bin/hsflowd-py"], "the agent is the container's PID 1"
    assert state["ExitCode"] == 0, logs[-2000:]
    assert probe.returncode == 0 and json.loads(probe.stdout)["datagrams_sent"] > 0, probe.stderr
    assert 'docker { socket = "/var/run/docker.sock" }' in config
    assert "Traceback" not in logs
    every = samples(got)
    host = [s for s in every if s["sourceId"] == "2:1"]
    assert host, f"no host samples; agent log:\n{logs[-2000:]}"
    assert {e["counterBlock_tag"]: e for e in host[-1]["elements"]}["0:2000"]["hostname"] == socket.gethostname()
    flows = [s for s in every if s["sourceId"] == bridge_ds and s["sampleType"] == "FLOWSAMPLE"]
    pings = [s for s in flows if pinged(s, container_ip)]
    # 400 packets (pings and replies) crossed the bridge, sampled 1-in-10
    assert 10 <= len(pings) <= 80, f"{len(pings)} flow samples of the pings; agent log:\n{logs[-2000:]}"
    containers = {
        e["hostname"]
        for s in every
        if s["sourceId"].startswith("3:")
        for e in s["elements"]
        if e["counterBlock_tag"] == "0:2000"
    }
    assert container in containers, f"container samples for {containers}; agent log:\n{logs[-2000:]}"


def pinged(sample: dict[str, Any], ip: str) -> bool:
    return any(e.get("IPProtocol") == "1" and ip in (e.get("srcIP"), e.get("dstIP")) for e in sample["elements"])
