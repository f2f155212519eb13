"""``k8s { }`` and ``containerd { }``: pods of a CRI runtime, and containerd's own containers
(see ``hsflowd_py/config/blocks.py``).  Both blocks belong to this folder because one module
file serves both (``modules/k8s/follower.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hsflowd_py.config import values as v
from hsflowd_py.config.blocks import module_block
from hsflowd_py.config.schema import conf_key


@module_block("k8s")
@dataclass(frozen=True)
class K8sSettings:
    """``unixsock`` unset: the containerd, CRI-O and k3s sockets are tried in that order.  ``eof``
    (the established agent's helper-restart switch) is accepted and not used.

    ``setIfAlias`` and ``setIfName`` are on unless turned off, as the established agent turns them
    on with the block: there ``setIfAlias`` makes the pod's name the alias the agent keeps for the
    pod's host veth (its own record; the kernel's ifalias is not written), and ``setIfName`` sends
    that alias as the veth's 0:1005 port name.  So the veth is named after its pod when both are on;
    with either off it keeps its kernel name."""

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    mark_traffic: bool = field(default=False, metadata=conf_key("markTraffic", v.BOOL))
    eof: bool = field(default=False, metadata=conf_key("eof", v.BOOL))
    set_if_alias: bool = field(default=True, metadata=conf_key("setIfAlias", v.BOOL))
    set_if_name: bool = field(default=True, metadata=conf_key("setIfName", v.BOOL))
    unixsock: str | None = field(default=None, metadata=conf_key("unixsock", v.TEXT))


@module_block("containerd")
@dataclass(frozen=True)
class ContainerdSettings:
    """``unixsock`` (addition) names containerd's socket; ``forgetVMs`` is range-checked and
    unused (the global ``forgetVMs`` applies)."""

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    forget_vms: int | None = field(default=None, metadata=conf_key("forgetVMs", v.integer(60, v.UINT32)))
    hostname: bool = field(default=False, metadata=conf_key("hostname", v.BOOL))
    mark_traffic: bool = field(default=False, metadata=conf_key("markTraffic", v.BOOL))
    unixsock: str | None = field(default=None, metadata=conf_key("unixsock", v.TEXT))
