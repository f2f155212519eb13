"""``docker { }``: the Docker engine's containers (see ``hsflowd_py/config/blocks.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hsflowd_py.config import values as v
from hsflowd_py.config.blocks import module_block
from hsflowd_py.config.schema import conf_key


@module_block("docker")
@dataclass(frozen=True)
class DockerSettings:
    """``socket`` (addition) lets tests and rootless engines point elsewhere.

    ``refreshVMs``/``forgetVMs`` are range-checked as the established agent does and otherwise
    unused: the engine's event stream tells this agent of containers at once, and data-source
    indexes are forgotten after the global ``forgetVMs``.
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    hostname: bool = field(default=False, metadata=conf_key("hostname", v.BOOL))
    mark_traffic: bool = field(default=False, metadata=conf_key("markTraffic", v.BOOL))
    refresh_vms: int | None = field(default=None, metadata=conf_key("refreshVMs", v.integer(60, 3600)))
    forget_vms: int | None = field(default=None, metadata=conf_key("forgetVMs", v.integer(60, v.UINT32)))
    socket: str = field(default="/var/run/docker.sock", metadata=conf_key("socket", v.TEXT))
