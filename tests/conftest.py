"""Shared fixtures: the test Docker engine (started once per session, only when a test asks), and the
check that a session leaves the host as it found it (tests/host_state.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dockerd
import pytest
from host_state import host_left_as_found  # noqa: F401 - the session-wide check, autouse


def pytest_report_header() -> str:
    """Which kernel headers the eBPF tests compile against, and whether they are the running kernel's."""
    script = Path(__file__).resolve().parent.parent / "scripts" / "kernel-headers.sh"
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False).stdout.strip()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[dockerd.Engine]:
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        pytest.skip("the Docker engine tests need root and Debian's docker.io")
    engine = dockerd.Engine()
    engine.start()
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def busybox_image(docker_engine: dockerd.Engine) -> str:
    return dockerd.ensure_busybox_image()


@pytest.fixture(scope="session")
def debian_systemd_image(docker_engine: dockerd.Engine) -> str:
    import debian_image

    return debian_image.ensure_image()
