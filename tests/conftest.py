"""Shared fixtures: the test Docker engine (started once per session, only when a test asks)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import dockerd
import pytest


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
