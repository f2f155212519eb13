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
    char_is_signed,
    host_uuid,
    hsflowd_machine_id_uuid,
    identify,
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
    "configured, dmi, machine_id, expected, source",
    [
        (CONFIGURED, DMI, MID, CONFIGURED, "configured"),
        (None, DMI, MID, FROM_DMI, "DMI"),
        (None, "00000000-0000-0000-0000-000000000000\n", MID, FROM_MID, "/etc/machine-id, HMAC"),
        (None, None, MID, FROM_MID, "/etc/machine-id, HMAC"),
        (None, None, "garbage\n", NIL, "none"),
        (None, None, None, NIL, "none"),
    ],
)
def test_host_uuid_precedence(
    tmp_path: Path,
    configured: uuid.UUID | None,
    dmi: str | None,
    machine_id: str | None,
    expected: uuid.UUID,
    source: str,
) -> None:
    found, said = identify(make_root(tmp_path, dmi, machine_id), configured, derivation="hmac")
    assert found == expected and said.startswith(source)


def test_dash_m_replaces_etc_machine_id_and_the_default_is_the_established_agents_derivation(tmp_path: Path) -> None:
    root = make_root(tmp_path, None, MID)
    given = parse_machine_id("00112233-4455-6677-8899-aabbccddeeff")
    found, said = identify(root, None, given)
    assert found == hsflowd_machine_id_uuid(given, char_is_signed(read_machine(root)))
    assert said == "-m, the established agent's FNV-1a derivation"
    assert host_uuid(root, None) == hsflowd_machine_id_uuid(parse_machine_id(MID), char_is_signed(read_machine(root)))


# The established agent's chooseUUID(), written in C from its definition (FNV-1a 32 over each
# half of the 16 machine-id bytes read through `const char *`, h1 h2 h1 h2 as native uint32
# words, then the version-5 and variant bits): the compiler decides what a char is, as it does
# for the agent; -funsigned-char gives the ARM/PowerPC/s390 reading on this machine.
C_DERIVATION = r"""
#include <stdint.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
  unsigned char id[16], u[16];
  for (int i = 0; i < 16; i++) sscanf(argv[1] + 2 * i, "%2hhx", &id[i]);
  const char *s = (const char *)id;
  uint32_t h[2];
  for (int k = 0; k < 2; k++) {
    uint32_t x = 2166136261U;
    for (int i = 0; i < 8; i++) { x ^= s[8 * k + i]; x *= 16777619U; }
    h[k] = x;
  }
  uint32_t q[4] = {h[0], h[1], h[0], h[1]};
  memcpy(u, q, 16);
  u[6] = (u[6] & 0x0F) | 0x50;
  u[8] = (u[8] & 0x3F) | 0x80;
  for (int i = 0; i < 16; i++) printf("%02x", u[i]);
  return 0;
}
"""

MACHINE_IDS = [
    "3d1219c7c4c5404aaa1f6d2a48adfda4",
    "00000000000000000000000000000000",
    "ffffffffffffffffffffffffffffffff",
    "80818283848586878889a0b0c0d0e0f0",
    "0123456789abcdef0123456789abcdef",
]


@pytest.fixture(scope="module")
def c_derivation(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    if shutil.which("cc") is None:
        pytest.skip("needs a C compiler")
    work = tmp_path_factory.mktemp("chooseuuid")
    (work / "d.c").write_text(C_DERIVATION)
    built = {}
    for signed, flag in ((True, "-fsigned-char"), (False, "-funsigned-char")):
        built[signed] = work / f"d{int(signed)}"
        subprocess.run(["cc", flag, "-o", str(built[signed]), str(work / "d.c")], check=True)
    return built


@pytest.mark.parametrize("machine_id", MACHINE_IDS)
@pytest.mark.parametrize("signed", [True, False])
def test_derivation_equals_the_c_definition(c_derivation: dict[bool, Path], machine_id: str, signed: bool) -> None:
    out = subprocess.run([str(c_derivation[signed]), machine_id], capture_output=True, text=True, check=True).stdout
    assert hsflowd_machine_id_uuid(bytes.fromhex(machine_id), signed) == uuid.UUID(out)


def test_this_machines_uuid_is_the_one_the_established_agent_computes(c_derivation: dict[bool, Path]) -> None:
    if Path("/sys/class/dmi/id/product_uuid").exists() or not Path("/etc/machine-id").exists():
        pytest.skip("only where the machine-id decides (no DMI UUID)")
    machine_id = Path("/etc/machine-id").read_text().strip()
    signed = char_is_signed(os.uname().machine)
    out = subprocess.run([str(c_derivation[signed]), machine_id], capture_output=True, text=True, check=True).stdout
    assert identify(Path("/"), None) == (uuid.UUID(out), "/etc/machine-id, the established agent's FNV-1a derivation")


def test_char_signedness_by_machine() -> None:
    assert [char_is_signed(m) for m in ("x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x", "riscv64")] == [
        True, True, False, False, False, False, False,
    ]  # fmt: skip


def test_names_from_the_fixture_tree() -> None:
    root = FIXTURES / "host-debian12"
    assert (read_hostname(root), read_os_release(root), read_machine(root)) == ("vm", "6.18.44-fc-v669", "x86_64")


def test_machine_falls_back_to_uname_before_kernel_arch_existed() -> None:
    assert read_machine(FIXTURES / "host-oldkernel") == os.uname().machine


def test_missing_hostname(tmp_path: Path) -> None:
    with pytest.raises(ReaderError) as err:
        read_hostname(tmp_path)
    assert err.value.missing
