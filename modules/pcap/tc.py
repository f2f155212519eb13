"""Hooking the eBPF sampler onto an interface: a tc clsact qdisc with one bpf filter per direction.

The filters are added with a fixed priority and handle and with "replace" semantics, so that
filters left behind by an agent that died are replaced rather than doubled (a dead agent's
filter keeps sampling into a ring nobody reads).  The clsact qdisc is shared with whatever
else uses tc on the host: it is removed on close only when this agent created it and no other
filter is left on it.
"""

from __future__ import annotations

import contextlib
import errno
from typing import Any

INGRESS = 0xFFFFFFF2
EGRESS = 0xFFFFFFF3
PRIORITY = 1
HANDLE = 0x5F10
NAME = "hsflowd-py"


class TcHooks:
    """rtnetlink through pyroute2 (imported only when the eBPF sampler runs)."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError

        self._ipr: Any = IPRoute()
        self._error = NetlinkError

    def attach(self, ifindex: int, ingress_fd: int, egress_fd: int) -> bool:
        """Hook both programs; True when the clsact qdisc was created here."""
        created = True
        try:
            self._ipr.tc("add", "clsact", ifindex)
        except self._error as e:
            if e.code != errno.EEXIST:
                raise OSError(e.code, f"cannot add a clsact qdisc: {e}") from None
            created = False
        try:
            for parent, fd, direction in ((INGRESS, ingress_fd, "in"), (EGRESS, egress_fd, "out")):
                self._ipr.tc(
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
        except self._error as e:
            self.detach(ifindex, created)
            raise OSError(e.code, f"cannot add a tc bpf filter: {e}") from None
        return created

    def detach(self, ifindex: int, remove_qdisc: bool) -> None:
        """Unhook both programs (the interface may be gone already, which detached them)."""
        for parent in (INGRESS, EGRESS):
            with contextlib.suppress(self._error):
                self._ipr.tc("del-filter", "bpf", ifindex, HANDLE, parent=parent, prio=PRIORITY)
        if remove_qdisc:
            try:
                if not any(self._ipr.get_filters(index=ifindex, parent=p) for p in (INGRESS, EGRESS)):
                    self._ipr.tc("del", "clsact", ifindex)
            except self._error:
                pass

    def close(self) -> None:
        self._ipr.close()
