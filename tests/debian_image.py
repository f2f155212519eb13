"""A Debian bookworm image with systemd as PID 1, for the systemd and packaging tests.

Made with debootstrap from Debian's archive (the only registry reachable) and
``docker import``-ed into the test engine, since no image registry is. The
rootfs tarball is cached by its package list under the suite's one cache folder
(dockerd.STATE), so a machine builds it once.
It already holds the Python libraries the agent needs from Debian, so
installing the agent's deb inside needs no network and no pip.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

import dockerd

PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "procps",
    "python3",
    "python3-psutil",
    "python3-docker",
    "python3-pyroute2",
    "python3-dnspython",
    "python3-dbus-next",
    "libbpf1",
    "python3-grpcio",  # the container image's k8s {} libraries (packaging/docker/Dockerfile)
    "python3-protobuf",
]
IMAGE = "hsflowd-test/bookworm-systemd:" + hashlib.sha256(" ".join(PACKAGES).encode()).hexdigest()[:12]
CACHE = dockerd.STATE / "rootfs"

# systemd in a container: real PID 1, its own cgroup view of the host hierarchy.
SYSTEMD_RUN_ARGS = [
    "--cap-add",
    "SYS_ADMIN",
    "--cap-add",
    "NET_ADMIN",
    "--cap-add",
    "NET_RAW",
    "--cap-add",
    "SYS_PTRACE",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--stop-signal",
    "SIGRTMIN+3",
]


def rootfs_tarball() -> Path:
    """debootstrap once per package list; later calls reuse the tarball."""
    tar = CACHE / f"{IMAGE.split(':')[1]}.tar"
    if tar.exists():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    target = CACHE / "bookworm"
    try:
        dockerd.unmount_under(target)  # what an interrupted earlier build left mounted
        subprocess.run(["rm", "-rf", str(target)], check=True)
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                "bookworm",
                str(target),
                "http://deb.debian.org/debian",
            ],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        # No getty on a container console; a fixed machine-id so systemd boots the same way each time.
        (target / "etc/machine-id").write_text("")
        for unit in ("getty@tty1.service", "console-getty.service"):
            subprocess.run(["chroot", str(target), "systemctl", "mask", unit], check=False, capture_output=True)
        partial = tar.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(target), "-cf", str(partial), "."], check=True)
        partial.rename(tar)
    finally:
        # debootstrap mounts /proc (and more) in the target; a failed or timed-out run leaves them
        dockerd.unmount_under(target)
        subprocess.run(["rm", "-rf", str(target)], check=True)
    return tar


def ensure_image() -> str:
    if dockerd.docker("image", "inspect", IMAGE, check=False).returncode != 0:
        dockerd.docker("import", "--change", 'CMD ["/sbin/init"]', str(rootfs_tarball()), IMAGE, timeout=600)
    return IMAGE


def wait_running(container: str, timeout: float = 60) -> str:
    """Wait until systemd inside reports running (or degraded); returns its state."""
    end = time.monotonic() + timeout
    state = ""
    while time.monotonic() < end:
        r = dockerd.docker("exec", container, "systemctl", "is-system-running", check=False)
        state = r.stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.5)
    raise TimeoutError(f"systemd in {container} did not come up: {state!r}")
