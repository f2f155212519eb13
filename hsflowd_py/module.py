"""The contract between the core and the agent's modules.

A module is one file in ``modules/`` that subclasses :class:`Module` and
decorates it with :func:`register`; it sees the core only through a
:class:`~hsflowd_py.module_context.ModuleContext`, never the agent itself; the core imports every file there, keeps
the modules whose config block is present, and calls their hooks inside a
guard so that one failing module is logged and counted, never fatal.
Modules produce records and samples; they never write bytes or own the
collectors' sockets.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections import Counter
from collections.abc import Awaitable
from typing import TYPE_CHECKING, ClassVar

from .privileges import Privileges
from .sflow.records import Record

if TYPE_CHECKING:
    from .config import Settings  # only a type here: a module's settings file is imported by the config
    from .flow import SampledPacket
    from .module_context import ModuleContext

log = logging.getLogger("hsflowd.module")

MODULES: dict[str, type[Module]] = {}


class Module:
    """Base class of the agent's modules; every hook is optional."""

    name: ClassVar[str]
    enrich_order: ClassVar[int] = 50
    """Position among flow enrichers: tcp runs before the modules that read its answer."""

    def __init__(self, context: ModuleContext, settings: Settings) -> None:
        self.context = context
        self.settings = settings
        self.stats: Counter[str] = Counter()

    @classmethod
    def wanted(cls, settings: Settings) -> bool:
        """Whether the config enables this module."""
        return False

    async def start(self) -> None:
        """Open sockets, subscribe to sources, add pollers."""

    async def stop(self) -> None:
        """Release everything start() took; pending samples are flushed by the core afterwards."""

    def reconfigure(self, settings: Settings) -> None:
        """New effective settings (SIGHUP, DNS-SD); the default just keeps them."""
        self.settings = settings

    def host_counters(self, records: list[Record]) -> None:
        """Add records to the host (2:1) counter sample, e.g. 0:2100."""

    def virtual_domains(self) -> int | None:
        """How many containers or services this module reports as 3:N data sources.

        The core then adds one 0:2100 (virtual node) to the host sample, with the sum of every
        module's count, so two modules never send two 2100 records.
        """
        return None

    def enrich(self, packet: SampledPacket) -> Awaitable[None] | None:
        """Add records to a flow sample; return an awaitable to hold the sample until it completes."""
        return None

    def privileges(self) -> Privileges:
        """Capabilities and groups this module still needs after the agent stops being root."""
        return Privileges()

    def status(self) -> dict[str, int]:
        """Self-telemetry counters, shown by SIGUSR1 and --status."""
        return dict(self.stats)


def register(cls: type[Module]) -> type[Module]:
    """Class decorator: make a module known to the core under ``cls.name``."""
    MODULES[cls.name] = cls
    return cls


def discover() -> dict[str, type[Module]]:
    """Import every module file so that each registers itself."""
    from . import modules as package

    for info in pkgutil.iter_modules(package.__path__):
        try:
            importlib.import_module(f"{package.__name__}.{info.name}")
        except Exception:  # a broken module must not stop the agent
            log.exception("module %s failed to load", info.name)
    return MODULES


def implements(module: Module, hook: str) -> bool:
    """True when a module overrides a hook, so the core skips no-op calls on hot paths."""
    return getattr(type(module), hook) is not getattr(Module, hook)
