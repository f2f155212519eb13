"""``dropmon { }`` settings: the established agent's keys, defaults and ranges (mod_dropmon.c,
hsflowconfig.c), read by the core's config parser.

Kept free of the module's own imports (see ``hsflowd_py/config/blocks.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from hsflowd_py.config import values as v
from hsflowd_py.config.blocks import module_block
from hsflowd_py.config.schema import conf_key

MAX_LIMIT = 10_000
"""The established agent's HSP_MAX_NOTIFY_RATELIMIT."""


@module_block("dropmon")
@dataclass(frozen=True)
class DropmonSettings:
    """``limit``: discard samples a second at most (the rest are counted in ``drops``); ``start = off``
    loads nothing (a reload turning it on starts the module, off again stops it); ``sw`` the kernel's
    software drops (the only kind the tracepoint sees; off, the block does nothing); ``rn`` the reason
    record (0:1042); ``hide`` a regex of reason names and drop functions not to send; ``max`` drops a
    second that count as a flood, ``max_trip`` flood seconds in a row after which the module stops (the
    established agent's circuit breaker).

    Accepted for the established agent's files, without effect here (they steer its NET_DM channel or
    its hardware drops, which the tracepoint does not have): ``hw``, ``hw_unknown``, ``hw_function``,
    ``sw_passive``, ``hw_passive``, ``force``, ``group``.
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    start: bool = field(default=True, metadata=conf_key("start", v.BOOL))
    limit: int = field(default=100, metadata=conf_key("limit", v.integer(1, MAX_LIMIT)))
    sw: bool = field(default=True, metadata=conf_key("sw", v.BOOL))
    rn: bool = field(default=True, metadata=conf_key("rn", v.BOOL))
    hide: str | None = field(default=None, metadata=conf_key("hide", v.REGEX))
    max: int = field(default=100_000, metadata=conf_key("max", v.integer(1, v.UINT32)))
    max_trip: int = field(default=2, metadata=conf_key("max_trip", v.integer(1, v.UINT32)))
    hw: bool = field(default=True, metadata=conf_key("hw", v.BOOL))
    hw_unknown: bool = field(default=False, metadata=conf_key("hw_unknown", v.BOOL))
    hw_function: bool | None = field(default=None, metadata=conf_key("hw_function", v.BOOL))
    sw_passive: bool = field(default=False, metadata=conf_key("sw_passive", v.BOOL))
    hw_passive: bool = field(default=False, metadata=conf_key("hw_passive", v.BOOL))
    force: bool = field(default=True, metadata=conf_key("force", v.BOOL))
    group: int | None = field(default=None, metadata=conf_key("group", v.integer(1, v.UINT32)))
