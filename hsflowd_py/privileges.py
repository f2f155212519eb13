"""Run without root once the privileged sockets and BPF programs are open.

A monitoring agent runs on every host for years: after start-up it keeps only
the capabilities its enabled modules declare (each module's ``privileges()``)
and becomes an unprivileged user, as the established agent does.  Linux keeps
capabilities across setuid only with PR_SET_KEEPCAPS, and Python's standard
library has no capset, so both go through libc.  NoNewPrivs and a bounding set cut down to
what is kept close the ways back to more (a setuid or file-capability binary run by a module).
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
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYSLOG": 34,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
}

_PR_SET_KEEPCAPS = 8
_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
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


class DropError(Exception):
    """The agent could not become its user with just what it keeps: it must not run on as it is.

    ``became_user``: the user ids had changed already (a failure after the setuid): the process is
    no longer root, but it may hold capabilities it was to give up."""

    def __init__(self, message: str, became_user: bool = False) -> None:
        super().__init__(message)
        self.became_user = became_user


def _status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _reduce_bounding_set(mask: int) -> bool:
    """Drop every capability not in ``mask`` from the bounding set; False when not allowed to
    (no CAP_SETPCAP, e.g. a unit or a container that did not grant it)."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        held = _libc.prctl(_PR_CAPBSET_READ, cap, 0, 0, 0) == 1
        if held and not mask >> cap & 1 and _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            return False
    return True


def drop_privileges(user: str, group: str | None, keep: Privileges) -> None:
    """Become ``user`` (and ``group``) keeping only ``keep``, with NoNewPrivs set and the bounding
    set reduced to ``keep``; raises DropError saying what failed.

    All four user ids become ``user``'s: nothing lets the process become root again.  Capabilities
    the process does not have (a plain ``docker run`` grants few) cannot be kept: they are logged,
    and the agent drops root all the same rather than staying root because of them.
    """
    missing = keep.capabilities - permitted_capabilities()
    if missing:
        log.warning("not permitted, so not kept: %s (modules needing them may lose data)", ", ".join(sorted(missing)))
        keep = Privileges(keep.capabilities - missing, keep.groups)
    try:
        pw = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else pw.pw_gid
    except KeyError as e:
        raise DropError(f"no such user or group: {e.args[0]}") from None
    mask = capability_mask(keep.capabilities)
    try:
        bounded = _reduce_bounding_set(mask)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
        _check(_libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
        os.setgroups(sorted(keep.groups))
        os.setresgid(gid, gid, gid)
        os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    except OSError as e:
        raise DropError(f"cannot become user {user}: {e}") from None
    try:
        set_capabilities(keep.capabilities)
        _check(_libc.prctl(_PR_SET_KEEPCAPS, 0, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    except OSError as e:
        raise DropError(f"became user {user} but could not reduce capabilities to what is kept: {e}", True) from None
    st = _status()
    if (
        st["Uid"].split() != [str(pw.pw_uid)] * 4
        or st["Gid"].split() != [str(gid)] * 4
        or int(st["CapPrm"], 16) != mask
        or int(st["CapEff"], 16) != mask
        or st.get("NoNewPrivs", "1").strip() != "1"
    ):
        raise DropError(f"after becoming user {user} the process is not what was asked: {st}", True)
    if not bounded:
        log.warning("bounding set left as it was (no CAP_SETPCAP): NoNewPrivs still stops any regain")
    log.info(
        "running as %s:%d with %s",
        user,
        gid,
        ", ".join(sorted(keep.capabilities)) or "no capabilities",
    )
