"""``tcp { }``: tcp_info look-ups of sampled packets' sockets (see ``hsflowd_py/config/blocks.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hsflowd_py.config import values as v
from hsflowd_py.config.blocks import module_block
from hsflowd_py.config.schema import conf_key


@module_block("tcp")
@dataclass(frozen=True)
class TcpSettings:
    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    tunnel: bool = field(default=False, metadata=conf_key("tunnel", v.BOOL))
    udp: bool = field(default=False, metadata=conf_key("udp", v.BOOL))
    dump: bool = field(default=False, metadata=conf_key("dump", v.BOOL))
