"""``k8s { }`` and ``containerd { }``: pods of a CRI runtime, and containerd's own containers
(see ``hsflowd_py/config/blocks.py``).  Both blocks belong to this folder because one module
file serves both (``modules/k8s/follower.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hsflowd_py.config import values as v
from hsflowd_py.config.blocks import module_block
from hsflowd_py.config.schema import conf_key

EOF_IGNORED = (
    "the established agent reads pods through a helper program and aborts when the helper's output "
    "ends, unless eof = on; this agent talks to the runtime itself and, when the runtime goes away, "
    "keeps running and retries with backoff, as eof = on asks"
)
"""What ``k8s { eof }`` does in the established agent (mod_k8s.c, 2023: "allow hsflowd_containerd
to exit without triggering abort()"), and why it means nothing here."""


@module_block("k8s")
@dataclass(frozen=True)
class K8sSettings:
    """``unixsock`` unset: the containerd, CRI-O and k3s sockets are tried in that order (the same
    CRI calls on each: ``modules/k8s/cri.py``).  ``eof`` is accepted and ignored (``EOF_IGNORED``).

    ``setIfAlias`` and ``setIfName`` are on unless turned off, as the established agent turns them
    on with the block: there ``setIfAlias`` makes the pod's name the alias the agent keeps for the
    pod's host veth (its own record; the kernel's ifalias is not written), and ``setIfName`` sends
    that alias as the veth's 0:1005 port name.  So the veth is named after its pod when both are on;
    with either off it keeps its kernel name."""

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    mark_traffic: bool = field(default=False, metadata=conf_key("markTraffic", v.BOOL))
    eof: bool = field(default=False, metadata=conf_key("eof", v.BOOL, ignored=EOF_IGNORED))
    set_if_alias: bool = field(default=True, metadata=conf_key("setIfAlias", v.BOOL))
    set_if_name: bool = field(default=True, metadata=conf_key("setIfName", v.BOOL))
    unixsock: str | None = field(default=None, metadata=conf_key("unixsock", v.TEXT))


@module_block("containerd")
@dataclass(frozen=True)
class ContainerdSettings:
    """``unixsock`` (addition) names containerd's socket; ``forgetVMs`` is range-checked and
    ignored (the global ``forgetVMs`` applies)."""

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    forget_vms: int | None = field(
        default=None,
        metadata=conf_key(
            "forgetVMs", v.integer(60, v.UINT32), ignored="the global forgetVMs applies to containers as to pods"
        ),
    )
    hostname: bool = field(default=False, metadata=conf_key("hostname", v.BOOL))
    mark_traffic: bool = field(default=False, metadata=conf_key("markTraffic", v.BOOL))
    unixsock: str | None = field(default=None, metadata=conf_key("unixsock", v.TEXT))
