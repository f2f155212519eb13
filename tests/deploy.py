"""The deployment artefacts the tests check: packages from packaging/build.sh, the unit, the entrypoint.

``packages()`` runs the real build once per test process (a few seconds) into a temporary
folder, so every deploy test looks at the same deb and rpm.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dockerd
import yaml
from procs import ROOT

UNIT = ROOT / "systemd" / "hsflowd-py.service"
ENTRYPOINT = ROOT / "packaging" / "docker" / "entrypoint.sh"
DOCKERFILE = ROOT / "packaging" / "docker" / "Dockerfile"
DAEMONSET = ROOT / "packaging" / "kubernetes" / "hsflowd-py-daemonset.yaml"
BUILD_TOOLS = ("dpkg-buildpackage", "dh", "pybuild", "rpmbuild")


@dataclass(frozen=True)
class Packages:
    deb: Path
    rpm: Path


def build(dist: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """packaging/build.sh without the venv on PATH: the packages are built by, and for, Debian's python3."""
    return subprocess.run(
        ["bash", str(ROOT / "packaging" / "build.sh")],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DIST": str(dist), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


@functools.cache
def packages() -> Packages:
    missing = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"build tools missing: {', '.join(missing)} (scripts/debian-test-packages.txt)")
    dist = Path(tempfile.mkdtemp(prefix="hsflowd-py-dist-"))
    atexit.register(shutil.rmtree, dist, ignore_errors=True)
    r = build(dist)
    if r.returncode != 0:
        raise RuntimeError(f"packaging/build.sh failed:\n{r.stdout}\n{r.stderr}")
    return Packages(deb=next(dist.glob("*.deb")), rpm=next(dist.glob("*.rpm")))


def unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit file; a key may repeat (systemd appends or resets)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def unit_capabilities() -> set[str]:
    return {name for value in unit_settings()["CapabilityBoundingSet"] for name in value.split()}


def entrypoint_variables() -> tuple[set[str], set[str]]:
    """(variables the entrypoint reads, each as ``${NAME:-default}``; variables its header documents)."""
    text = ENTRYPOINT.read_text()
    read = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-", text))
    documented = set(re.findall(r"^#   ([A-Z][A-Z_]+) ", text, re.M))
    return read, documented


@contextlib.contextmanager
def bridge_network(tag: str, subnet: int) -> Iterator[tuple[str, str]]:
    """A Docker network of our own, on bridge ``hsf<tag><pid>`` with 10.253.<subnet>.1 on the host:
    (network name, bridge name). The engine's docker0 is shared with other tests, which may
    restart the engine under it."""
    suffix = os.getpid() % 100000
    name, bridge = f"hsflowd-{tag}-{suffix}", f"hsf{tag[:6]}{suffix}"[:15]
    dockerd.docker("network", "rm", name, check=False)
    dockerd.docker(
        "network", "create", "--subnet", f"10.253.{subnet}.0/24", "--gateway", f"10.253.{subnet}.1",
        "-o", f"com.docker.network.bridge.name={bridge}", name,
    )  # fmt: skip
    try:
        yield name, bridge
    finally:
        dockerd.docker("network", "rm", name, check=False)


def daemonset() -> dict[str, Any]:
    (manifest,) = yaml.safe_load_all(DAEMONSET.read_text())
    return manifest


def daemonset_pod() -> dict[str, Any]:
    return daemonset()["spec"]["template"]["spec"]


def daemonset_container() -> dict[str, Any]:
    (c,) = daemonset_pod()["containers"]
    return c
