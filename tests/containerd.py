"""The test containerd: Debian's containerd 1.6 with its CRI plugin, run as kubelet's runtime would be.

Everything is private to the run: its own ``root``, ``state`` and gRPC socket under a temporary
folder, the ``native`` snapshotter (no overlay mounts to leave behind), CNI from Debian's
containernetworking-plugins (a ``bridge`` + ``host-local`` conflist like the ``cni0`` of a
kubeadm/flannel node, on a bridge and subnet of its own whose IPAM state lives in the folder too).
``restrict_oom_score_adj = true`` because this machine lacks CAP_SYS_RESOURCE: without it runc
cannot lower the sandbox's ``oom_score_adj`` to -998 and RunPodSandbox fails ("can't get final
child's PID from pipe: EOF").

No registry is reachable, so the two images are written here as OCI image tarballs and imported
with ``ctr``: the pause image from a static C ``pause()`` loop (gcc, as kubernetes' own pause), and
a busybox image from Debian's busybox-static.

Teardown puts the host back: pods stopped and removed through the CRI (which removes their
network namespaces under /run/netns and their veths), the daemon and any shim left stopped by pid
(a shim is found by the address of this daemon on its command line), the bridge deleted, the pods'
cgroups removed, the folder removed, and /run/containerd (shim sockets) if the run made it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dockerd import unmount_under
from procs import terminate

BRIDGE = "hsfk8s0"
SUBNET = "10.253.118.0/24"
GATEWAY = "10.253.118.1"
PAUSE_IMAGE = "docker.io/hsflowd-test/pause:1"
BUSYBOX_IMAGE = "docker.io/hsflowd-test/busybox:1"
CGROUP_TOP = "kubepods"
"""Pods' cgroups go under /kubepods/<qos>/pod<uid> (kubelet's cgroupfs driver layout)."""
PLAIN_CGROUP_TOP = "hsflowd-ctr"
"""Containers run with ``ctr`` (containerd { }) go under /hsflowd-ctr/<id>."""
PLAIN_NAMESPACE = "hsflowd-test"
CGROUP_ROOT = Path("/sys/fs/cgroup")
SHIM_SOCKETS = Path("/run/containerd/s")
"""Where containerd 1.6's shims put their sockets whatever the config says, beside ``ctr``'s fifo
folder (removed if the run made them and they are empty: another session's containerd may use them)."""

PAUSE_C = r"""
#include <signal.h>
#include <unistd.h>
static void quit(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGTERM, quit);
  signal(SIGINT, quit);
  for (;;) pause();
}
"""


def available() -> str:
    """Why the containerd tests cannot run here ('' when they can)."""
    if os.geteuid() != 0:
        return "the containerd tests need root"
    for tool in ("containerd", "ctr", "runc", "gcc", "busybox"):
        if shutil.which(tool) is None:
            return f"the containerd tests need {tool} (scripts/debian-test-packages.txt)"
    if not Path("/usr/lib/cni/bridge").exists():
        return "the containerd tests need Debian's containernetworking-plugins"
    try:
        import grpc  # noqa: F401
    except ImportError:
        return "the containerd tests need python3-grpcio"
    return ""


# ------------------------------------------------------------------ images


def _blob(blobs: dict[str, bytes], data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes | None = None, mode: int = 0o755, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.mode = mode
    if link:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def oci_archive(name: str, files: dict[str, bytes], links: dict[str, str], entrypoint: list[str]) -> bytes:
    """An OCI image layout tarball of one image with one layer, named ``name`` for ``ctr import``."""
    layer_io = io.BytesIO()
    with tarfile.open(fileobj=layer_io, mode="w") as tar:
        dirs = sorted({str(Path(p).parent) for p in [*files, *links]} - {"."})
        for d in dirs:
            _tar_add(tar, d)
        for path, data in files.items():
            _tar_add(tar, path, data)
        for path, target in links.items():
            _tar_add(tar, path, link=target)
    layer = layer_io.getvalue()
    blobs: dict[str, bytes] = {}
    layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_blob(blobs, gzip.compress(layer))}
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(blobs, json.dumps(config).encode())}
    manifest = {"schemaVersion": 2, "config": config_desc, "layers": [layer_desc]}
    manifest_desc = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        **_blob(blobs, json.dumps(manifest).encode()),
        "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
        "platform": {"architecture": "amd64", "os": "linux"},
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        _tar_add(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), 0o644)
        _tar_add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}).encode(), 0o644)
        for digest, data in blobs.items():
            _tar_add(tar, f"blobs/sha256/{digest.split(':')[1]}", data, 0o644)
    return out.getvalue()


def pause_archive(work: Path) -> bytes:
    src, binary = work / "pause.c", work / "pause"
    src.write_text(PAUSE_C)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(binary), str(src)], check=True, capture_output=True)
    return oci_archive(PAUSE_IMAGE, {"pause": binary.read_bytes()}, {}, ["/pause"])


def busybox_archive() -> bytes:
    busybox = Path(shutil.which("busybox") or "/bin/busybox").read_bytes()
    applets = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    links = {f"bin/{a}": "busybox" for a in applets if a != "busybox"}
    return oci_archive(BUSYBOX_IMAGE, {"bin/busybox": busybox}, links, ["/bin/sh"])


# ------------------------------------------------------------------ daemon


class Containerd:
    """A containerd for the tests; ``start()`` returns once its CRI answers, with both images imported."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "containerd.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.cgroups_at_start = self.cgroup_tops()
        self.run_dir_at_start = SHIM_SOCKETS.parent.exists()

    @staticmethod
    def cgroup_tops() -> set[Path]:
        return {p for top in (CGROUP_TOP, PLAIN_CGROUP_TOP) for p in CGROUP_ROOT.glob(f"*/{top}")}

    def ctr_run(self, cid: str, *command: str) -> int:
        """A plain containerd container (not a pod) in PLAIN_NAMESPACE, as ``ctr run`` makes it; its pid."""
        self.ctr(
            "run",
            "-d",
            "--snapshotter",
            "native",
            "--cgroup",
            f"/{PLAIN_CGROUP_TOP}/{cid}",
            BUSYBOX_IMAGE,
            cid,
            *command,
            namespace=PLAIN_NAMESPACE,
        )
        out = self.ctr("task", "ls", namespace=PLAIN_NAMESPACE).stdout
        return next(int(line.split()[1]) for line in out.splitlines() if line.split()[:1] == [cid])

    def ctr_remove(self, cid: str) -> None:
        for args in (
            ("task", "kill", "-s", "SIGKILL", cid),
            ("task", "delete", "-f", cid),
            ("container", "delete", cid),
        ):
            subprocess.run(
                ["ctr", "--address", str(self.socket), "-n", PLAIN_NAMESPACE, *args], capture_output=True, check=False
            )

    def config(self) -> str:
        f = self.folder
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{f}/root"
state = "{f}/state"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{f}/containerd.sock.ttrpc"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        Root = "{f}/runc"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{f}/cni"
"""

    def cni_config(self) -> dict[str, object]:
        return {
            "cniVersion": "0.4.0",
            "name": "hsflowd-test-pods",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                        "dataDir": str(self.folder / "ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        }

    def ctr(self, *args: str, timeout: float = 120, namespace: str = "k8s.io") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", namespace, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=timeout,
        )

    def start(self, timeout: float = 60) -> None:
        (self.folder / "cni").mkdir(parents=True, exist_ok=True)
        (self.folder / "cni" / "10-pods.conflist").write_text(json.dumps(self.cni_config()))
        (self.folder / "config.toml").write_text(self.config())
        self.launch(timeout)
        work = self.folder / "images"
        work.mkdir(exist_ok=True)
        for name, data in (("pause.tar", pause_archive(work)), ("busybox.tar", busybox_archive())):
            (work / name).write_bytes(data)
            for namespace in ("k8s.io", PLAIN_NAMESPACE):
                self.ctr("images", "import", "--snapshotter", "native", str(work / name), namespace=namespace)

    def launch(self, timeout: float = 60) -> None:
        log = open(self.folder / "containerd.log", "ab")  # noqa: SIM115 - kept open for the daemon's life
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(self.folder / "config.toml")],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}; see {self.folder}/containerd.log")
            if self.socket.exists():
                probe = subprocess.run(
                    ["ctr", "--address", str(self.socket), "version"], capture_output=True, check=False, timeout=10
                )
                if probe.returncode == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"containerd did not answer within {timeout} s; see {self.folder}/containerd.log")

    def restart(self) -> None:
        """Stop and start the daemon; its shims and so the pods go on running (as on a real node)."""
        assert self.proc is not None
        terminate(self.proc, 30)
        self.launch()

    def shims(self) -> list[int]:
        """Pids of the runc shims this daemon started (their command line names its address)."""
        out = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and str(self.socket).encode() in cmdline:
                out.append(int(proc.name))
        return out

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 30)
            self.proc = None
        for pid in self.shims():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        unmount_under(self.folder)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        for top in self.cgroup_tops() - self.cgroups_at_start:
            remove_cgroup_tree(top)
        shutil.rmtree(self.folder, ignore_errors=True)
        if not self.run_dir_at_start:
            for d in (SHIM_SOCKETS, SHIM_SOCKETS.parent / "fifo", SHIM_SOCKETS.parent):
                with contextlib.suppress(OSError):
                    d.rmdir()


def remove_cgroup_tree(top: Path) -> None:
    """rmdir a cgroup tree deepest first (a cgroup directory is removed with rmdir, once empty)."""
    for d in [*sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True), top]:
        with contextlib.suppress(OSError):
            d.rmdir()


@contextmanager
def running() -> Iterator[Containerd]:
    folder = Path(tempfile.mkdtemp(prefix="hsflowd-containerd-"))
    daemon = Containerd(folder)
    try:
        daemon.start()
        yield daemon
    finally:
        import cri_pods

        try:
            cri_pods.remove_all(daemon.socket)
        finally:
            daemon.stop()
