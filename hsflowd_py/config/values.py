"""Value types of hsflowd.conf: each parses its text and prints itself back.

Parsers raise ``ValueError`` with a short reason only; the config parser adds
file, line and key, so the same parsers serve DNS-SD TXT records (REFERENCE.md
section 5), where there is no file line to report.
"""

from __future__ import annotations

import ipaddress
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_SCALE = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_NUMBER = re.compile(r"([+-]?[0-9]+(?:\.[0-9]+)?)([A-Za-z]?)")
_TRUE = frozenset({"on", "yes", "true"})
_FALSE = frozenset({"off", "no", "false"})
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_IFNAMSIZ = 16  # kernel limit, including the terminating NUL

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Codec:
    """How one kind of value is read from and written to hsflowd.conf."""

    parse: Callable[[str], Any]
    show: Callable[[Any], str] = str


@dataclass(frozen=True)
class AgentCidr:
    """An ``agent.cidr`` entry: addresses inside ``network`` are preferred, or avoided if ``exclude``."""

    network: Network
    exclude: bool = False

    def __str__(self) -> str:
        return ("!" if self.exclude else "") + str(self.network)


def _scaled(text: str, suffixes: str) -> int:
    """A number with an optional decimal suffix; fractions allowed only if the result is whole (``2.5G``)."""
    match = _NUMBER.fullmatch(text)
    suffix = match[2].upper() if match else ""
    if not match or (suffix and suffix not in suffixes):
        allowed = "/".join(suffixes)
        raise ValueError(f"not a number (optional suffix {allowed})")
    value = Decimal(match[1]) * _SCALE[suffix]
    if value != value.to_integral_value():
        raise ValueError("not a whole number")
    return int(value)


def parse_int(text: str) -> int:
    """Integer with optional K/M/G suffix (x10^3, 10^6, 10^9)."""
    return _scaled(text, "KMG")


def integer(low: int = 0, high: int | None = None) -> Codec:
    """An integer codec limited to ``low..high``."""

    def parse(text: str) -> int:
        value = parse_int(text)
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be between {low} and {high}" if high is not None else f"must be at least {low}")
        return value

    return Codec(parse)


def parse_bool(text: str) -> bool:
    word = text.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("expected on or off")


def format_bool(value: bool) -> str:
    return "on" if value else "off"


def parse_speed(text: str) -> int:
    """Link speed in bits/s written compactly, as in the key ``sampling.10G``."""
    try:
        value = _scaled(text, "KMGT")
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError("not a link speed such as 100M or 10G")
    return value


def format_speed(bps: int) -> str:
    """The compact spelling of a speed: the largest suffix that needs at most three decimals."""
    for suffix in "TGMK":
        scale = _SCALE[suffix]
        if bps >= scale and (bps * 1000) % scale == 0:
            return f"{(Decimal(bps) / scale).normalize():f}{suffix}"
    return str(bps)


def parse_range(text: str) -> tuple[int, int | None]:
    """``A-B``, ``A-`` (no upper bound) or ``A`` (exactly A), each with optional K/M/G/T."""
    low_text, dash, high_text = text.partition("-")
    low = _scaled(low_text, "KMGT")
    if not dash:
        return low, low
    if not high_text:
        return low, None
    high = _scaled(high_text, "KMGT")
    if high < low:
        raise ValueError("range upper bound is below its lower bound")
    return low, high


def format_range(value: tuple[int, int | None]) -> str:
    low, high = value
    if high == low:
        return format_speed(low)
    return f"{format_speed(low)}-{'' if high is None else format_speed(high)}"


def parse_ip(text: str) -> str:
    """An IPv4 or IPv6 literal, normalised (``FD00::01`` -> ``fd00::1``)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("not an IP address") from None


def parse_host(text: str) -> str:
    """An IP literal (brackets allowed around IPv6) or a DNS host name.

    A name whose last label is all digits is refused: it is a mistyped IPv4
    address (``10.0.0.300``), and resolving it would fail much later, silently.
    """
    try:
        return parse_ip(text.removeprefix("[").removesuffix("]"))
    except ValueError:
        pass
    labels = text.removesuffix(".").split(".")
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise ValueError("not an IP address or host name")
    return text


def parse_cidr(text: str) -> AgentCidr:
    """``prefix/len``, with a leading ``!`` to exclude; host bits are masked off."""
    exclude = text.startswith("!")
    try:
        return AgentCidr(ipaddress.ip_network(text.removeprefix("!"), strict=False), exclude)
    except ValueError:
        raise ValueError("not a CIDR prefix such as 10.0.0.0/8") from None


def parse_uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValueError("not a UUID") from None


def parse_regex(text: str) -> str:
    """A Python regular expression, checked now so a typo fails at start-up, not at the first match."""
    try:
        re.compile(text)
    except re.error as err:
        raise ValueError(f"not a valid regular expression: {err}") from None
    return text


def parse_ifname(text: str) -> str:
    """A Linux interface name: what the kernel would accept, so typos like ``eth 0`` fail early."""
    if not text or len(text.encode()) >= _IFNAMSIZ or any(ch in "/:" or ch.isspace() for ch in text):
        raise ValueError("not a network interface name")
    return text


def parse_text(text: str) -> str:
    if not text:
        raise ValueError("must not be empty")
    return text


_APPLICATION = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def parse_application(text: str) -> str:
    """A sub-agent's application name (``http``, ``app.myapp``), as written: it lands in hsflowd.auto."""
    if not _APPLICATION.fullmatch(text):
        raise ValueError("not an application name such as http or app.myapp")
    return text


def parse_domain(text: str) -> str:
    """A DNS-SD domain, returned with its leading dot so ``"_sflow._udp" + domain`` is right.

    Empty stays empty: the query name is then relative and the resolver's
    search list completes it, as the established agent does with no domain.
    """
    if not text:
        return ""
    name = text.removeprefix(".")
    if not all(_LABEL.fullmatch(label) for label in name.removesuffix(".").split(".")):
        raise ValueError("not a DNS domain")
    return "." + name


def parse_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be a finite number of seconds, at least 0")
    return value


def format_seconds(value: float) -> str:
    return f"{value:g}"


def choice(*names: str) -> Codec:
    """One of ``names``, case-insensitive, returned lower-case."""

    def parse(text: str) -> str:
        if text.lower() not in names:
            raise ValueError(f"expected one of {', '.join(names)}")
        return text.lower()

    return Codec(parse)


BOOL = Codec(parse_bool, format_bool)
SPEED = Codec(parse_speed, format_speed)
SPEED_RANGE = Codec(parse_range, format_range)
IP = Codec(parse_ip)
HOST = Codec(parse_host)
CIDR = Codec(parse_cidr)
UUID = Codec(parse_uuid)
REGEX = Codec(parse_regex)
IFNAME = Codec(parse_ifname)
TEXT = Codec(parse_text)
DOMAIN = Codec(parse_domain)
APPLICATION = Codec(parse_application)
SECONDS = Codec(parse_seconds, format_seconds)
PORT = integer(1, 65535)
RATE = integer(1)
