"""Who the host is: hostname, kernel release, machine type and host UUID.

Host UUID precedence (:func:`host_uuid`): the configured ``uuid``; else the SMBIOS system UUID
(/sys/class/dmi/id/product_uuid, readable by root only, absent on most VMs and non-x86
boards, and ignored when firmware left it all zeros or all ones); else one derived from
/etc/machine-id; else the nil UUID, which sFlow collectors read as "unknown".

Deriving from machine-id: machine-id(5) asks that the ID never be sent on the network as it is,
but through a keyed hash with an application key.  This is systemd's
``sd_id128_get_machine_app_specific()``: HMAC-SHA256 keyed with the 16 machine-id bytes over
:data:`APP_ID`, the first 16 bytes forced to an RFC 4122 version 4 UUID.  The result equals
``systemd-id128 machine-id --app-specific=1b0cd71c-b8d2-4919-9457-c96cf6419b8d``, is stable
for the life of the installation, and differs from the established agent's (which repeats a
32-bit hash of machine-id four times, so hosts collide after tens of thousands).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from pathlib import Path

from . import ReaderError, read_optional, read_text

APP_ID = uuid.UUID("1b0cd71c-b8d2-4919-9457-c96cf6419b8d")
"""hsflowd-py's application key for machine-id derived UUIDs; never change it."""

OS_NAME_LINUX = 2

MACHINE_TYPES: dict[str, int] = {
    **dict.fromkeys(("i386", "i486", "i586", "i686"), 2),
    "x86_64": 3,
    "ia64": 4,
    **dict.fromkeys(("sparc", "sparc64"), 5),
    "alpha": 6,
    **dict.fromkeys(("ppc", "ppc64", "ppc64le"), 7),
    "m68k": 8,
    **dict.fromkeys(("mips", "mips64"), 9),
    **dict.fromkeys(("parisc", "parisc64"), 11),
    **dict.fromkeys(("s390", "s390x"), 12),
}
"""uname machine → sFlow host machine_type (0 unknown, 1 other, 2 x86 … 12 s390); arm in machine_type()."""

_BOGUS_DMI = {uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1)}


def machine_type(machine: str) -> int:
    """sFlow machine_type of a uname machine string.

    ARM names vary with the core and byte order (armv7l, armv6l, aarch64, aarch64_be), so they
    are matched by prefix.  Architectures the enumeration predates (riscv64, loongarch64) are
    "other".
    """
    if not machine:
        return 0
    if machine.startswith(("arm", "aarch64")):
        return 10
    return MACHINE_TYPES.get(machine, 1)


def read_hostname(root: Path) -> str:
    """The UTS hostname, as gethostname() gives it."""
    return read_text(root / "proc/sys/kernel/hostname").strip()


def read_os_release(root: Path) -> str:
    """Kernel release, as ``uname -r`` gives it."""
    return read_text(root / "proc/sys/kernel/osrelease").strip()


def read_machine(root: Path) -> str:
    """Machine name, as ``uname -m`` gives it.

    /proc/sys/kernel/arch is recent (Linux 6.x); before it only uname(2) says, and /proc
    always describes the running kernel anyway.
    """
    return read_optional(root / "proc/sys/kernel/arch") or os.uname().machine


def parse_dmi_uuid(text: str) -> uuid.UUID | None:
    try:
        found = uuid.UUID(text.strip())
    except ValueError:
        return None
    return None if found in _BOGUS_DMI else found


def parse_machine_id(text: str) -> bytes:
    """/etc/machine-id: 32 lowercase hex digits and a newline."""
    try:
        raw = bytes.fromhex(text.strip())
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise ReaderError(f"{text.strip()!r} is not 32 hex digits", line=1)
    return raw


def machine_id_uuid(machine_id: bytes) -> uuid.UUID:
    """The app-specific UUID of a machine-id (see the module docstring)."""
    digest = hmac.new(machine_id, APP_ID.bytes, hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def host_uuid(root: Path, configured: uuid.UUID | None) -> uuid.UUID:
    """The host's UUID by the precedence in the module docstring; never raises."""
    if configured is not None:
        return configured
    dmi = read_optional(root / "sys/class/dmi/id/product_uuid")
    if dmi and (found := parse_dmi_uuid(dmi)) is not None:
        return found
    machine_id = read_optional(root / "etc/machine-id")
    if machine_id:
        try:
            return machine_id_uuid(parse_machine_id(machine_id))
        except ReaderError:
            pass
    return uuid.UUID(int=0)
