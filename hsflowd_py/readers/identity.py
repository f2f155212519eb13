"""Who the host is: hostname, kernel release, machine type and host UUID.

Host UUID precedence (:func:`identify`), that of the established agent as its packages run it
(``hsflowd -m %m``): a UUID given on the command line or in the config; else the SMBIOS system
UUID (/sys/class/dmi/id/product_uuid, the string ``dmidecode`` prints, readable by root only,
absent on most VMs and non-x86 boards, ignored when firmware left it all zeros or all ones);
else one derived from the machine-id (``-m``, else /etc/machine-id, which is what ``%m`` gives);
else the nil UUID, which sFlow collectors read as "unknown".

Deriving from machine-id, by default as the established agent does (``chooseUUID`` in its
hsflowd.c), so a collector sees the same host before and after the switch: h1 and h2 are the
32-bit FNV-1a hashes of the first and last 8 machine-id bytes, each byte taken as a C ``char``
(sign-extended where char is signed: x86), and the UUID is h1 h2 h1 h2 as 32-bit words in the
machine's byte order, with version 5 and the RFC 4122 variant forced.  Its weakness: 64 bits of
hash, repeated, so hosts collide after some billions rather than never.

The alternative (``--machine-id-uuid hmac``) follows machine-id(5), which asks that the ID not be
sent as it is but through a keyed hash with an application key: systemd's
``sd_id128_get_machine_app_specific()``, HMAC-SHA256 keyed with the 16 machine-id bytes over
:data:`APP_ID`, the first 16 bytes forced to a version 4 UUID, equal to
``systemd-id128 machine-id --app-specific=1b0cd71c-b8d2-4919-9457-c96cf6419b8d``.
"""

from __future__ import annotations

import os
import struct
import sys
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
    """/etc/machine-id (32 lowercase hex digits and a newline) or ``-m``, where the established agent
    also allows ``-``, ``.`` and ``:`` between bytes (a UUID spelling)."""
    try:
        raw = bytes.fromhex(text.strip().translate(str.maketrans("", "", "-.:")))
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raise ReaderError(f"{text.strip()!r} is not 32 hex digits", line=1)
    return raw


DERIVATIONS = ("hsflowd", "hmac")
"""How a UUID comes from machine-id: the established agent's hash (default) or the HMAC."""

_FNV_OFFSET, _FNV_PRIME = 0x811C9DC5, 16777619
_UNSIGNED_CHAR = ("arm", "aarch64", "ppc", "powerpc", "s390", "riscv")
"""Machines whose C ``char`` is unsigned (the ABI says so); elsewhere (x86) it is signed."""


def char_is_signed(machine: str) -> bool:
    return not machine.startswith(_UNSIGNED_CHAR)


def _fnv1a(data: bytes, signed_char: bool) -> int:
    """32-bit FNV-1a over ``data`` as the established agent's ``hash_fnv1a(const char *)`` runs it."""
    value = _FNV_OFFSET
    for byte in data:
        extended = byte | 0xFFFFFF00 if signed_char and byte & 0x80 else byte
        value = ((value ^ extended) * _FNV_PRIME) & 0xFFFFFFFF
    return value


def hsflowd_machine_id_uuid(machine_id: bytes, signed_char: bool, byteorder: str = sys.byteorder) -> uuid.UUID:
    """The established agent's UUID for a machine-id (see the module docstring)."""
    word = struct.Struct("<I" if byteorder == "little" else ">I")
    h1, h2 = _fnv1a(machine_id[:8], signed_char), _fnv1a(machine_id[8:16], signed_char)
    raw = bytearray(word.pack(h1) + word.pack(h2)) * 2
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    return uuid.UUID(bytes=bytes(raw))


def machine_id_uuid(machine_id: bytes) -> uuid.UUID:
    """The app-specific UUID of a machine-id (see the module docstring).

    hashlib and hmac are imported here, by the one derivation that uses them: imported, they map
    OpenSSL's libcrypto (3.4 MB of resident memory) into an agent that otherwise never hashes.
    """
    import hashlib
    import hmac

    digest = hmac.new(machine_id, APP_ID.bytes, hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


def identify(
    root: Path,
    configured: uuid.UUID | None,
    machine_id: bytes | None = None,
    derivation: str = "hsflowd",
) -> tuple[uuid.UUID, str]:
    """The host's UUID by the precedence in the module docstring, and where it came from; never raises.

    ``machine_id`` is ``-m``'s; None reads /etc/machine-id under ``root``.
    """
    if configured is not None:
        return configured, "configured (-u or uuid in the config)"
    dmi = read_optional(root / "sys/class/dmi/id/product_uuid")
    if dmi and (found := parse_dmi_uuid(dmi)) is not None:
        return found, "DMI system UUID (/sys/class/dmi/id/product_uuid)"
    where = "-m"
    if machine_id is None:
        where = "/etc/machine-id"
        try:
            machine_id = parse_machine_id(read_optional(root / "etc/machine-id") or "")
        except ReaderError:
            return uuid.UUID(int=0), "none (no DMI UUID, no machine-id): nil UUID"
    if derivation == "hmac":
        return machine_id_uuid(machine_id), f"{where}, HMAC-SHA256 app-specific ID"
    signed = char_is_signed(read_machine(root))
    return hsflowd_machine_id_uuid(machine_id, signed), f"{where}, the established agent's FNV-1a derivation"


def host_uuid(root: Path, configured: uuid.UUID | None) -> uuid.UUID:
    """:func:`identify`'s UUID with /etc/machine-id and the default derivation."""
    return identify(root, configured)[0]
