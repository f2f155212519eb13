"""Hostname, release, machine type and the host UUID precedence."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from hsflowd_py.readers import ReaderError
from hsflowd_py.readers.identity import (
    APP_ID,
    host_uuid,
    machine_id_uuid,
    machine_type,
    parse_dmi_uuid,
    parse_machine_id,
    read_hostname,
    read_machine,
    read_os_release,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    "machine, expected",
    [
        ("", 0), ("i386", 2), ("i686", 2), ("x86_64", 3), ("ia64", 4), ("sparc64", 5), ("alpha", 6),
        ("ppc64le", 7), ("ppc", 7), ("m68k", 8), ("mips64", 9), ("armv7l", 10), ("armv6l", 10),
        ("aarch64", 10), ("aarch64_be", 10), ("parisc64", 11), ("s390x", 12), ("s390", 12),
        ("riscv64", 1), ("loongarch64", 1),
    ],
)  # fmt: skip
def test_machine_type(machine: str, expected: int) -> None:
    assert machine_type(machine) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("4C4C4544-0042-3510-8056-B4C04F4E4B31\n", uuid.UUID("4c4c4544-0042-3510-8056-b4c04f4e4b31")),
        ("00000000-0000-0000-0000-000000000000", None),  # firmware left it blank
        ("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF", None),
        ("Not Settable", None),
    ],
)
def test_parse_dmi_uuid(text: str, expected: uuid.UUID | None) -> None:
    assert parse_dmi_uuid(text) == expected


@pytest.mark.parametrize("text", ["", "3d1219c7c4c5404a", "uninitialized\n", "zz" * 16])
def test_bad_machine_id(text: str) -> None:
    with pytest.raises(ReaderError):
        parse_machine_id(text)


def test_machine_id_uuid_is_systemds_app_specific_id() -> None:
    # Checked with: systemd-id128 machine-id -u --app-specific=1b0cd71c-... on that machine-id
    derived = machine_id_uuid(parse_machine_id("3d1219c7c4c5404aaa1f6d2a48adfda4\n"))
    assert derived == uuid.UUID("39ec5a1e-4039-41c4-9cd1-ef0a4fb0dce7")
    assert (derived.version, derived.variant) == (4, uuid.RFC_4122)


@pytest.mark.skipif(
    shutil.which("systemd-id128") is None or not Path("/etc/machine-id").exists(), reason="needs systemd-id128"
)
def test_machine_id_uuid_matches_systemd_on_this_machine() -> None:
    out = subprocess.run(
        ["systemd-id128", "machine-id", "-u", f"--app-specific={APP_ID}"], capture_output=True, text=True, check=True
    ).stdout
    mine = machine_id_uuid(parse_machine_id(Path("/etc/machine-id").read_text()))
    assert mine == uuid.UUID(out.strip())


def make_root(tmp_path: Path, dmi: str | None, machine_id: str | None) -> Path:
    if dmi is not None:
        (tmp_path / "sys/class/dmi/id").mkdir(parents=True)
        (tmp_path / "sys/class/dmi/id/product_uuid").write_text(dmi)
    if machine_id is not None:
        (tmp_path / "etc").mkdir()
        (tmp_path / "etc/machine-id").write_text(machine_id)
    return tmp_path


CONFIGURED = uuid.UUID("12345678-1234-5678-1234-567812345678")
DMI = "4C4C4544-0042-3510-8056-B4C04F4E4B31\n"
MID = "3d1219c7c4c5404aaa1f6d2a48adfda4\n"
FROM_DMI = uuid.UUID(DMI.strip())
FROM_MID = uuid.UUID("39ec5a1e-4039-41c4-9cd1-ef0a4fb0dce7")
NIL = uuid.UUID(int=0)


@pytest.mark.parametrize(
    "configured, dmi, machine_id, expected",
    [
        (CONFIGURED, DMI, MID, CONFIGURED),
        (None, DMI, MID, FROM_DMI),
        (None, "00000000-0000-0000-0000-000000000000\n", MID, FROM_MID),
        (None, None, MID, FROM_MID),
        (None, None, "garbage\n", NIL),
        (None, None, None, NIL),
    ],
)
def test_host_uuid_precedence(
    tmp_path: Path, configured: uuid.UUID | None, dmi: str | None, machine_id: str | None, expected: uuid.UUID
) -> None:
    assert host_uuid(make_root(tmp_path, dmi, machine_id), configured) == expected


def test_names_from_the_fixture_tree() -> None:
    root = FIXTURES / "host-debian12"
    assert (read_hostname(root), read_os_release(root), read_machine(root)) == ("vm", "6.18.44-fc-v669", "x86_64")


def test_machine_falls_back_to_uname_before_kernel_arch_existed() -> None:
    assert read_machine(FIXTURES / "host-oldkernel") == os.uname().machine


def test_missing_hostname(tmp_path: Path) -> None:
    with pytest.raises(ReaderError) as err:
        read_hostname(tmp_path)
    assert err.value.missing
