"""Module config blocks: each module declares its own ``name { ... }`` block in its own folder.

A module's settings live in ``modules/<folder>/settings.py``: a frozen dataclass whose fields carry
their keys (``schema.conf_key``), decorated with :func:`module_block`, which names the block and
registers it here.  The parser, ``--check`` and the error messages read the same declarations as
the core's own keys do, so a module's block behaves exactly like one written into the core.

The parser must know every block before it reads a file, and before any module is imported: a
module's package may import what is missing on this host (dbus-next, docker) or be slow to load,
and its block must parse all the same.  So :func:`declared_blocks` loads each folder's
``settings.py`` on its own, by file, under the name it has inside the package
(``hsflowd_py.modules.<folder>.settings``): the package's ``from .settings import ...`` later finds
that very module, with the very classes the parser built.  A ``settings.py`` therefore imports
only the config package (``hsflowd_py.config...``), nothing of its own package.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .schema import Block

log = logging.getLogger("hsflowd.config")

T = TypeVar("T")

MODULES_PACKAGE = "hsflowd_py.modules"
SETTINGS_FILE = "settings.py"


@dataclass(frozen=True)
class ModuleBlock(Block):
    """A module's block in ``sflow { ... }``, as the parser and printer see it.

    ``attr`` is how the settings name it (``settings.dns_sd`` for ``dns-sd``).  ``unsupported``: keys
    of the established agent's block this module does not implement (refused, or skipped with
    ``--skip-unsupported``).  ``samples_packets``: a file with this block samples packets, which sets
    the datagram sub-agent id (REFERENCE.md 1).  ``supplies_collectors``: this block can stand in for
    ``collector { }`` (``sflow {}`` needs one or the other).  ``legacy`` is a dataclass of
    ``sflow {}``-level keys (old spellings) that configure this block, its field names unlike the
    core's, and ``fold`` turns their values (by field name) and the block as parsed (None if
    absent) into the block to keep.
    """

    attr: str = ""
    unsupported: frozenset[str] = frozenset()
    samples_packets: bool = False
    supplies_collectors: bool = False
    legacy: type | None = None
    fold: Callable[[Any, Mapping[str, Any]], Any] | None = field(default=None, compare=False)

    def absent(self) -> Any:
        """The value of a block the file does not have: no block, or none of a repeated one."""
        return () if self.repeat else None


_DECLARED: dict[str, ModuleBlock] = {}
"""Declared blocks by their lower-cased key, in the order their folders were loaded."""
_scanned = False


def module_block(
    key: str,
    *,
    repeat: bool = False,
    unsupported: tuple[str, ...] = (),
    samples_packets: bool = False,
    supplies_collectors: bool = False,
    legacy: type | None = None,
    fold: Callable[[Any, Mapping[str, Any]], Any] | None = None,
) -> Callable[[type[T]], type[T]]:
    """Class decorator on a module's settings dataclass: it is the ``key { ... }`` block of ``sflow {}``."""

    def declare(cls: type[T]) -> type[T]:
        if key.lower() in _DECLARED:
            return cls  # the folder imported again under another name (``modules.pcap``): the first stays
        _DECLARED[key.lower()] = ModuleBlock(
            key, cls, repeat, key.replace("-", "_"), frozenset(k.lower() for k in unsupported),
            samples_packets, supplies_collectors, legacy, fold,
        )  # fmt: skip
        return cls

    return declare


def declared_blocks() -> tuple[ModuleBlock, ...]:
    """Every module's block: the ``settings.py`` of each folder under ``modules/`` not loaded yet
    is loaded now (a folder added since is found on the next call)."""
    global _scanned
    from hsflowd_py import modules

    for folder in modules.__path__:
        for path in sorted(Path(folder).glob(f"*/{SETTINGS_FILE}")):
            _load(f"{MODULES_PACKAGE}.{path.parent.name}.settings", path)
    _scanned = True
    return tuple(_DECLARED.values())


def block_for_attr(attr: str) -> ModuleBlock | None:
    """The declared block that settings name ``attr``, if any."""
    return next((b for b in known_blocks() if b.attr == attr), None)


def block_of(cls: type | None) -> ModuleBlock | None:
    """The declared block whose settings dataclass is ``cls``, if any."""
    return next((b for b in known_blocks() if b.cls is cls), None)


def known_blocks() -> tuple[ModuleBlock, ...]:
    """The blocks declared so far; the folders are scanned once if no parse has done it yet."""
    return declared_blocks() if not _scanned else tuple(_DECLARED.values())


def _load(name: str, path: Path) -> None:
    if name in sys.modules or not path.parent.joinpath("__init__.py").is_file():
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    try:
        spec.loader.exec_module(loaded)
    except Exception:  # one broken module must not stop the others' blocks from parsing
        del sys.modules[name]
        log.exception("config of module %s failed to load; its block is unknown", path.parent.name)
