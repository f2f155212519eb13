"""The test Docker engine: Debian's dockerd on its own socket, vfs storage, no iptables.

One engine serves a whole test session. If one is already answering on the
test socket (another session, or a developer's with HSFLOWD_KEEP_DOCKERD=1)
it is reused and left alone; one this session started is stopped by its pid
at the end, and what it leaves on the host goes with it: the mounts under its
run directory (a container's network namespace, nsfs, outlives an engine that
stopped with it running), the run directory, and ``docker0`` if the host had
none when the session began and no dockerd is left to use it (whichever engine
made it: another session's on the shared socket may have). Images are made
locally (``docker import`` of a rootfs), since no registry is reachable.

``STATE`` (/var/lib/hsflowd-test-docker) is the suite's one cache: the engine's
data root (its imported images) and the debootstrapped rootfs tarball, kept so a
second run does not build them again; ``bash scripts/test.sh --clean`` removes it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from procs import terminate

STATE = Path("/var/lib/hsflowd-test-docker")
SOCKET = Path("/run/hsflowd-test-docker/docker.sock")
HOST = f"unix://{SOCKET}"
BUSYBOX_IMAGE = "hsflowd-test/busybox:latest"
DOCKER0 = Path("/sys/class/net/docker0")
DOCKER0_AT_START = DOCKER0.exists()
"""Whether the host had a docker0 when the session began (conftest.py imports this module first)."""
SESSION_MARK = "HSFLOWD_TEST_SESSION"
"""Set by tests/conftest.py in the session's environment: processes that carry it are the session's."""


def keep_running() -> bool:
    """A developer's HSFLOWD_KEEP_DOCKERD=1: the shared engine outlives the session (and so does not
    carry the session's mark, which would count it as a leftover)."""
    return bool(os.environ.get("HSFLOWD_KEEP_DOCKERD"))


def dockerd_running() -> bool:
    """Whether any dockerd runs on the host (this session's, another's, the system's)."""
    return subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, check=False).returncode == 0


def unmount_under(folder: Path) -> None:
    """Unmount (lazily, deepest first) every mount point at or below ``folder``: what an engine or a
    killed debootstrap left there."""
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    prefix = str(folder)
    for point in sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def docker(*args: str, check: bool = True, timeout: float = 120, host: str = HOST) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "-H", host, *args], capture_output=True, text=True, check=check, timeout=timeout)


def answering(socket: Path = SOCKET) -> bool:
    if not socket.exists():
        return False
    reply = docker("version", "--format", "{{.Server.Version}}", check=False, timeout=10, host=f"unix://{socket}")
    return reply.returncode == 0


class Engine:
    """A dockerd for the tests; ``start()`` returns once it answers.

    The default is the session's shared engine.  A test that must restart its engine makes a
    private one with its own ``socket`` and ``state`` directory (and ``args`` such as
    ``--bridge=NAME`` with a bridge of its own), so that no other test's containers go down with
    it.  Never give a private engine ``--bridge=none``: dockerd then deletes ``docker0``, the
    shared engine's bridge, from the network namespace they share.
    """

    def __init__(self, socket: Path = SOCKET, state: Path = STATE, args: tuple[str, ...] = ()) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.socket = socket
        self.state = state
        self.args = args

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return docker(*args, check=check, timeout=timeout, host=self.host)

    def start(self, timeout: float = 60) -> None:
        if answering(self.socket):
            return
        run = self.socket.parent
        run.mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        log = open(self.state / "dockerd.log", "ab")  # noqa: SIM115 - kept open for the daemon's life
        self.proc = subprocess.Popen(
            [
                "dockerd",
                "--host",
                self.host,
                "--data-root",
                str(self.state / "data"),
                "--exec-root",
                str(run / "exec"),
                "--pidfile",
                str(run / "dockerd.pid"),
                "--storage-driver=vfs",
                "--iptables=false",
                "--ip6tables=false",
                *self.args,
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
            env=None if not keep_running() else {k: v for k, v in os.environ.items() if k != SESSION_MARK},
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited with {self.proc.returncode}; see {self.state / 'dockerd.log'}")
            if answering(self.socket):
                return
            time.sleep(0.5)
        raise RuntimeError(f"dockerd did not answer within {timeout} s; see {self.state / 'dockerd.log'}")

    def stop(self, *, keep: bool | None = None) -> None:
        """Stop the daemon this session started (by pid); a reused one is left running, and so is
        the shared one with HSFLOWD_KEEP_DOCKERD set (``keep`` decides for a private one).

        An engine without live restore stops its containers with it, so what is left under its
        run folder (their nsfs mounts) and a ``docker0`` the session did not find are leftovers,
        removed here. A
        live-restore engine's containers go on running: whoever made it removes them first."""
        if keep is None:
            keep = keep_running()
        if self.proc is None or keep:
            return
        terminate(self.proc, 30)
        self.proc = None
        if "--live-restore" in self.args:
            return  # its containers outlive it, with their state under its run folder
        unmount_under(self.socket.parent)
        unmount_under(self.state / "data")
        shutil.rmtree(self.socket.parent, ignore_errors=True)
        if "--bridge" not in self.args and not DOCKER0_AT_START and not dockerd_running():
            subprocess.run(["ip", "link", "del", DOCKER0.name], capture_output=True, check=False)

    def restart(self) -> None:
        """Stop and start the engine (for recovery tests); only one this session owns."""
        if self.proc is None:
            raise RuntimeError("restart needs an engine this session started")
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(30)
        self.proc = None
        self.start()


def ensure_busybox_image(engine: Engine | None = None) -> str:
    """Import a busybox image made from Debian's busybox-static into ``engine`` (the shared one), once."""
    engine = engine or Engine()
    if engine.docker("image", "inspect", BUSYBOX_IMAGE, check=False).returncode == 0:
        return BUSYBOX_IMAGE
    busybox = shutil.which("busybox") or "/bin/busybox"
    tar_path = engine.state / "busybox-rootfs.tar"
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
    engine.docker("import", "--change", 'CMD ["/bin/sh"]', str(tar_path), BUSYBOX_IMAGE)
    return BUSYBOX_IMAGE


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    pid: int
    ip: str
    """On the default bridge; empty with ``--network none``."""
    mac: str


class Containers:
    """Containers a test runs, each removed (by id) when the test ends."""

    def __init__(self, engine: Engine, prefix: str) -> None:
        self.engine = engine
        self.prefix = f"{prefix}-{os.getpid()}"
        self.ids: list[str] = []

    def run(self, name: str, *command: str, options: tuple[str, ...] = (), image: str = BUSYBOX_IMAGE) -> Container:
        """``docker run -d`` a container named ``<prefix>-<pid>-<name>``; returns once it runs."""
        full = f"{self.prefix}-{name}"
        try:
            cid = self.engine.docker("run", "-d", "--name", full, *options, image, *command).stdout.strip()
        except subprocess.CalledProcessError:
            self.engine.docker("rm", "-f", full, check=False)  # created but not started
            raise
        self.ids.append(cid)
        return self.inspect(cid)

    def inspect(self, cid: str) -> Container:
        fmt = "{{.Name}} {{.State.Pid}} {{.NetworkSettings.IPAddress}}. {{.NetworkSettings.MacAddress}}."
        name, pid, ip, mac = self.engine.docker("inspect", "-f", fmt, cid).stdout.split()
        return Container(cid, name.lstrip("/"), int(pid), ip.rstrip("."), mac.rstrip("."))

    def stop(self, c: Container, timeout: int = 1) -> None:
        self.engine.docker("stop", "-t", str(timeout), c.id)

    def remove_all(self) -> None:
        if self.ids:
            self.engine.docker("rm", "-f", *self.ids, check=False)
            self.ids.clear()


@contextmanager
def containers(engine: Engine, prefix: str) -> Iterator[Containers]:
    c = Containers(engine, prefix)
    try:
        yield c
    finally:
        c.remove_all()
