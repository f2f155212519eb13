"""The systemd unit: what it runs, how it reloads, and the privileges it leaves the agent.

The unit running for real (installed from the deb, under systemd) is in test_deploy_deb.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from deploy import UNIT, unit_capabilities, unit_settings
from procs import ROOT

from hsflowd_py import cli, status
from hsflowd_py.privileges import CAPABILITIES

# Never in the unit. CAP_DAC_OVERRIDE: write access to every file; modules read other users'
# files with CAP_DAC_READ_SEARCH and reach sockets such as docker.sock through their group.
# CAP_PERFMON: the eBPF sampler uses tc programs and a ring buffer, no perf events
# (test_deploy_ebpf.py samples with eBPF inside the unit's bounding set).
WITHHELD = {"CAP_DAC_OVERRIDE", "CAP_PERFMON"}
# Held only until the agent has become its unprivileged user (issue #9's drop).
TO_DROP_ROOT = {"CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"}


def test_runs_the_agent_in_the_foreground_and_reloads_with_sighup() -> None:
    s = unit_settings()
    argv = s["ExecStart"][0].split()
    assert argv[0] == "/usr/bin/hsflowd-py" and "-d" in argv
    assert argv[argv.index("-f") + 1] == "/etc/hsflowd.conf" == cli.parse_args([]).config
    assert s["ExecReload"] == ["+/bin/kill -HUP $MAINPID"]
    assert s["Restart"] == ["on-failure"]
    assert s["Type"] == ["exec"]
    assert "StandardError" not in s and "StandardOutput" not in s, "stderr must go to the journal (the default)"
    assert s["WantedBy"] == ["multi-user.target"]


def test_file_system_is_read_only_but_for_the_auto_file_and_the_status_socket() -> None:
    s = unit_settings()
    assert s["ProtectSystem"] == ["strict"]
    assert s["ProtectHome"] == ["yes"] and s["PrivateTmp"] == ["yes"] and s["NoNewPrivileges"] == ["yes"]
    auto = cli.parse_args([]).autofile
    assert s["ReadWritePaths"] == [f"-{auto}"]
    # The agent may rewrite the file but not create it: systemd-tmpfiles makes it before the start.
    tmpfiles = (ROOT / "systemd" / "tmpfiles.d" / "hsflowd-py.conf").read_text().split("\n")
    assert [line.split()[:2] for line in tmpfiles if line and not line.startswith("#")] == [["f", auto]]
    assert Path(status.DEFAULT_PATH).parent == Path("/run") / s["RuntimeDirectory"][0]


def test_capabilities_cover_every_one_a_module_can_keep() -> None:
    """capset() cannot grant a capability outside the bounding set: the agent's drop to its user
    would fail and leave it root. So the unit holds every capability a module may declare."""
    caps = unit_capabilities()
    assert set(CAPABILITIES) - WITHHELD <= caps
    assert caps - set(CAPABILITIES) <= TO_DROP_ROOT
    assert not caps & WITHHELD


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="util-linux setpriv not installed")
def test_capability_names_are_the_kernels() -> None:
    known = subprocess.run(["setpriv", "--list-caps"], capture_output=True, text=True, check=True).stdout.split()
    assert {c.removeprefix("CAP_").lower() for c in unit_capabilities()} <= set(known)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_every_key(tmp_path: Path) -> None:
    # verify also checks that ExecStart exists: point it at an executable this machine has.
    text = UNIT.read_text().replace("ExecStart=/usr/bin/hsflowd-py", "ExecStart=/bin/true")
    (tmp_path / UNIT.name).write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / UNIT.name)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
