"""Run without root once the privileged sockets and BPF programs are open.

A monitoring agent runs on every host for years: after start-up it keeps only
the capabilities its enabled modules declare (each module's ``privileges()``)
and becomes an unprivileged user, as the established agent does.  Linux keeps
capabilities across setuid only with PR_SET_KEEPCAPS, and Python's standard
library has no capset, so both go through libc.
"""

from __future__ import annotations

import ctypes
import grp
import logging
import os
import pwd
from dataclasses import dataclass, field

log = logging.getLogger("hsflowd.privileges")

CAPABILITIES = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}

_PR_SET_KEEPCAPS = 8
_CAP_VERSION_3 = 0x20080522


@dataclass
class Privileges:
    """What a module needs after the drop: capabilities by name, extra groups by gid."""

    capabilities: set[str] = field(default_factory=set)
    groups: set[int] = field(default_factory=set)

    def __or__(self, other: Privileges) -> Privileges:
        return Privileges(self.capabilities | other.capabilities, self.groups | other.groups)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def capability_mask(names: set[str]) -> int:
    unknown = names - CAPABILITIES.keys()
    if unknown:
        raise ValueError(f"unknown capabilities: {', '.join(sorted(unknown))}")
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES[name]
    return mask


def set_capabilities(names: set[str]) -> None:
    """Make ``names`` the only effective and permitted capabilities of this process."""
    mask = capability_mask(names)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        word = (mask >> (32 * i)) & 0xFFFFFFFF
        data[i].effective = data[i].permitted = word
        data[i].inheritable = 0
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def permitted_capabilities() -> set[str]:
    """The capabilities this process may still hold (a container without ``--cap-add`` has few)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapPrm:"):
                mask = int(line.split()[1], 16)
                return {name for name, bit in CAPABILITIES.items() if mask >> bit & 1}
    return set()


def drop_privileges(user: str, group: str | None, keep: Privileges) -> None:
    """Become ``user`` (and ``group``) keeping only ``keep``; raises OSError/KeyError on failure.

    Capabilities the process does not have (a plain ``docker run`` grants few) cannot be kept:
    they are logged, and the agent drops root all the same rather than staying root because of them.
    """
    missing = keep.capabilities - permitted_capabilities()
    if missing:
        log.warning("not permitted, so not kept: %s (modules needing them may lose data)", ", ".join(sorted(missing)))
        keep = Privileges(keep.capabilities - missing, keep.groups)
    pw = pwd.getpwnam(user)
    gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    _check(_libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups(sorted(keep.groups))
    os.setgid(gid)
    os.setuid(pw.pw_uid)
    set_capabilities(keep.capabilities)
    _check(_libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    log.info(
        "running as %s:%d with %s",
        user,
        gid,
        ", ".join(sorted(keep.capabilities)) or "no capabilities",
    )
