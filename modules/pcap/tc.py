"""Hooking the eBPF sampler onto an interface: tcx links where the kernel has them, else a tc clsact
qdisc with one bpf filter per direction.

tcx (kernel 6.6+) is one ``bpf(BPF_LINK_CREATE)`` per direction: no netlink, no qdisc, and no
library (pyroute2 costs the agent about 12 MB); the program runs before the interface's tc
filters and, returning TC_ACT_UNSPEC, lets them and other tcx programs run.  The kernel
detaches a link when its descriptor closes, so an agent that dies leaves nothing behind.

On older kernels, rtnetlink through pyroute2 (imported only then): the filters are added with a
fixed priority and handle and with "replace" semantics, so that filters left behind by an agent
that died are replaced rather than doubled (a dead agent's filter keeps sampling into a ring
nobody reads).  The clsact qdisc is shared with whatever else uses tc on the host: it is removed
on close only when this agent created it and no other filter is left on it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Any

from hsflowd_py.bpf import BPF_TCX_EGRESS, BPF_TCX_INGRESS, tcx_attach

INGRESS = 0xFFFFFFF2
EGRESS = 0xFFFFFFF3
PRIORITY = 1
HANDLE = 0x5F10
NAME = "hsflowd-py"


class TcHooks:
    """tcx links, or tc filters through pyroute2 where the kernel has no tcx."""

    def __init__(self) -> None:
        self._links: dict[int, tuple[int, int]] = {}
        self._tcx: bool | None = None
        """Whether the kernel has tcx; None until the first attach tells."""
        self._ipr: Any = None

    @property
    def how(self) -> str:
        return "tcx" if self._tcx else "tc clsact"

    def attach(self, ifindex: int, ingress_fd: int, egress_fd: int) -> bool:
        """Hook both programs; True when a clsact qdisc was created here."""
        if self._tcx is not False:
            try:
                link = tcx_attach(ingress_fd, ifindex, BPF_TCX_INGRESS)
                try:
                    self._links[ifindex] = (link, tcx_attach(egress_fd, ifindex, BPF_TCX_EGRESS))
                except OSError:
                    os.close(link)
                    raise
                self._tcx = True
                return False
            except OSError as e:
                if e.errno != errno.EINVAL or self._tcx:
                    raise OSError(e.errno, f"cannot attach a tcx program: {e.strerror}") from None
                self._tcx = False  # a kernel before 6.6
        return self._tc_attach(ifindex, ingress_fd, egress_fd)

    def _netlink(self) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return self._ipr

    def _tc_attach(self, ifindex: int, ingress_fd: int, egress_fd: int) -> bool:
        from pyroute2.netlink.exceptions import NetlinkError

        ipr = self._netlink()
        created = True
        try:
            ipr.tc("add", "clsact", ifindex)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise OSError(e.code, f"cannot add a clsact qdisc: {e}") from None
            created = False
        try:
            for parent, fd, direction in ((INGRESS, ingress_fd, "in"), (EGRESS, egress_fd, "out")):
                ipr.tc(
                    "replace-filter",
                    "bpf",
                    ifindex,
                    HANDLE,
                    fd=fd,
                    name=f"{NAME}-{direction}",
                    parent=parent,
                    prio=PRIORITY,
                    classid=1,
                    direct_action=True,
                )
        except NetlinkError as e:
            self.detach(ifindex, created)
            raise OSError(e.code, f"cannot add a tc bpf filter: {e}") from None
        return created

    def detach(self, ifindex: int, remove_qdisc: bool) -> None:
        """Unhook both programs (the interface may be gone already, which detached them)."""
        links = self._links.pop(ifindex, None)
        if links is not None:
            for link in links:
                os.close(link)
            return
        if self._ipr is None:
            return
        from pyroute2.netlink.exceptions import NetlinkError

        for parent in (INGRESS, EGRESS):
            with contextlib.suppress(NetlinkError):
                self._ipr.tc("del-filter", "bpf", ifindex, HANDLE, parent=parent, prio=PRIORITY)
        if remove_qdisc:
            try:
                if not any(self._ipr.get_filters(index=ifindex, parent=p) for p in (INGRESS, EGRESS)):
                    self._ipr.tc("del", "clsact", ifindex)
            except NetlinkError:
                pass

    def close(self) -> None:
        for ifindex in list(self._links):
            self.detach(ifindex, False)
        if self._ipr is not None:
            self._ipr.close()
