"""The DaemonSet's pod on this host, run by containerd as the kubelet has it run: ``ctr run`` with
exactly what the manifest gives the container.

A private containerd (Debian's, on its own socket, root and state folders, the CRI plugin off: the
test asks for the container directly) runs the image, imported from the test Docker engine. Not the
engine itself: Docker 20.10 refuses ``--cap-add BPF`` ("unknown capability"), and containerd with
runc is what runs a Kubernetes pod on a containerd node. ``ctr run`` applies containerd's default
seccomp profile (``--seccomp``), the one the CRI plugin gives ``RuntimeDefault``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dockerd
from deploy import daemonset_container, daemonset_pod
from procs import Proc, terminate

NAMESPACE = "hsflowd-deploy"
POD_KEYS_FOR_SCHEDULING = {"dnsPolicy", "tolerations", "terminationGracePeriodSeconds"}
"""Pod fields that decide where the pod runs and how long its stop may take, not what it sees."""
CONTAINER_KEYS_ELSEWHERE = {"name", "image", "imagePullPolicy", "livenessProbe"}
"""Container fields ``ctr run`` takes from elsewhere (the test runs the probe with ``ctr task exec``)."""
PROPAGATION = {None: "rprivate", "None": "rprivate", "HostToContainer": "rslave", "Bidirectional": "rshared"}
"""Kubernetes' mountPropagation as bind-mount options (the kubelet's hostPath mounts are recursive)."""
UNITS = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}


def kernel_capabilities(header: Path = Path("/usr/include/linux/capability.h")) -> dict[str, int]:
    """Every capability the kernel's headers name, with its number (``drop: [ALL]`` drops each)."""
    return {name: int(n) for name, n in re.findall(r"^#define (CAP_[A-Z_]+)\s+(\d+)\s*$", header.read_text(), re.M)}


def capability_mask(names: set[str]) -> int:
    """The kernel's bit mask of ``names``, as /proc/PID/status shows it."""
    numbers = kernel_capabilities()
    return sum(1 << numbers[name] for name in names)


def granted_capabilities() -> set[str]:
    """The manifest's ``capabilities``, as the full names the kernel gives them."""
    caps = daemonset_container()["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"], caps
    return {f"CAP_{c}" for c in caps["add"]}


def ctr_run_args(env: dict[str, str], node: dict[str, Path] | None = None) -> list[str]:
    """``ctr run`` options that give the container what the DaemonSet's pod gives it on a node: its
    namespaces, capabilities, system call filter, resource limits, mounts and environment (``env``
    replaces the manifest's values of those variables). Read from the manifest, so a field this does
    not translate fails here rather than being left out; a hostPath the node lacks, or of the wrong
    type, raises as the kubelet refuses such a pod. ``node`` stands in for some of the node's
    paths (hostPath → a test folder laid out as the node's, e.g. a /run holding the test
    runtime's socket, where this host's own /run must not be touched)."""
    pod, c = daemonset_pod(), daemonset_container()
    unknown = set(pod) - POD_KEYS_FOR_SCHEDULING - {"hostNetwork", "hostPID", "containers", "volumes"}
    unknown |= set(c) - CONTAINER_KEYS_ELSEWHERE - {"env", "resources", "securityContext", "volumeMounts"}
    assert not unknown, f"the DaemonSet has fields this test does not translate: {unknown}"
    args = []
    if pod.get("hostNetwork"):
        args.append("--net-host")
    if pod.get("hostPID"):
        # The node's pid namespace, this process's (PID 1 of this machine refuses to show its own).
        args += ["--with-ns", f"pid:/proc/{os.getpid()}/ns/pid"]
    security = dict(c["securityContext"])
    granted = granted_capabilities()
    security.pop("capabilities")
    args += [a for cap in sorted(granted) for a in ("--cap-add", cap)]
    args += [a for cap in sorted(kernel_capabilities().keys() - granted) for a in ("--cap-drop", cap)]
    seccomp = security.pop("seccompProfile", {}).get("type", "Unconfined")
    assert seccomp in ("RuntimeDefault", "Unconfined"), seccomp
    if seccomp == "RuntimeDefault":
        args.append("--seccomp")
    assert not security, f"securityContext fields not translated: {set(security)}"
    limits = c["resources"]["limits"]
    cpu, memory = limits["cpu"], limits["memory"]
    args += ["--cpus", str(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu))]
    args += ["--memory-limit", str(int(memory[:-2]) * UNITS[memory[-2:]] if memory[-2:] in UNITS else int(memory))]
    volumes = {v["name"]: v["hostPath"] for v in pod["volumes"]}
    for m in c["volumeMounts"]:
        host = volumes[m["name"]]
        source = (node or {}).get(host["path"], Path(host["path"]))
        if not {"Directory": source.is_dir, "File": source.is_file}[host["type"]]():
            raise FileNotFoundError(f"the node has no {host['type']} {source}: the kubelet would refuse the pod")
        options = ":".join(["rbind", *(["ro"] if m.get("readOnly") else []), PROPAGATION[m.get("mountPropagation")]])
        args += ["--mount", f"type=bind,src={source},dst={m['mountPath']},options={options}"]
    values = {e["name"]: e["value"] for e in c["env"]} | env
    args += [a for name, value in values.items() for a in ("--env", f"{name}={value}")]
    return args


class Containerd:
    """A private containerd for one test: ``ctr()`` talks to it; ``stop()`` removes its containers,
    stops it by its pid and removes its folders."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hsflowd-ctrd-"))
        self.socket = self.dir / "containerd.sock"
        config = self.dir / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{self.dir / "root"}"\n'
            f'state = "{self.dir / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
        )
        self.log = open(self.dir / "containerd.log", "wb")  # noqa: SIM115 - kept open for the daemon's life
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=self.log, stderr=self.log, start_new_session=True
        )
        end = time.monotonic() + 30
        while self.ctr("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"containerd did not start: {(self.dir / 'containerd.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def ctr(self, *args: str, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess[str]:
        command = ["ctr", "--address", str(self.socket), "--namespace", NAMESPACE, *args]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=timeout, **kw)

    def import_from_docker(self, tag: str) -> None:
        """The test engine's image, as ``docker save`` writes it, into this containerd (native snapshots)."""
        archive = self.dir / "image.tar"
        dockerd.docker("save", "-o", str(archive), tag, timeout=300)
        self.ctr("images", "import", "--snapshotter", "native", str(archive), timeout=300)
        archive.unlink()

    def run(self, name: str, image: str, args: list[str]) -> Proc:
        """``ctr run`` in the foreground: its output is the container's, its exit status the container's,
        and a signal sent to it is passed on to the container's PID 1."""
        return Proc(["ctr", "--address", str(self.socket), "--namespace", NAMESPACE, "run", "--rm",
                     "--snapshotter", "native", *args, image, name])  # fmt: skip

    def stop(self) -> None:
        for task in self.ctr("tasks", "list", "--quiet", check=False).stdout.split():
            self.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
            self.ctr("tasks", "delete", "--force", task, check=False)
        for container in self.ctr("containers", "list", "--quiet", check=False).stdout.split():
            self.ctr("containers", "delete", container, check=False)
        terminate(self.proc, 30)
        self.log.close()
        dockerd.unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def containerd() -> Iterator[Containerd]:
    c = Containerd()
    try:
        yield c
    finally:
        c.stop()
