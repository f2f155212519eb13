"""``dns-sd { }``: collectors and settings from DNS (see ``hsflowd_py/config/blocks.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hsflowd_py.config import values as v
from hsflowd_py.config.blocks import module_block
from hsflowd_py.config.schema import conf_key


@dataclass(frozen=True)
class DnsSdLegacy:
    """The established agent's older ``sflow {}``-level spellings: ``DNSSD = on|off`` and ``DNSSD_domain``."""

    dnssd: bool | None = field(default=None, metadata=conf_key("DNSSD", v.BOOL))
    dnssd_domain: str | None = field(default=None, metadata=conf_key("DNSSD_domain", v.DOMAIN))


def fold_legacy(block: DnsSdSettings | None, legacy: Mapping[str, Any]) -> DnsSdSettings | None:
    """The legacy keys into the block, as the established agent reads them: ``on`` is an empty
    ``dns-sd {}``, ``off`` turns DNS-SD off (whatever the order of lines, where there the last one
    wins); ``DNSSD_domain`` is the domain unless the block sets one."""
    switch, domain = legacy.get("dnssd"), legacy.get("dnssd_domain")
    if switch is False:
        return None
    if block is None and switch:
        block = DnsSdSettings()
    if block is not None and domain is not None and not block.domain:
        block = dataclasses.replace(block, domain=domain)
    return block


@module_block("dns-sd", supplies_collectors=True, legacy=DnsSdLegacy, fold=fold_legacy)
@dataclass(frozen=True)
class DnsSdSettings:
    """Collectors and settings from DNS SRV/TXT records (REFERENCE.md section 5).

    ``domain`` keeps its leading dot; empty means the resolver's own search
    domain, as in the established agent.  ``server``, ``port`` and
    ``first_query_max`` are additions so tests can use a local DNS server and
    need not wait up to 30 s for the first query.
    """

    REQUIRES_ONE_OF: ClassVar[tuple[str, ...]] = ()

    domain: str = field(default="", metadata=conf_key("domain", v.DOMAIN, aliases=("DNSSD_domain",)))
    server: str | None = field(default=None, metadata=conf_key("server", v.IP))
    port: int = field(default=53, metadata=conf_key("port", v.PORT))
    first_query_max: float = field(default=30.0, metadata=conf_key("firstQuery", v.seconds(3600)))
