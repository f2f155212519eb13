"""The test Docker engine: Debian's dockerd on its own socket, vfs storage, no iptables.

One engine serves a whole test session. If one is already answering on the
test socket (another session, or a developer's with HSFLOWD_KEEP_DOCKERD=1)
it is reused and left alone; one this session started is stopped by its pid
at the end. Images are made locally (``docker import`` of a rootfs), since no
registry is reachable.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

STATE = Path("/var/lib/hsflowd-test-docker")
SOCKET = Path("/run/hsflowd-test-docker/docker.sock")
HOST = f"unix://{SOCKET}"
BUSYBOX_IMAGE = "hsflowd-test/busybox:latest"


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "-H", HOST, *args], capture_output=True, text=True, check=check, timeout=timeout)


def answering() -> bool:
    if not SOCKET.exists():
        return False
    return docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10).returncode == 0


class Engine:
    """A dockerd for the tests; ``start()`` returns once it answers."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        if answering():
            return
        SOCKET.parent.mkdir(parents=True, exist_ok=True)
        STATE.mkdir(parents=True, exist_ok=True)
        log = open(STATE / "dockerd.log", "ab")  # noqa: SIM115 - kept open for the daemon's life
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--host",
                HOST,
                "--data-root",
                str(STATE / "data"),
                "--exec-root",
                str(SOCKET.parent / "exec"),
                "--pidfile",
                str(SOCKET.parent / "dockerd.pid"),
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}; see {STATE / 'dockerd.log'}")
            if answering():
                return
            time.sleep(0.5)
        raise RuntimeError(f"dockerd did not answer within {timeout} s; see {STATE / 'dockerd.log'}")

    def stop(self) -> None:
        """Stop the daemon this session started (by pid); a reused one is left running."""
        if self.proc is None or os.environ.get("HSFLOWD_KEEP_DOCKERD"):
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop and start the engine (for recovery tests); only one this session owns."""
        if self.proc is None:
            raise RuntimeError("restart needs an engine this session started")
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)
        self.proc = None
        self.start()


def ensure_busybox_image() -> str:
    """Import a busybox image made from Debian's busybox-static, once."""
    if docker("image", "inspect", BUSYBOX_IMAGE, check=False).returncode == 0:
        return BUSYBOX_IMAGE
    busybox = shutil.which("busybox") or "/bin/busybox"
    tar_path = STATE / "busybox-rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:
        for d in ("bin", "sbin", "tmp", "proc", "sys", "dev", "etc", "root"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    docker("import", "--change", 'CMD ["/bin/sh"]', str(tar_path), BUSYBOX_IMAGE)
    return BUSYBOX_IMAGE
