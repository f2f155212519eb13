"""``systemd { }``: systemd services as data sources (see ``hsflowd_py/config/blocks.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hsflowd_py.config import values as v
from hsflowd_py.config.blocks import module_block
from hsflowd_py.config.schema import conf_key


@module_block("systemd")
@dataclass(frozen=True)
class SystemdSettings:
    """``refresh_vms`` None means the global ``refreshVMs``; ``cgroup_root`` (addition) is for test roots.

    ``cgroup_procs``/``cgroup_acct`` (the established agent's cgroup v1 path formats) are accepted
    and unused: the cgroup files are found from each unit's ControlGroup property.
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    mark_traffic: bool = field(default=False, metadata=conf_key("markTraffic", v.BOOL))
    drop_priv: bool = field(default=True, metadata=conf_key("dropPriv", v.BOOL))
    refresh_vms: int | None = field(default=None, metadata=conf_key("refreshVMs", v.integer(10, 3600)))
    cgroup_root: str = field(default="/sys/fs/cgroup", metadata=conf_key("cgroupRoot", v.TEXT))
    cgroup_procs: str | None = field(default=None, metadata=conf_key("cgroup_procs", v.TEXT))
    cgroup_acct: str | None = field(default=None, metadata=conf_key("cgroup_acct", v.TEXT))
