"""The container entrypoint, run as the image runs it: environment in, hsflowd.conf out, the agent exec'd.

Arguments after the image name go to hsflowd-py, so ``--check`` makes the real agent parse the
file the entrypoint wrote and print its effective settings, which is what these tests read.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy import ENTRYPOINT, entrypoint_variables

from hsflowd_py import module

MARK = "# Written by hsflowd-py-entrypoint from the environment; rewritten at each start."


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The entrypoint with the venv's hsflowd-py first on PATH and nothing else from our environment."""
    base = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HSFLOWD_CONFIG": str(tmp_path / "hsflowd.conf"),
        "HOST_RUN": str(tmp_path / "no-run"),
    }
    return subprocess.run(
        ["sh", str(ENTRYPOINT), "--check", *args], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


def effective(tmp_path: Path, **env: str) -> list[str]:
    r = run(tmp_path, **env)
    assert r.returncode == 0, r.stderr
    return [line.strip() for line in r.stdout.splitlines() if not line.startswith("#")]


def test_defaults_are_the_established_images(tmp_path: Path) -> None:
    lines = effective(tmp_path)
    assert "sampling = 1000" in lines and "sampling.bps_ratio = 0" in lines and "polling = 30" in lines
    assert "collector { ip = 127.0.0.1 udpport = 6343 }" in lines
    assert [x for x in lines if x.startswith(("pcap", "tcp", "docker"))] == [
        "pcap { speed = 1G- promisc = off sampler = auto }",
        "tcp { tunnel = off udp = off dump = off }",
    ]
    assert (tmp_path / "hsflowd.conf").read_text().splitlines()[0] == MARK


def test_every_variable_reaches_the_config(tmp_path: Path) -> None:
    lines = effective(tmp_path, COLLECTOR="10.0.0.30  fd00::30", PORT="16343", SAMPLING="10", POLLING="5")
    assert "sampling = 10" in lines and "polling = 5" in lines
    assert "collector { ip = 10.0.0.30 udpport = 16343 }" in lines
    assert "collector { ip = fd00::30 udpport = 16343 }" in lines


@pytest.mark.parametrize(
    ("net", "pcap"),
    [
        ("docker", ["dev = docker0", "dev = docker_gwbridge"]),
        ("flannel", ["dev = cni0"]),
        ("^veth[0-9]{2}", ['dev.pattern = "^veth[0-9]{2}"']),
    ],
)
def test_net_selects_the_sampled_links(tmp_path: Path, net: str, pcap: list[str]) -> None:
    lines = effective(tmp_path, NET=net)
    blocks = [x for x in lines if x.startswith(("pcap", "tcp"))]
    assert blocks == [f"pcap {{ {p} promisc = off sampler = auto }}" for p in pcap]


def test_a_mounted_docker_socket_adds_the_docker_module(tmp_path: Path) -> None:
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        lines = effective(tmp_path, DOCKER_SOCKET=str(path))
    assert f"docker {{ hostname = off markTraffic = off socket = {path} }}" in lines


@contextlib.contextmanager
def bound(*paths: Path) -> Iterator[None]:
    """Unix sockets at ``paths`` (what ``[ -S ]`` finds where a runtime listens), gone afterwards."""
    with contextlib.ExitStack() as stack:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            stack.enter_context(socket.socket(socket.AF_UNIX)).bind(str(path))
            stack.callback(path.unlink)
        yield


def test_the_hosts_run_folder_is_searched_for_both_sockets(tmp_path: Path) -> None:
    """The DaemonSet's layout: the node's /run mounted at HOST_RUN, docker.sock found there."""
    run_dir = tmp_path / "host-run"
    with bound(run_dir / "docker.sock"):
        lines = effective(tmp_path, HOST_RUN=str(run_dir))
    assert f"docker {{ hostname = off markTraffic = off socket = {run_dir / 'docker.sock'} }}" in lines
    assert not [x for x in lines if x.startswith("k8s")]


def k8s_registered() -> bool:
    return "k8s" in module.discover()


@pytest.mark.parametrize(
    ("present", "chosen"),
    [
        (["containerd/containerd.sock"], "containerd/containerd.sock"),
        (["k3s/containerd/containerd.sock"], "k3s/containerd/containerd.sock"),
        (["crio/crio.sock"], "crio/crio.sock"),
        (["crio/crio.sock", "containerd/containerd.sock"], "containerd/containerd.sock"),
    ],
)
def test_a_mounted_cri_socket_adds_the_k8s_module(tmp_path: Path, present: list[str], chosen: str) -> None:
    """The config text the entrypoint writes names the first runtime socket found; the agent
    accepts it once the k8s module is registered (until then it refuses the block by name)."""
    run_dir = tmp_path / "host-run"
    with bound(*(run_dir / p for p in present)):
        r = run(tmp_path, HOST_RUN=str(run_dir))
    written = (tmp_path / "hsflowd.conf").read_text().splitlines()
    assert [x.strip() for x in written if "k8s" in x] == [f'k8s {{ unixsock = "{run_dir / chosen}" }}']
    if k8s_registered():
        assert r.returncode == 0, r.stderr
        assert any(x.strip().startswith("k8s {") and str(run_dir / chosen) in x for x in r.stdout.splitlines())
    else:
        assert r.returncode == 1 and "block 'k8s' is not supported" in r.stderr


def test_cri_socket_names_the_runtime_socket(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere" / "cri.sock"
    with bound(path):
        run(tmp_path, CRI_SOCKET=str(path))
    written = (tmp_path / "hsflowd.conf").read_text()
    assert f'  k8s {{ unixsock = "{path}" }}\n' in written
    run(tmp_path, CRI_SOCKET=str(path))  # gone: no k8s {} on the next start
    assert "k8s" not in (tmp_path / "hsflowd.conf").read_text()


def test_mark_traffic_turns_marking_on_in_both_modules(tmp_path: Path) -> None:
    run_dir = tmp_path / "host-run"
    with bound(run_dir / "docker.sock", run_dir / "containerd" / "containerd.sock"):
        lines = effective(tmp_path, HOST_RUN=str(run_dir), MARK_TRAFFIC="on")
    assert f"docker {{ hostname = off markTraffic = on socket = {run_dir / 'docker.sock'} }}" in lines
    written = (tmp_path / "hsflowd.conf").read_text()
    assert f'  k8s {{ unixsock = "{run_dir / "containerd" / "containerd.sock"}" markTraffic = "on" }}\n' in written
    if k8s_registered():
        (k8s,) = [x for x in lines if x.startswith("k8s {")]
        assert "markTraffic = on" in k8s, k8s


def test_a_mounted_config_is_used_as_it_is(tmp_path: Path) -> None:
    mine = "sflow {\n  polling = 7\n  collector { ip = 192.0.2.7 }\n}\n"
    (tmp_path / "hsflowd.conf").write_text(mine)
    lines = effective(tmp_path, COLLECTOR="10.0.0.30", POLLING="5")
    assert "polling = 7" in lines and "collector { ip = 192.0.2.7 udpport = 6343 }" in lines
    assert (tmp_path / "hsflowd.conf").read_text() == mine


def test_a_restarted_container_rewrites_its_own_config(tmp_path: Path) -> None:
    effective(tmp_path, POLLING="5")
    assert "polling = 9" in effective(tmp_path, POLLING="9")


def test_debug_levels(tmp_path: Path) -> None:
    # The agent logs at INFO with -d and DEBUG with -dd; an unknown level stops the container.
    for level in ("none", "info", "fine", "finer", "finest"):
        assert run(tmp_path, DEBUG=level).returncode == 0
    r = run(tmp_path, DEBUG="loud")
    assert r.returncode == 1 and "DEBUG=loud" in r.stderr


def test_bad_values_are_refused_by_the_agent_with_the_line(tmp_path: Path) -> None:
    r = run(tmp_path, SAMPLING="ten")
    assert r.returncode == 1
    assert f"{tmp_path / 'hsflowd.conf'}:3:" in r.stderr and "'ten'" in r.stderr
    r = run(tmp_path, COLLECTOR="10.0.0.30 } evil {")
    assert r.returncode == 1, "a value cannot open or close a block"


def test_documented_variables_are_the_ones_read() -> None:
    read, documented = entrypoint_variables()
    assert read == documented
    assert {"COLLECTOR", "PORT", "SAMPLING", "POLLING", "NET", "DEBUG", "HOST_RUN", "CRI_SOCKET"} <= read
    assert "MARK_TRAFFIC" in read
