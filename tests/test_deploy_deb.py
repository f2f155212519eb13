"""The deb on a real Debian bookworm under systemd: install, run, reload, remove.

The container is the debootstrapped image of tests/debian_image.py (systemd as PID 1) in the
test Docker engine. It has no route to a package mirror, so ``apt-get install ./hsflowd-py.deb``
succeeds only because every Depends is one of Debian's python3-* packages already in the image
(Recommends are not fetched: --no-install-recommends). The bundled collector runs on this host
and hears the agent across a bridge of this test's own.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import debian_image
import dockerd
import pytest
from deploy import UNIT, bridge_network, packages, unit_capabilities
from procs import free_udp_port, json_datagrams, start_collector

from hsflowd_py.privileges import CAPABILITIES

pytestmark = [pytest.mark.root, pytest.mark.docker, pytest.mark.slow]

CAP_BITS = {**CAPABILITIES, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8}
# reading other services' /proc files (systemd {}) needs this one beyond systemd's usual set
RUN_ARGS = [*debian_image.SYSTEMD_RUN_ARGS, "--cap-add", "DAC_READ_SEARCH"]
SUBNET = 84  # 10.253.84.0/24: the container's network, this host at .1


def sh(container: str, *args: str, check: bool = True, timeout: float = 120) -> str:
    return dockerd.docker("exec", container, *args, check=check, timeout=timeout).stdout


def wait_for(what: str, probe: Any, timeout: float = 20) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := probe():
            return value
        time.sleep(0.3)
    raise TimeoutError(what)


def main_pid(container: str) -> str:
    return sh(container, "systemctl", "show", "-P", "MainPID", "hsflowd-py").strip()


def proc_status(container: str) -> dict[str, str]:
    pid = main_pid(container)
    assert pid != "0", "hsflowd-py has no main process"
    lines = sh(container, "cat", f"/proc/{pid}/status").splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


@pytest.fixture
def bookworm(debian_systemd_image: str) -> Iterator[str]:
    name = f"hsflowd-deploy-deb-{os.getpid()}"
    with bridge_network("dpdeb", SUBNET) as (network, _):
        dockerd.docker("rm", "-f", name, check=False)
        dockerd.docker("run", "-d", "--name", name, "--network", network, *RUN_ARGS, debian_systemd_image)
        try:
            debian_image.wait_running(name)
            yield name
        finally:
            dockerd.docker("rm", "-f", name, check=False)


def test_deb_installs_runs_reloads_and_removes(bookworm: str) -> None:
    deb = packages().deb
    dockerd.docker("cp", str(deb), f"{bookworm}:/tmp/{deb.name}")
    r = dockerd.docker(
        "exec", bookworm, "apt-get", "install", "-y", "--no-install-recommends", f"/tmp/{deb.name}", check=False
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Need to get 0 B" in r.stdout, "every dependency must already be in the image"

    # enabled and started by the package, under the unit's sandbox
    assert sh(bookworm, "systemctl", "is-enabled", "hsflowd-py").strip() == "enabled"
    wait_for(
        "hsflowd-py active",
        lambda: sh(bookworm, "systemctl", "is-active", "hsflowd-py", check=False).strip() == "active",
    )
    verify = dockerd.docker("exec", bookworm, "systemd-analyze", "verify", "hsflowd-py.service", check=False)
    assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
    exposure = sh(bookworm, "systemd-analyze", "security", "--no-pager", "hsflowd-py.service", check=False)
    print(exposure.strip().splitlines()[-1])  # the figure, e.g. "→ Overall exposure level ... 4.2 OK"

    # the agent became its unprivileged user inside the unit's bounding set, and stays up
    status = wait_for("the agent to drop root", lambda: (s := proc_status(bookworm))["Uid"].split()[0] != "0" and s)
    allowed = sum(1 << CAP_BITS[c] for c in unit_capabilities())
    assert int(status["CapBnd"], 16) & ~allowed == 0
    assert int(status["CapEff"], 16) & ~allowed == 0
    assert status["NoNewPrivs"] == "1"

    # point it at the collector on this host and reload: the new config is read without a restart
    gateway = f"10.253.{SUBNET}.1"
    port = free_udp_port()
    collector = start_collector(port, "-j")
    try:
        conf = f"sflow {{\n  polling = 2\n  collector {{ ip = {gateway} udpport = {port} }}\n}}\n"
        dockerd.docker("exec", bookworm, "sh", "-c", f"printf '%s' '{conf}' > /etc/hsflowd.conf")
        pid_before = main_pid(bookworm)
        sh(bookworm, "systemctl", "reload", "hsflowd-py")
        host = next((d for d in json_datagrams(collector, 15) if any_host_sample(d)), None)
    finally:
        collector.stop()
    journal = sh(bookworm, "journalctl", "-u", "hsflowd-py", "--no-pager", "-o", "cat")
    assert host is not None, f"no samples from the container; journal:\n{journal[-3000:]}"
    networks = json.loads(dockerd.docker("inspect", bookworm).stdout)[0]["NetworkSettings"]["Networks"]
    assert [host["agent"]] == [n["IPAddress"] for n in networks.values()]
    assert main_pid(bookworm) == pid_before, "reload must not restart the agent"
    assert "reloaded /etc/hsflowd.conf" in journal
    assert "Traceback" not in journal and "cannot drop privileges" not in journal
    auto = sh(bookworm, "cat", "/etc/hsflowd.auto")
    assert f"collector={gateway} {port}" in auto, "the agent keeps /etc/hsflowd.auto current under ProtectSystem"

    # the unit's recipe for hosts without docker/systemd/tcp: a drop-in takes capabilities away
    drop_in = narrowing_drop_in()
    sh(bookworm, "mkdir", "-p", "/etc/systemd/system/hsflowd-py.service.d")
    sh(bookworm, "sh", "-c", f"printf '%s' '{drop_in}' > /etc/systemd/system/hsflowd-py.service.d/narrow.conf")
    sh(bookworm, "systemctl", "daemon-reload")
    sh(bookworm, "systemctl", "restart", "hsflowd-py")
    removed = set(drop_in.split("=~")[1].split())
    wait_for("the restarted agent", lambda: main_pid(bookworm) not in ("0", pid_before))
    narrowed = int(proc_status(bookworm)["CapBnd"], 16)
    assert narrowed & sum(1 << CAP_BITS[c] for c in removed) == 0
    # the agent cuts its own bounding set to what its modules keep, so the unit's is read from systemd
    unit_set = sh(bookworm, "systemctl", "show", "-p", "CapabilityBoundingSet", "--value", "hsflowd-py").split()
    assert "cap_net_raw" in unit_set and not {c.lower() for c in removed} & set(unit_set)

    # removal stops the service and keeps the changed conffile
    sh(bookworm, "apt-get", "remove", "-y", "hsflowd-py")
    assert sh(bookworm, "systemctl", "is-active", "hsflowd-py", check=False).strip() == "inactive"
    assert sh(bookworm, "pgrep", "-f", "/usr/bin/hsflowd-py", check=False).strip() == ""
    assert sh(bookworm, "cat", "/etc/hsflowd.conf") == conf
    assert re.search(r"Status: deinstall ok config-files", sh(bookworm, "dpkg", "-s", "hsflowd-py", check=False))
    # purge takes the conffile and the agent's /etc/hsflowd.auto
    sh(bookworm, "apt-get", "purge", "-y", "hsflowd-py")
    assert sh(bookworm, "ls", "/etc/hsflowd.conf", "/etc/hsflowd.auto", check=False) == ""


def narrowing_drop_in() -> str:
    """The drop-in the unit's comments give, as they give it."""
    lines = UNIT.read_text().splitlines()
    start = lines.index("#   [Service]")
    return "\n".join(line.removeprefix("#   ") for line in lines[start : start + 2]) + "\n"


def any_host_sample(datagram: dict[str, Any]) -> bool:
    return any(s["sourceId"] == "2:1" for s in datagram["samples"])
