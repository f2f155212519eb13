"""hsflowd.conf: tokenizer, value types, settings dataclasses and parser.

Use :func:`load_config` (a file) or :func:`parse_config` (text); both return a
frozen :class:`Settings` or raise :class:`ConfigError`, whose ``str()`` is a
one-line ``FILE:LINE: message`` diagnostic ready to print.  Modules' blocks are
declared in their own folders (``blocks.py``), not here.
"""

from .blocks import module_block
from .errors import ConfigError
from .parser import UNSUPPORTED_BLOCKS, load_config, parse_config
from .settings import CollectorSettings, Settings
from .values import AgentCidr

__all__ = [
    "UNSUPPORTED_BLOCKS",
    "AgentCidr",
    "CollectorSettings",
    "ConfigError",
    "Settings",
    "load_config",
    "module_block",
    "parse_config",
]
