"""dns-sd: collectors from DNS SRV records and settings from TXT records (REFERENCE.md section 5).

With ``dns-sd { domain = .example.com }`` a fleet follows one DNS zone: each
``_sflow._udp.example.com`` SRV record is a collector, each TXT string
``key=value`` a setting that overrides the file's.  Until the first answer the
file's collectors (often none) are used; after it, DNS decides: no SRV record
stops sending, while a query that gets no answer keeps everything as it was
(the established agent's rules, mod_dnssd and evt_config_end).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from hsflowd_py.config import Settings
from hsflowd_py.module import Module, register
from hsflowd_py.module_context import Discovered, ModuleContext
from hsflowd_py.tasks import cancel

if TYPE_CHECKING:
    from .lookup import Found

from .schedule import NO_TTL_INTERVAL_S, first_delay, next_interval, retry_delay
from .settings import DnsSdSettings
from .txt import parse_txt

log = logging.getLogger("hsflowd.dnssd")


@register
class DnsSd(Module):
    name = "dns-sd"
    settings_type = DnsSdSettings

    def __init__(self, context: ModuleContext, settings: Settings) -> None:
        super().__init__(context, settings)
        assert settings.dns_sd is not None, "started only when the config has dns-sd {}"
        self.config = settings.dns_sd
        self.interval = NO_TTL_INTERVAL_S
        self.failures = 0
        self.overrides: tuple[tuple[str, Any], ...] = ()
        self.problems: set[str] = set()
        self.restart = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="dns-sd")

    async def stop(self) -> None:
        await cancel(self.task)
        if self.settings.dns_sd is None:
            # the reloaded config no longer has dns-sd {}: back to the file's collectors and settings
            self.context.set_discovered(Discovered())

    def reconfigure(self, settings: Settings) -> None:
        """A reload that changes ``dns-sd {}`` starts over with a first query, as at start-up."""
        self.settings = settings
        if settings.dns_sd is not None and settings.dns_sd != self.config:
            self.config = settings.dns_sd
            self.restart.set()

    def status(self) -> dict[str, int]:
        return {**self.stats, "collectors": len(self.context.discovered.collectors or ())}

    async def _run(self) -> None:
        delay = first_delay(self.config.first_query_max, self.context.rng)
        while True:
            try:
                await asyncio.wait_for(self.restart.wait(), delay)
            except TimeoutError:
                delay = await self._guarded_query()
            else:
                self.restart.clear()
                delay = first_delay(self.config.first_query_max, self.context.rng)

    async def _guarded_query(self) -> float:
        """A bug met on some odd answer must not end discovery for good: log it once, try again later."""
        try:
            return await self.query()
        except Exception:
            self.stats["errors"] += 1
            if self.stats["errors"] == 1:
                log.exception("DNS-SD: unexpected failure (further ones counted, not logged)")
            return self.interval

    async def query(self) -> float:
        """One round of queries, applied; returns the delay until the next round."""
        # dnspython (with httpx, ~20 MB) is loaded only by agents that use DNS-SD.
        from .lookup import LookupFailed, lookup, make_resolver, service_name

        name = service_name(self.config.domain).to_text(omit_final_dot=True)
        self.stats["queries"] += 1
        try:
            found = await lookup(make_resolver(self.config), self.config.domain)
        except LookupFailed as e:
            self.failures += 1
            self.stats["query_failures"] += 1
            if self.failures == 1:
                log.warning("DNS-SD query for %s failed, keeping the current collectors and settings: %s", name, e)
            else:
                log.debug("DNS-SD query for %s failed again (%d in a row): %s", name, self.failures, e)
            return retry_delay(self.failures, self.interval)
        if self.failures:
            log.info("DNS-SD: %s answers again after %d failed queries", name, self.failures)
            self.failures = 0
        self.interval = next_interval(found.ttl)
        self._apply(found, name)
        log.debug("DNS-SD: smallest TTL %s, next query in %.0f s", found.ttl, self.interval)
        return self.interval

    def _apply(self, found: Found, name: str) -> None:
        problems = [f"SRV target {s}; skipped" for s in found.skipped]
        if found.txt is None:
            problems.append("TXT query failed; keeping the settings learned before")
            overrides = self.overrides
        else:
            txt = parse_txt(found.txt)
            problems += txt.problems
            overrides = txt.overrides
        self._report(problems)
        previous = self.context.discovered
        self.overrides = overrides
        self.context.set_discovered(Discovered(found.collectors, overrides))
        if found.collectors != previous.collectors:
            if found.collectors:
                log.info("DNS-SD: sending to %s", ", ".join(self.context.collector_labels()))
            else:
                log.warning("DNS-SD: no SRV record for %s: not sending until one appears", name)
        if overrides != previous.overrides:
            log.info("DNS-SD settings: %s", ", ".join(f"{k}={v}" for k, v in overrides) or "none, the file's apply")

    def _report(self, problems: list[str]) -> None:
        """Log a problem when it first appears; again only if it comes back after being fixed."""
        for p in problems:
            if p not in self.problems:
                log.warning("DNS-SD: %s", p)
        self.stats["records_ignored"] += len(problems)
        self.problems = set(problems)
