"""markTraffic by the socket's cgroup, without a runtime: a hostNetwork pod on a fixture tree laid out
as this machine's hybrid hierarchy (cgroup v1 controllers, cgroup2 at /sys/fs/cgroup/unified, where
runc puts each container too), the pod found by the prober, its cgroup ids mapped, and sampled
packets carrying a cgroup id as the tcp module leaves it.  The ids are the directories' inode
numbers as the kernel gives them to ``stat`` (the kernel's cgroup id is that number)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from packets import sampled_packet

from hsflowd_py.flow import DIRECTION_IN, DIRECTION_OUT, DIRECTION_UNKNOWN, SampledPacket
from hsflowd_py.modules.k8s import marking as k8s_marking
from hsflowd_py.modules.k8s.marking import SocketCgroups, SocketMarking
from hsflowd_py.modules.k8s.pod import PodProber
from hsflowd_py.sflow.records import ExtendedEntities

UID = "0b7e2d5c-6a41-4c1e-8f3a-9d2b7c4e5f60"
SANDBOX, APP = "a" * 64, "b" * 64
POD = f"kubepods/besteffort/pod{UID}"
HYBRID_MOUNTS = (
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
    "33 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    "40 31 0:36 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def host_network_pod(root: Path) -> Path:
    """The sandbox (pid 4242) of a pod sharing the host's network namespace; its unified pod cgroup."""
    write(root / "proc/self/mountinfo", HYBRID_MOUNTS)
    write(
        root / "proc/4242/cgroup",
        f"4:memory:/{POD}/{SANDBOX}\n3:cpu,cpuacct:/{POD}/{SANDBOX}\n0::/{POD}/{SANDBOX}\n",
    )
    for d in ("proc/self/ns", "proc/4242/ns"):
        (root / d).mkdir(parents=True)
        os.symlink("/proc/self/ns/net", root / d / "net")  # one namespace: the host's
    write(root / "sys/fs/cgroup/cpu,cpuacct" / POD / "cpuacct.usage", "1000\n")
    write(root / "sys/fs/cgroup/memory" / POD / "memory.usage_in_bytes", "4096\n")
    unified = root / "sys/fs/cgroup/unified" / POD
    (unified / SANDBOX).mkdir(parents=True)
    return unified


def packet(direction: int, cgroup_id: int | None) -> SampledPacket:
    p = sampled_packet(3, bytes(60), direction)
    p.cgroup_id = cgroup_id
    return p


def entities(p: SampledPacket) -> tuple[int, int, int, int] | None:
    found = [r for r in p.extra if isinstance(r, ExtendedEntities)]
    return (
        (found[0].src_ds_class, found[0].src_ds_index, found[0].dst_ds_class, found[0].dst_ds_index) if found else None
    )


def test_a_host_network_pods_sockets_are_marked_by_their_cgroup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unified = host_network_pod(tmp_path)
    probe = PodProber(tmp_path).probe(4242, UID, pod=True)
    assert probe.source is not None, probe.error
    assert not probe.source.own_netns and probe.netns is None and probe.interfaces == []
    assert probe.source.dirs.unified == unified

    cgroups = SocketCgroups()
    cgroups.claim("sandbox-id", 7, unified)
    marking = SocketMarking(cgroups)
    sent, received = (
        packet(DIRECTION_OUT, unified.stat().st_ino),
        packet(DIRECTION_IN, (unified / SANDBOX).stat().st_ino),
    )
    marking.enrich(sent)
    marking.enrich(received)
    assert entities(sent) == (3, 7, 0, 0), "the host sent it: the local socket is the source"
    assert entities(received) == (0, 0, 3, 7), "the host received it: the local socket is the destination"

    # the app container starts after the pod was found: its cgroup is learnt at its first packet
    (unified / APP).mkdir()
    late = packet(DIRECTION_OUT, (unified / APP).stat().st_ino)
    monkeypatch.setattr(k8s_marking, "REWALK_MIN_S", 0.0)  # as if a second had passed since the last walk
    marking.enrich(late)
    assert entities(late) == (3, 7, 0, 0)

    # not the pod's: another cgroup, no cgroup id, a direction the sampler could not tell
    stranger = tmp_path / "sys/fs/cgroup/unified/system.slice"
    stranger.mkdir()
    others = [
        packet(DIRECTION_OUT, stranger.stat().st_ino),
        packet(DIRECTION_OUT, None),
        packet(DIRECTION_UNKNOWN, unified.stat().st_ino),
    ]
    for p in others:
        marking.enrich(p)
        assert entities(p) is None

    cgroups.release("sandbox-id")
    gone = packet(DIRECTION_OUT, unified.stat().st_ino)
    marking.enrich(gone)
    assert entities(gone) is None and cgroups.owners == {}


def test_unknown_ids_walk_again_at_most_once_a_second(tmp_path: Path) -> None:
    """Host processes' sockets name cgroups of no pod at every sample: they must not walk each time."""
    unified = host_network_pod(tmp_path)
    cgroups = SocketCgroups()
    cgroups.claim("sandbox-id", 7, unified)
    cgroups.owner(1)  # a miss: walks
    (unified / APP).mkdir()
    assert cgroups.owner((unified / APP).stat().st_ino) is None, "within the second: not walked again"
