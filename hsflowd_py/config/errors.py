"""The one exception the configuration package raises.

Every problem with ``hsflowd.conf`` -- unreadable file, bad syntax, unknown key,
value out of range -- surfaces as :class:`ConfigError`, so the CLI can print a
single line and exit non-zero without catching a zoo of exception types.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem, located as precisely as we know it.

    ``str()`` reads ``FILE:LINE: MESSAGE`` like a compiler diagnostic, so editors
    and operators can jump straight to the offending line.  ``message`` is the
    bare reason without the location, for callers that format it themselves.
    """

    def __init__(self, message: str, source: str | None = None, line: int | None = None, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line
        self.key = key

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.source, self.line) if part is not None)
        return f"{where}: {self.message}" if where else self.message


def excerpt(text: str, limit: int = 40) -> str:
    """``repr(text)``, cut to ``limit`` characters with its length said, so a megabyte of junk in a
    file or a DNS record makes a one-line error, not a megabyte of log."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
