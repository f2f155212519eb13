"""The container image, built from the deb and run the way the established image is run, and the
way the DaemonSet runs it.

No registry is reachable, so the image is built FROM the debootstrapped bookworm of
tests/debian_image.py (``BASE=`` replaces debian:bookworm-slim); it already holds Debian's
python3-* libraries, so the build needs no network either. The container then runs as in
``docker run --net=host -v /var/run/docker.sock:/var/run/docker.sock:ro -e COLLECTOR=… -e SAMPLING=10``
with the test engine's socket, and this host's collector hears the host, the engine's
containers, and this test's pings to a container, sampled on that container's bridge (NET=pattern).
The DaemonSet's pod is run by containerd given exactly what the manifest gives the container
(tests/daemonset_pod.py), on this host, which has no /run/docker.sock, and on a node layout whose
/run holds the test containerd's CRI socket (tests/containerd.py), with pods made through the CRI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import containerd
import cri_pods
import daemonset_pod as daemonset_pod_runtime
import dockerd
import pytest
from deploy import bridge_network, build, daemonset_container, daemonset_pod
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


CRI_SOCKETS = ("containerd/containerd.sock", "k3s/containerd/containerd.sock", "crio/crio.sock")


def test_daemonset_pod_on_a_node_without_docker(image: str, workload: tuple[str, str]) -> None:
    """The pod as the DaemonSet makes it (tests/daemonset_pod.py: containerd runs it with exactly the
    manifest's namespaces, capabilities, seccomp, limits, mounts and environment), on a node with no
    docker.sock: it starts, samples with the packaged BPF object through libbpf, drops to nobody
    keeping CAP_BPF, sends flow samples of this test's pings to the collector on loopback, answers
    its liveness probe, runs on, and stops cleanly within its grace period. The same pod on a
    node with a CRI runtime: the test below."""
    if Path("/run/docker.sock").exists():
        pytest.skip("this host has /run/docker.sock: it is not a node without Docker")
    if present := [s for s in CRI_SOCKETS if Path("/run", s).exists()]:
        pytest.skip(f"this host has a CRI socket (/run/{present[0]}): the entrypoint would add k8s {{}}")
    container, bridge = workload
    name = f"hsflowd-deploy-ds-{os.getpid()}"
    port = free_udp_port()
    networks = json.loads(dockerd.docker("inspect", container).stdout)[0]["NetworkSettings"]["Networks"]
    (container_ip,) = [n["IPAddress"] for n in networks.values()]
    bridge_ds = f"0:{Path(f'/sys/class/net/{bridge}/ifindex').read_text().strip()}"
    env = {"COLLECTOR": "127.0.0.1", "PORT": str(port), "SAMPLING": "2", "POLLING": "2", "NET": f"^{bridge}$"}
    grace = daemonset_pod()["terminationGracePeriodSeconds"]
    probe_command = daemonset_container()["livenessProbe"]["exec"]["command"]
    with daemonset_pod_runtime.containerd() as runtime, start_collector(port, "-j") as collector:
        started = time.monotonic()
        runtime.import_from_docker(image)
        print(f"image imported into containerd in {time.monotonic() - started:.1f} s")
        pod = runtime.run(name, f"docker.io/{image}", daemonset_pod_runtime.ctr_run_args(env))
        try:
            got = []
            for d in json_datagrams(collector, 30):
                got.append(d)
                if any(s["sourceId"] == bridge_ds for s in d["samples"]):
                    break  # the bridge's sampler is attached
            subprocess.run(["ping", "-c", "200", "-i", "0.01", "-q", container_ip], capture_output=True, check=True)
            got += list(json_datagrams(collector, 6))
            probe, config, status = (
                runtime.ctr("tasks", "exec", "--exec-id", f"x{n}", name, *command, check=False)
                for n, command in enumerate([probe_command, ["cat", "/etc/hsflowd.conf"], ["cat", "/proc/self/status"]])
            )
            running = pod.p.poll() is None
            task = runtime.ctr("tasks", "list").stdout.split("\n", 1)[1].split()
            rss = next(ln for ln in Path(f"/proc/{task[1]}/status").read_text().splitlines() if ln.startswith("VmRSS"))
            print(f"agent in the DaemonSet's pod: {rss.split(':')[1].strip()} resident")
            exit_code = pod.stop(timeout=grace)
        finally:
            pod.stop(signal.SIGKILL)
        logs = "".join(pod.stderr)

    assert running and exit_code == 0, logs[-3000:]
    assert "Traceback" not in logs
    assert config.returncode == status.returncode == 0, config.stderr + status.stderr + logs[-3000:]
    config, status = config.stdout, status.stdout
    bounding = int(re.search(r"^CapBnd:\s+(\w+)$", status, re.M).group(1), 16)
    assert bounding == daemonset_pod_runtime.capability_mask(daemonset_pod_runtime.granted_capabilities()), status
    assert "docker {" not in config and "k8s {" not in config, config
    endian = "bpfel" if sys.byteorder == "little" else "bpfeb"
    assert f"pcap: the eBPF sampler is its BPF object sampler_core.{endian}.o loaded through libbpf" in logs, logs
    assert f"pcap: sampling {bridge} (ifIndex {bridge_ds[2:]}) 1-in-2 with the eBPF sampler" in logs, logs
    (dropped,) = [ln for ln in logs.splitlines() if "running as nobody" in ln]
    assert "CAP_BPF" in dropped and "not permitted, so not kept" not in logs, logs
    assert probe.returncode == 0 and json.loads(probe.stdout)["datagrams_sent"] > 0, probe.stderr
    every = samples(got)
    assert any(s["sourceId"] == "2:1" for s in every), f"no host samples; agent log:\n{logs[-2000:]}"
    flows = [s for s in every if s["sourceId"] == bridge_ds and s["sampleType"] == "FLOWSAMPLE"]
    pings = [s for s in flows if pinged(s, container_ip)]
    # 400 packets (pings and replies) crossed the bridge, sampled 1-in-2
    print(f"{len(pings)} flow samples of 400 ping packets sampled 1-in-2; {dropped.split('] ')[-1].strip()}")
    assert 130 <= len(pings) <= 270, f"{len(pings)} flow samples of the pings; agent log:\n{logs[-2000:]}"


@pytest.fixture
def node_runtime() -> Iterator[tuple[containerd.Containerd, Path]]:
    """The test containerd with its CRI plugin (tests/containerd.py), laid out as on a node: its
    folder is ``<run>/containerd`` (mode 0700, as the node's /run/containerd), so its socket is
    ``<run>/containerd/containerd.sock``, root:root 0660, where the entrypoint looks under
    HOST_RUN. ``<run>`` stands for the node's /run in the pod's hostPath; this host's own /run
    is left alone (another containerd may use /run/containerd). (the daemon, ``<run>``)"""
    if why_not := containerd.available():
        pytest.skip(why_not)
    run = Path(tempfile.mkdtemp(prefix="hsflowd-node-run-"))
    run.chmod(0o755)
    (run / "containerd").mkdir(mode=0o700)
    daemon = containerd.Containerd(run / "containerd")
    try:
        daemon.start()
        yield daemon, run
    finally:
        try:
            cri_pods.remove_all(daemon.socket)
        finally:
            daemon.stop()
            shutil.rmtree(run, ignore_errors=True)


def pod_hostname(pod: cri_pods.Pod) -> str:
    return f"k8s__{pod.name}_{pod.namespace}_u_a"


def test_daemonset_pod_sees_the_nodes_pods(image: str, node_runtime: tuple[containerd.Containerd, Path]) -> None:
    """The DaemonSet's pod (as above) on a containerd node: the node's /run holds the CRI socket,
    so the entrypoint adds k8s {}. It reports the node's pods (made through the CRI as kubelet
    makes them) as 3:N with their names, counts them in the host's 0:2100 and, with MARK_TRAFFIC
    on, names the pinging pod on flow samples of its pings sampled on the CNI bridge (0:2210).
    The runtime then restarts (a new socket in root's 0700 folder): the agent, by then nobody,
    connects again and reports a pod made after the restart."""
    runtime, node_run = node_runtime
    stat = os.stat(runtime.socket)
    assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (0, 0, 0o660), "the node's socket is root's"
    cri = cri_pods.Cri(runtime.socket)
    tag = f"{os.getpid() % 100000}"
    pinger = cri.run_pod(f"dsping-{tag}", "shop", ("ping", "-i", "0.05", containerd.GATEWAY))
    sleeper = cri.run_pod(f"dssleep-{tag}", "web")
    name = f"hsflowd-deploy-k8s-{os.getpid()}"
    port = free_udp_port()
    env = {
        "COLLECTOR": "127.0.0.1", "PORT": str(port), "SAMPLING": "4", "POLLING": "1",
        "NET": f"^{containerd.BRIDGE}$", "MARK_TRAFFIC": "on",
    }  # fmt: skip
    bridge_ds = f"0:{Path(f'/sys/class/net/{containerd.BRIDGE}/ifindex').read_text().strip()}"
    got: list[dict[str, Any]] = []

    def pods_seen() -> dict[str, set[int]]:
        """2000 hostnames of the 3:N samples so far, with their dsIndexes."""
        out: dict[str, set[int]] = {}
        for s in samples(got):
            if s["sourceId"].startswith("3:"):
                for e in s["elements"]:
                    if e.get("counterBlock_tag") == "0:2000":
                        out.setdefault(e["hostname"], set()).add(int(s["sourceId"][2:]))
        return out

    def collect_until(what: str, deadline_s: float, done: Any) -> None:
        for d in json_datagrams(collector, deadline_s):
            got.append(d)
            if done():
                return
        raise AssertionError(f"{what} not seen in {deadline_s} s; agent log:\n{''.join(pod.stderr)[-3000:]}")

    try:
        with daemonset_pod_runtime.containerd() as agent_runtime, start_collector(port, "-j") as collector:
            agent_runtime.import_from_docker(image)
            args = daemonset_pod_runtime.ctr_run_args(env, node={"/run": node_run})
            pod = agent_runtime.run(name, f"docker.io/{image}", args)
            try:
                wanted = {pod_hostname(pinger), pod_hostname(sleeper)}
                collect_until("both pods", 30, lambda: wanted <= pods_seen().keys())
                collect_until("marked pings", 15, lambda: marked_pings(got, bridge_ds))
                collect_until("0:2100 counting two pods", 5, lambda: domains(got)[-1:] == [2])
                before = pods_seen()
                config = agent_runtime.ctr("tasks", "exec", "--exec-id", "cfg", name, "cat", "/etc/hsflowd.conf")
                agent_pid = agent_runtime.ctr("tasks", "list").stdout.split("\n", 1)[1].split()[1]
                status = Path(f"/proc/{agent_pid}/status").read_text()  # hostPID: its /proc/1 is not the agent
                runtime.restart()
                cri.close()
                cri = cri_pods.Cri(runtime.socket)  # this test's connection went with the old daemon
                late = cri.run_pod(f"dslate-{tag}", "web")
                collect_until("the pod made after the runtime restarted", 20, lambda: pod_hostname(late) in pods_seen())
                collect_until("0:2100 counting three pods", 5, lambda: domains(got)[-1:] == [3])
                exit_code = pod.stop(timeout=daemonset_pod()["terminationGracePeriodSeconds"])
            finally:
                pod.stop(signal.SIGKILL)
    finally:
        cri.close()
    logs = "".join(pod.stderr)

    assert exit_code == 0 and "Traceback" not in logs, logs[-3000:]
    assert 'k8s { unixsock = "/host/run/containerd/containerd.sock" markTraffic = "on" }' in config.stdout
    (dropped,) = [ln for ln in logs.splitlines() if "running as nobody" in ln]
    assert "not permitted, so not kept" not in logs, logs
    # the socket's group (root's) kept, not CAP_DAC_OVERRIDE (modules/k8s/follower.py privileges())
    agent = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert agent["Groups"].split() == ["0"], status
    effective = int(agent["CapEff"], 16)
    switch = {"CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"}
    unused = {"CAP_SYSLOG"}  # dropmon {}'s, and the entrypoint's config has no dropmon block
    granted = daemonset_pod_runtime.granted_capabilities()
    assert unused <= granted
    assert effective == daemonset_pod_runtime.capability_mask(granted - switch - unused)
    seen = pods_seen()
    for p in (pinger, sleeper):
        assert seen[pod_hostname(p)] == before[pod_hostname(p)], "one dsIndex per pod, across the restart"
    (pinger_ds,) = seen[pod_hostname(pinger)]
    marks = marked_pings(got, bridge_ds)
    ends = [{(m[f"entities_{end}_class"], m[f"entities_{end}_index"]) for end in ("src", "dst")} for m in marks]
    assert all(("3", str(pinger_ds)) in e for e in ends), marks
    assert {x for e in ends for x in e if x[0] == "3"} == {("3", str(pinger_ds))}, marks
    print(f"{len(marks)} marked ping samples; {dropped.split('] ')[-1].strip()}")


def marked_pings(datagrams: list[dict[str, Any]], bridge_ds: str) -> list[dict[str, Any]]:
    """The 0:2210 of flow samples of pings to the gateway sampled on the CNI bridge."""
    out = []
    for s in samples(datagrams):
        if s["sourceId"] == bridge_ds and s["sampleType"] == "FLOWSAMPLE" and pinged(s, containerd.GATEWAY):
            out += [e for e in s["elements"] if e.get("flowBlock_tag") == "0:2210"]
    return out


def domains(datagrams: list[dict[str, Any]]) -> list[int]:
    """0:2100's count of virtual domains in the host's samples, in order."""
    return [
        int(e["vnode_num_domains"])
        for s in samples(datagrams)
        if s["sourceId"] == "2:1"
        for e in s["elements"]
        if e.get("counterBlock_tag") == "0:2100"
    ]
