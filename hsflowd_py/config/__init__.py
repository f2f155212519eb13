"""hsflowd.conf: tokenizer, value types, settings dataclasses and parser.

Use :func:`load_config` (a file) or :func:`parse_config` (text); both return a
frozen :class:`Settings` or raise :class:`ConfigError`, whose ``str()`` is a
one-line ``FILE:LINE: message`` diagnostic ready to print.
"""

from .errors import ConfigError
from .parser import UNSUPPORTED_BLOCKS, load_config, parse_config
from .settings import (
    CollectorSettings,
    DnsSdSettings,
    DockerSettings,
    PcapSettings,
    Settings,
    SystemdSettings,
    TcpSettings,
)
from .values import AgentCidr

__all__ = [
    "UNSUPPORTED_BLOCKS",
    "AgentCidr",
    "CollectorSettings",
    "ConfigError",
    "DnsSdSettings",
    "DockerSettings",
    "PcapSettings",
    "Settings",
    "SystemdSettings",
    "TcpSettings",
    "load_config",
    "parse_config",
]
