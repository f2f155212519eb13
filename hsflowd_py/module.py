"""The contract between the core and the agent's modules.

A module is one folder in ``modules/`` whose package subclasses :class:`Module` and decorates it
with :func:`register`; it sees the core only through a
:class:`~hsflowd_py.module_context.ModuleContext`, never the agent itself; the core imports every
folder there, keeps the modules whose config block is present, and calls their hooks inside a
guard so that one failing module is logged and counted, never fatal.  Modules produce records and
samples; they never write bytes or own the collectors' sockets.

Adding a module is adding a folder, nothing else:

``modules/<name>/settings.py``
    The module's config block: a frozen dataclass whose fields declare their keys
    (``field(default=..., metadata=conf_key("key", values.CODEC))``), decorated with
    ``@module_block("name")`` (``hsflowd_py.config.blocks``; ``repeat=True`` for a block that may
    appear more than once, ``unsupported=(...)`` for keys of the established agent's block left
    out).  The parser reads this file alone, before any module is imported, so it imports only
    ``hsflowd_py.config``.  The block then parses, prints in ``--check`` and gets its errors named
    like the core's own, and ``settings.<name>`` (``-`` spelled ``_``) is the block as parsed: None,
    or ``()`` for a repeated block, when the file has none.  A block the established agent knows
    and this one did not (``k8s``, ``dropmon``) takes over from the "not supported" refusal once a
    folder declares it.
``modules/<name>/__init__.py``
    The :class:`Module` subclass, with ``settings_type`` naming that dataclass: the module runs
    while the file has the block (override :meth:`Module.wanted` for more, like ``markTraffic``).

Porting a module whose block is a field of the core's ``Settings``: move the dataclass to its
folder's ``settings.py`` with the decorator, delete the field from ``config/settings.py``, set
``settings_type``, and drop the block's name from ``UNSUPPORTED_BLOCKS`` in ``config/parser.py``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import traceback
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from .config import Settings
from .config.blocks import MODULES_PACKAGE, block_of, known_blocks
from .privileges import Privileges
from .sflow.records import Record

if TYPE_CHECKING:
    from .enrichers import Enricher
    from .module_context import ModuleContext

log = logging.getLogger("hsflowd.module")

MODULES: dict[str, type[Module]] = {}


class Module:
    """Base class of the agent's modules; every hook is optional."""

    name: ClassVar[str]
    settings_type: ClassVar[type | None] = None
    """The dataclass of the module's config block (``@module_block``); the module runs while it is there."""

    def __init__(self, context: ModuleContext, settings: Settings) -> None:
        self.context = context
        self.settings = settings
        self.stats: Counter[str] = Counter()

    @classmethod
    def wanted(cls, settings: Settings) -> bool:
        """Whether the config enables this module: by default, whether it has the module's block."""
        block = block_of(cls.settings_type)
        return block is not None and bool(settings.blocks.get(block.attr))

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

    def enrichers(self) -> Sequence[Enricher]:
        """The flow enrichers the current settings need (``enrichers.py`` has the contract); asked
        again after start and every reconfigure, so a module with nothing to add costs no sample anything.

        Porting an ``enrich`` hook of the earlier contract (k8s, dropmon)::

            class PodMarking(Enricher):
                reads = Fact.NONE                      # was: enrich_order = 5
                writes = Fact.NETNS | Fact.ENTITIES

                def enrich(self, packet):             # was: Module.enrich
                    ...                                # packet.netns, not packet.notes["netns"]

            def enrichers(self):
                return [PodMarking(...)] if self.settings.k8s.mark_traffic else []
        """
        return ()

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


def discover(settings: Settings | None = None) -> dict[str, type[Module]]:
    """Import the module packages so that each registers itself: with ``settings``, only those with a
    block set in them (a module runs only then, and a package may cost megabytes: dbus-next brings
    GLib), so an agent that samples packets and nothing else holds no other module's code; a block
    added on reload imports its package then.  Without, every package."""
    from . import modules as package

    for info in pkgutil.iter_modules(package.__path__):
        if settings is not None and not _configured(info.name, settings):
            continue
        try:
            importlib.import_module(f"{package.__name__}.{info.name}")
        except Exception as err:  # a broken module must not stop the agent; its block then does nothing
            where = traceback.extract_tb(err.__traceback__)[-1]
            log.error(
                "module %s failed to load, its block is ignored: %s: %s (%s line %d)",
                info.name, type(err).__name__, err, where.filename, where.lineno,
            )  # fmt: skip
            log.debug("module %s: the failure in full", info.name, exc_info=True)
    return MODULES


def _configured(folder: str, settings: Settings) -> bool:
    """Whether a block that the package's ``settings.py`` declares is set in ``settings``."""
    where = f"{MODULES_PACKAGE}.{folder}.settings"
    return any(b.cls.__module__ == where and settings.blocks.get(b.attr) for b in known_blocks())


def implements(module: Module, hook: str) -> bool:
    """True when a module overrides a hook, so the core skips no-op calls on hot paths."""
    return getattr(type(module), hook) is not getattr(Module, hook)
