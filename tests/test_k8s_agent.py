"""End to end: the agent with ``k8s { }`` against a real containerd 1.6 (its CRI plugin, CNI bridge),
pods made as kubelet makes them (tests/cri_pods.py), datagrams decoded by the bundled collector.

Ground truth is the kernel's: the pod cgroup's files, the pod namespace's interfaces (``ip`` run
inside it), the runtime's own records (pod UID), never the module's output.  One containerd for
the module's tests (it takes ~3 s to start and import the images); run under the heavy lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import containerd
import pytest
from cri_pods import Cri, Pod
from pcap_netns import veth_pair
from procs import Proc, free_udp_port
from test_docker_agent import Run

why_not = containerd.available()
pytestmark = pytest.mark.skipif(bool(why_not), reason=why_not)
TAG = f"t{os.getpid() % 100000}"


@pytest.fixture(scope="module")
def runtime() -> Iterator[containerd.Containerd]:
    with containerd.running() as daemon:
        yield daemon


@pytest.fixture
def cri(runtime: containerd.Containerd) -> Iterator[Cri]:
    client = Cri(runtime.socket)
    before = set(client.sandbox_ids())
    yield client
    for sandbox in set(client.sandbox_ids()) - before:
        client.remove_pod(sandbox)
    client.close()


@pytest.fixture
def agent(tmp_path: Path, runtime: containerd.Containerd) -> Iterator[Any]:
    runs: list[Run] = []

    def make(k8s: str = "", polling: int = 2, **kwargs: Any) -> Run:
        block = f"k8s {{ unixsock = {runtime.socket} {k8s} }}"
        r = Run(tmp_path, runtime.socket, polling=polling, block=block, **kwargs)
        runs.append(r)
        return r

    yield make
    for r in runs:
        r.stop()


def hostname(pod: Pod) -> str:
    return f"k8s__{pod.name}_{pod.namespace}_u_a"


def pod_cgroup(pod: Pod, controller: str) -> Path:
    return containerd.CGROUP_ROOT / controller / containerd.CGROUP_TOP / "besteffort" / f"pod{pod.uid}"


def sandbox_pid(pod: Pod) -> int:
    return int((pod_cgroup(pod, "pids") / pod.sandbox_id / "cgroup.procs").read_text().split()[0])


def pod_links(pod: Pod) -> list[dict[str, Any]]:
    """The pod namespace's links as ``ip -j`` shows them from inside."""
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{sandbox_pid(pod)}/ns/net", "ip", "-j", "link", "show"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [link for link in json.loads(out) if link["ifname"] != "lo"]


def following(run: Run) -> bool:
    return "k8s: following the runtime" in run.stderr()


def test_pods_from_start_to_final_sample(cri: Cri, agent: Any) -> None:
    early = cri.run_pod(f"early-{TAG}", "shop", ("ping", "-i", "0.2", containerd.GATEWAY))
    run = agent(polling=2, drop_root=True)
    run.wait_for("the module to follow the runtime", 15, lambda: following(run))
    first = run.wait_for("the pod present at start", 5, lambda: run.of(hostname(early)))[0]
    assert first.e["0:2000"]["UUID"] == early.uid
    assert (first.e["0:2002"]["parent_dsClass"], first.e["0:2002"]["parent_dsIndex"]) == ("2", "1")
    links = pod_links(early)
    assert [a["mac_list"] for a in first.e["0:2001"]["adaptor_list"]] == [
        [link["address"].replace(":", "")] for link in links
    ]
    assert first.state == 1

    # a pod started while the agent runs, and one that lives a second
    late = cri.run_pod(f"late-{TAG}", "web", ("sleep", "3600"))
    late_started = time.monotonic()
    brief = cri.run_pod(f"brief-{TAG}", "web", ("sleep", "3600"))
    time.sleep(1)
    cri.remove_pod(brief.sandbox_id)
    seen = run.wait_for("the late pod", 5, lambda: run.of(hostname(late)))[0]
    assert seen.at - late_started <= 2.5
    final = run.wait_for(
        "the brief pod's final sample", 10, lambda: [s for s in run.of(hostname(brief)) if s.state == 4]
    )
    assert final[-1] is run.of(hostname(brief))[-1] and final[-1].value("0:2102", "vmem_memory") > 0

    # counters move with the kernel's: the pinging pod's traffic, memory of its cgroup
    run.wait_for("three samples of the early pod", 8, lambda: len(run.of(hostname(early))) >= 3)
    a, b = run.of(hostname(early))[-2:]
    assert b.value("0:2104", "vnio_pkts_out") - a.value("0:2104", "vnio_pkts_out") >= 5, "ping every 0.2 s"
    assert b.value("0:2104", "vnio_pkts_in") > a.value("0:2104", "vnio_pkts_in")
    memory = int((pod_cgroup(early, "memory") / "memory.usage_in_bytes").read_text())
    assert abs(b.value("0:2102", "vmem_memory") - memory) <= max(memory // 4, 1 << 20)
    cpu_ms = int((pod_cgroup(early, "cpuacct") / "cpuacct.usage").read_text()) // 1_000_000
    assert 0 < b.value("0:2101", "vcpu_cpu_mS") <= cpu_ms

    # 0:2100 on the host counts the pods
    node = run.wait_for("a host sample with 0:2100", 6, lambda: [h for h in run.hosts if "0:2100" in h])[-1]
    assert int(node["0:2100"]["vnode_num_domains"]) == 2
    assert len({s.ds_index for s in run.of(hostname(early))}) == 1
    assert "Traceback" not in run.stderr()


def test_runtime_restart_loses_and_duplicates_nothing(cri: Cri, agent: Any, runtime: containerd.Containerd) -> None:
    pods = [cri.run_pod(f"keep{i}-{TAG}", "ops", ("sleep", "3600")) for i in range(3)]
    run = agent(polling=1)
    run.wait_for("the three pods", 10, lambda: all(run.of(hostname(p)) for p in pods))
    indexes = {hostname(p): run.of(hostname(p))[0].ds_index for p in pods}
    runtime.restart()
    restarted = time.monotonic()
    run.pump(3)
    for p in pods:
        after = [s for s in run.of(hostname(p)) if s.at > restarted]
        assert after and {s.ds_index for s in after} == {indexes[hostname(p)]}
        assert all(s.state == 1 for s in run.of(hostname(p))), "no final sample for a pod that kept running"
    assert len({s.ds_index for s in run.samples if s.hostname in indexes}) == 3
    assert "Traceback" not in run.stderr()


def host_veth(pod: Pod) -> str:
    """The host end of the pod's eth0 (its peer's ifindex, as the pod sees it, named on the host)."""
    (eth0,) = pod_links(pod)
    return socket.if_indextoname(int(eth0["link_index"]))


def pod_ip(pod: Pod) -> str:
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{sandbox_pid(pod)}/ns/net", "ip", "-j", "-4", "addr", "show", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return str(json.loads(out)[0]["addr_info"][0]["local"])


def test_pod_to_pod_traffic_is_marked_on_both_sides(cri: Cri, agent: Any) -> None:
    b = cri.run_pod(f"mb-{TAG}", "shop", ("sleep", "3600"))
    b_ip = pod_ip(b)
    a = cri.run_pod(f"ma-{TAG}", "shop", ("ping", "-i", "0.1", b_ip))
    a_ip, veth = pod_ip(a), host_veth(a)
    run = agent(k8s="markTraffic = on", polling=1, extra=f"pcap {{ dev = {veth} sampler = cbpf sampling = 1 }}")
    ds = run.wait_for("both pods", 10, lambda: (run.of(hostname(a)) and run.of(hostname(b))) and True)
    assert ds
    ds_a, ds_b = run.of(hostname(a))[0].ds_index, run.of(hostname(b))[0].ds_index
    # samples encoded once both pods were tracked (their counter samples come after the claims):
    # one taken between the two pods' discoveries rightly names only the one known then
    tracked = len(run.flows)

    def marked() -> list[tuple[str, int, int]]:
        out = []
        for f in run.flows[tracked:]:
            el = {e["flowBlock_tag"]: e for e in f["elements"]}
            h = el.get("0:1", {})
            if {h.get("srcIP"), h.get("dstIP")} == {a_ip, b_ip} and "0:2210" in el:
                e = el["0:2210"]
                assert (e["entities_src_class"], e["entities_dst_class"]) == ("3", "3")
                out.append((h["srcIP"], int(e["entities_src_index"]), int(e["entities_dst_index"])))
        return out

    got = run.wait_for("marked samples both ways", 15, lambda: len({m[0] for m in marked()}) == 2 and marked())
    for src_ip, src, dst in got:
        assert (src, dst) == ((ds_a, ds_b) if src_ip == a_ip else (ds_b, ds_a))
    assert "Traceback" not in run.stderr()


def test_pod_veths_are_sampled_on_request_and_named_after_their_pods(cri: Cri, agent: Any) -> None:
    """``pcap { dynamic = on }`` samples the veths k8s asks for (not cni0's other ports, not before
    the pod, not after it); the veth's counter samples name the pod in 0:1005."""
    b = cri.run_pod(f"vb-{TAG}", "shop", ("sleep", "3600"))
    b_ip = pod_ip(b)
    a = cri.run_pod(f"va-{TAG}", "shop", ("ping", "-i", "0.1", b_ip))
    a_ip = pod_ip(a)
    veth_a = host_veth(a)
    veths = {hostname(a): socket.if_nametoindex(veth_a), hostname(b): socket.if_nametoindex(host_veth(b))}
    run = agent(
        k8s="markTraffic = on setIfName = on",
        polling=1,
        extra='pcap { dev.pattern = "^veth" dynamic = on sampler = cbpf sampling = 1 }',
    )
    ds = {name: run.wait_for(name, 10, lambda n=name: run.of(n))[0].ds_index for name in veths}

    def marked_on(ifindex: int) -> list[tuple[int, int]]:
        out = []
        for f in run.flows:
            el = {e["flowBlock_tag"]: e for e in f["elements"]}
            h = el.get("0:1", {})
            if f["sourceId"] == f"0:{ifindex}" and {h.get("srcIP"), h.get("dstIP")} == {a_ip, b_ip}:
                e = el.get("0:2210", {})
                src = ds[hostname(a)] if h["srcIP"] == a_ip else ds[hostname(b)]
                dst = ds[hostname(b)] if h["srcIP"] == a_ip else ds[hostname(a)]
                assert (e.get("entities_src_class"), e.get("entities_dst_class")) == ("3", "3"), el
                assert (int(e["entities_src_index"]), int(e["entities_dst_index"])) == (src, dst)
                out.append((src, dst))
        return out

    for name, ifindex in veths.items():
        both = run.wait_for(f"marked pings both ways on {name}'s veth", 10, lambda i=ifindex: set(marked_on(i)))
        assert len(both) == 2
        named = run.wait_for(
            f"{name}'s veth counters", 5, lambda i=ifindex: [p for i2, p in run.ports if i2 == i and "0:1005" in p]
        )
        assert {p["0:1005"]["ifName"] for p in named} == {name}
    assert {i for i, _ in run.ports} == set(veths.values()), "only the requested veths are sampled"

    cri.remove_pod(a.sandbox_id)
    run.wait_for("the removed pod's veth to be closed", 10, lambda: f"stopped sampling {veth_a} " in run.stderr())
    run.pump(1)
    flows, ports = len(run.flows), len(run.ports)
    run.pump(2)
    assert not [f for f in run.flows[flows:] if f["sourceId"] == f"0:{veths[hostname(a)]}"], "its veth is not sampled"
    assert not [i for i, _ in run.ports[ports:] if i == veths[hostname(a)]]
    assert "Traceback" not in run.stderr()


def test_plain_containerd_containers(runtime: containerd.Containerd, cri: Cri, tmp_path: Path) -> None:
    """containerd { }: a container run by ``ctr`` (namespace hsflowd-test; no CNI: a network
    namespace of its own with only ``lo``); the CRI's pods and their containers (namespace k8s.io)
    are k8s { }'s, not reported here."""
    cri.run_pod(f"notmine-{TAG}", "shop", ("sleep", "3600"))
    cid = f"plain-{TAG}"
    pid = runtime.ctr_run(cid, "sleep", "3600")
    block = f"containerd {{ unixsock = {runtime.socket} }}"
    run = Run(tmp_path, runtime.socket, polling=1, block=block)
    try:
        first = run.wait_for("the container", 10, lambda: run.of(cid))[0]
        assert first.state == 1 and first.e["0:2001"].get("adaptor_list", []) == []
        links = subprocess.run(
            ["nsenter", f"--net=/proc/{pid}/ns/net", "ip", "-j", "link", "show"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert [link["ifname"] for link in json.loads(links)] == ["lo"]
        assert first.value("0:2104", "vnio_bytes_in") == 0 and first.value("0:2104", "vnio_pkts_out") == 0
        cgroup = containerd.CGROUP_ROOT / "memory" / containerd.PLAIN_CGROUP_TOP / cid
        assert str(pid) in (cgroup / "cgroup.procs").read_text().split()
        memory = int((cgroup / "memory.usage_in_bytes").read_text())
        assert abs(first.value("0:2102", "vmem_memory") - memory) <= max(memory // 4, 1 << 20)
        run.pump(1.5)
        assert {s.hostname for s in run.samples} == {cid}, "the CRI's pods are k8s {}'s"
        runtime.ctr_remove(cid)
        final = run.wait_for("its final sample", 5, lambda: [s for s in run.of(cid) if s.state == 4])
        assert final[-1] is run.of(cid)[-1]
        assert "Traceback" not in run.stderr()
    finally:
        runtime.ctr_remove(cid)
        run.stop()


ECHO_PORT = 7777
ECHO_SERVER = f"""
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {ECHO_PORT}))
s.listen()
print("listening", flush=True)
def echo(c):
    while data := c.recv(4096):
        c.sendall(data)
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
"""
SFLOWTOOL = "/tmp/sflowtool-src/sflowtool"
ENTITY_FIELDS = ("src_class", "src_index", "dst_class", "dst_index")


def container_pids(pod: Pod) -> list[int]:
    cgroup = pod_cgroup(pod, "pids") / pod.containers[0] / "cgroup.procs"
    return [int(p) for p in cgroup.read_text().split()]


def tcp_ports_of(pids: list[int]) -> set[int]:
    """Local ports of the TCP sockets these processes hold (their fds' inodes in /proc/net/tcp)."""
    inodes = set()
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        for fd in os.listdir(fds):
            with contextlib.suppress(OSError):
                link = os.readlink(fds / fd)
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return {int(row[1].split(":")[1], 16) for row in rows if row[9] in inodes and row[3] == "01"}


def sflowtool_flows(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """sflowtool's flow samples by (sourceId, sequence number): their fields, records' included."""
    out = {}
    for block in re.findall(r"startSample -+\n(.*?)endSample", text, flags=re.S):
        fields = dict(line.split(" ", 1) for line in block.strip().splitlines() if " " in line)
        if fields.get("sampleType") == "FLOWSAMPLE":
            out[(fields["sourceId"], fields["sampleSequenceNo"])] = fields
    return out


def test_host_network_pod_traffic_is_marked_by_its_sockets_cgroup(cri: Cri, agent: Any) -> None:
    """A ``hostNetwork: true`` pod has the host's MACs and addresses; its TCP traffic is named by the
    cgroup of its socket (the tcp module's sock_diag answer, mapped to the pod's cgroups in the
    unified hierarchy, where runc puts each container on this hybrid host).  The pod talks to a
    server in a namespace over a veth; a host process that is no pod talks to the same server and
    stays unmarked.  Ground truth: the CRI's pod UID, the pod's processes in its cgroup, their
    sockets in /proc; sflowtool decodes the same datagrams when it is there."""
    tool_port = free_udp_port()
    tool = Proc([SFLOWTOOL, "-p", str(tool_port)]) if os.access(SFLOWTOOL, os.X_OK) else None
    try:
        marked, host_samples, ds_index, host_ip = host_network_marking(cri, agent, tool_port if tool else None)
        theirs = sflowtool_flows("".join(tool.lines_until(0.5))) if tool else None
    finally:
        if tool:
            tool.stop()
    for s in marked:
        e = s.get("0:2210", {})
        want = ["3", str(ds_index), "0", "0"] if s["0:1"]["srcIP"] == host_ip else ["0", "0", "3", str(ds_index)]
        assert [e.get(f"entities_{k}") for k in ENTITY_FIELDS] == want, s
    assert host_samples and all("0:2210" not in s for s in host_samples), "a host process is no pod"
    if theirs is None:
        pytest.skip(f"no sflowtool at {SFLOWTOOL}: the bundled collector's decoding alone was checked")
    for s in marked:
        t = theirs[(s["sample"]["sourceId"], str(s["sample"]["sampleSequenceNo"]))]
        assert (t["srcIP"], t["TCPSrcPort"]) == (s["0:1"]["srcIP"], s["0:1"]["TCPSrcPort"])
        assert [t.get(f"entities_{k}") for k in ENTITY_FIELDS] == [s["0:2210"][f"entities_{k}"] for k in ENTITY_FIELDS]


def host_network_marking(
    cri: Cri, agent: Any, tool_port: int | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int, str]:
    """The samples with 0:2209 of the hostNetwork pod's connection and of the host process's, the
    pod's dsIndex and the host's address on the veth."""
    with veth_pair("k8shn", ipv6=False) as v, Proc(v.exec(sys.executable, "-c", ECHO_SERVER)) as server:
        assert any("listening" in line for line in server.lines_until(10)), server.stderr
        loop = f"while true; do echo ping; sleep 0.1; done | nc {v.ns_ip} {ECHO_PORT} >/dev/null"
        pod = cri.run_pod(
            f"hostnet-{TAG}", "kube-system", ("sh", "-c", f"while true; do {loop}; sleep 0.5; done"), True
        )
        pids = container_pids(pod)
        assert all(os.readlink(f"/proc/{p}/ns/net") == os.readlink("/proc/self/ns/net") for p in pids)
        in_unified = f"0::/{containerd.CGROUP_TOP}/besteffort/pod{pod.uid}/{pod.containers[0]}"
        assert all(in_unified in Path(f"/proc/{p}/cgroup").read_text().splitlines() for p in pids)
        collectors = f"collector {{ ip = 127.0.0.1 udpport = {tool_port} }}" if tool_port else ""
        run = agent(
            k8s="markTraffic = on",
            polling=1,
            extra=f"tcp {{ }}\n pcap {{ dev = {v.host_dev} sampler = cbpf sampling = 1 }}\n {collectors}",
        )
        try:
            ds = run.wait_for("the pod", 10, lambda: run.of(hostname(pod)))[0]
            assert ds.e["0:2000"]["UUID"] == pod.uid
            pod_ports = run.wait_for("the pod's connection", 10, lambda: tcp_ports_of(container_pids(pod)))
            host = socket.create_connection((v.ns_ip, ECHO_PORT), timeout=5)
            host_port = host.getsockname()[1]

            def samples(port: int) -> list[dict[str, Any]]:
                out = []
                for f in run.flows:
                    el = {e["flowBlock_tag"]: e for e in f["elements"]}
                    h = el.get("0:1", {})
                    if str(port) in (h.get("TCPSrcPort"), h.get("TCPDstPort")) and "0:2209" in el:
                        out.append({"sample": f, **el})
                return out

            def both_ways() -> list[dict[str, Any]]:
                host.sendall(b"not a pod\n")
                got = [s for p in pod_ports for s in samples(p)]
                sent = [s for s in got if s["0:1"]["srcIP"] == v.host_ip]
                return got if sent and len(sent) < len(got) and samples(host_port) else []

            marked = run.wait_for("samples of both connections both ways, with 0:2209", 15, both_ways)
            host.close()
            assert "Traceback" not in run.stderr()
            return marked, samples(host_port), ds.ds_index, v.host_ip
        finally:
            run.stop()
