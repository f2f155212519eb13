"""The host left as found: a pytest plugin (loaded by conftest.py) that snapshots the host's links,
mounts, network namespaces and active services when a session starts and compares at its end.

A session's processes are found by a mark in their environment (``dockerd.SESSION_MARK``, set
here, inherited by every child), not by name or by age, so another session's agent or dockerd on
the same machine is never counted. A leftover fails the session with an error naming each one:
the Docker, namespace and agent tests must remove what they made, whatever the file order.

The machine may be shared by several sessions, on the convention that tests which touch the
host run under the heavy lock (/tmp/hsflowd-heavy.lock, or $HSFLOWD_HEAVY_LOCK). While a process
other than this session's own ancestors holds it, the host is someone else's to change, so links,
mounts and namespaces are not compared (a warning says so); the session's processes still are.

The one thing put back here rather than by a test: the bind mount of /run/netns on itself that
``ip netns add`` makes the first time any namespace is added on a machine (and never removes).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockerd import SESSION_MARK, STATE

RUN_NETNS = Path("/run/netns")


def links() -> frozenset[str]:
    out = subprocess.run(["ip", "-d", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return frozenset(
        f"{x['ifname']} ({x.get('linkinfo', {}).get('info_kind', x['link_type'])})" for x in json.loads(out)
    )


def mounts() -> frozenset[str]:
    return frozenset(
        f"{fields[4]} ({line.split(' - ')[1].split()[0]})"
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if (fields := line.split())
    )


def namespaces() -> frozenset[str]:
    return frozenset(os.listdir(RUN_NETNS)) if RUN_NETNS.is_dir() else frozenset()


def services() -> frozenset[str]:
    """Active services and sockets when systemd runs the machine (none otherwise)."""
    if not Path("/run/systemd/system").is_dir():
        return frozenset()
    out = subprocess.run(
        ["systemctl", "list-units", "--type=service,socket", "--state=active", "--plain", "--no-legend"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return frozenset(line.split()[0] for line in out.splitlines() if line.strip())


@dataclass(frozen=True)
class HostState:
    links: frozenset[str]
    mounts: frozenset[str]
    namespaces: frozenset[str]
    services: frozenset[str]

    @classmethod
    def now(cls) -> HostState:
        return cls(links(), mounts(), namespaces(), services())

    def differences(self, later: HostState) -> list[str]:
        out = []
        for kind in ("links", "mounts", "namespaces", "services"):
            before, after = getattr(self, kind), getattr(later, kind)
            out += [f"{kind}: left behind {x}" for x in sorted(after - before)]
            out += [f"{kind}: gone {x}" for x in sorted(before - after) if not (kind == "mounts" and in_cache(x))]
        return out


def in_cache(mount: str) -> bool:
    """A mount in the test cache that an interrupted earlier run left (debootstrap's /proc in the
    rootfs it was building) is undone by the next build: its going is not a change to the host."""
    return mount.startswith(f"{STATE}/")


def marked_processes(token: str) -> list[str]:
    """Processes other than this one whose environment carries the session's mark."""
    needle = f"{SESSION_MARK}={token}\0".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            if needle in Path(f"/proc/{pid}/environ").read_bytes():
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"processes: left behind pid {pid}: {cmd.strip()}")
        except OSError:
            continue  # gone, or not ours to read
    return found


def put_back_run_netns(before: HostState) -> None:
    """Undo ``ip netns add``'s first-time bind mount of /run/netns when no namespace is left in it."""
    point = f"{RUN_NETNS} "
    was_mounted = any(m.startswith(point) for m in before.mounts)
    if not was_mounted and not namespaces() and any(m.startswith(point) for m in mounts()):
        subprocess.run(["umount", str(RUN_NETNS)], capture_output=True, check=False)


def leftovers(before: HostState, token: str, settle: float = 5) -> list[str]:
    """What the session left, given ``settle`` seconds for processes and links that are going."""
    end = time.monotonic() + settle
    while True:
        put_back_run_netns(before)
        found = before.differences(HostState.now()) + marked_processes(token)
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.25)


def heavy_lock_held_elsewhere() -> list[int]:
    """Pids holding the heavy lock that are not this process or its ancestors (from /proc/locks)."""
    try:
        inode = Path(os.environ.get("HSFLOWD_HEAVY_LOCK", "/tmp/hsflowd-heavy.lock")).stat().st_ino
    except OSError:
        return []
    ours, pid = set(), os.getpid()
    while pid > 1:
        ours.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    holders = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields or len(fields) < 6:
            continue  # a process waiting for a lock does not hold it
        if fields[5].rsplit(":", 1)[-1] == str(inode) and int(fields[4]) not in ours:
            holders.append(int(fields[4]))
    return holders


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found() -> Iterator[None]:
    """Set up before any other session fixture, so torn down after all of them (the test engine too)."""
    if os.geteuid() != 0:
        yield  # without root the tests make no links, mounts or namespaces
        return
    token = os.environ[SESSION_MARK] = uuid.uuid4().hex
    before = HostState.now()
    others = heavy_lock_held_elsewhere()
    yield
    others += heavy_lock_held_elsewhere()
    if others:
        warnings.warn(
            f"the heavy lock was held by another session (pid {others[0]}): only this session's processes"
            " were checked, not the host's links, mounts and namespaces",
            stacklevel=1,
        )
        found = marked_processes(token)
    else:
        found = leftovers(before, token)
    if found:
        pytest.fail("the session did not leave the host as it found it:\n" + "\n".join(found), pytrace=False)
