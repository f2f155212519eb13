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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_SCALE = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_MAX_SPEED = 2**63 - 1  # the established agent keeps speeds in a signed 64-bit range (LLONG_MAX)
_NUMBER = re.compile(r"(0[xX][0-9A-Fa-f]+|[0-9]+(?:\.[0-9]+)?)([A-Za-z]?)")
_MAX_DIGITS = 24
"""More digits than any setting can use (speeds stop at 2**63): longer numbers are refused before
any arithmetic, so a megabyte of digits costs a regex match, not seconds of bignum work."""
MAX_VALUE_CHARS = 255
"""The established agent reads at most 255 characters of a word (its token buffer); longer values
are refused here rather than silently cut, in files and DNS-SD TXT records alike."""
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

    def read(self, text: str) -> Any:
        """``parse`` behind the length bound every value shares; raises ValueError only."""
        if len(text) > MAX_VALUE_CHARS:
            raise ValueError(f"longer than {MAX_VALUE_CHARS} characters")
        return self.parse(text)


@dataclass(frozen=True)
class AgentCidr:
    """An ``agent.cidr`` entry: addresses inside ``network`` are preferred, or avoided if ``exclude``."""

    network: Network
    exclude: bool = False

    def __str__(self) -> str:
        return ("!" if self.exclude else "") + str(self.network)


def _scaled(text: str, suffixes: str) -> int:
    """A number as the established agent reads it, with an optional decimal suffix.

    Its parser takes ``strtol(text, 0)``: a leading ``0x`` is hexadecimal and a leading ``0``
    octal (``010`` is 8), and the text must start with a digit (no sign).  A decimal fraction is
    an addition, allowed only when the result is whole (``2.5G``); the established agent would
    stop at the dot and read ``2G``.
    """
    match = _NUMBER.fullmatch(text)
    suffix = match[2].upper() if match else ""
    if not match or (suffix and suffix not in suffixes):
        allowed = "/".join(suffixes)
        raise ValueError(f"not a number (optional suffix {allowed})")
    digits, scale = match[1], _SCALE[suffix]
    if len(digits) > _MAX_DIGITS:
        raise ValueError(f"number too large ({len(digits)} digits)")
    if digits[:2].lower() == "0x":
        return int(digits, 16) * scale
    whole, _, fraction = digits.partition(".")
    if fraction:
        numerator, denominator = int(whole + fraction) * scale, 10 ** len(fraction)
        if numerator % denominator:
            raise ValueError("not a whole number")
        return numerator // denominator
    if len(whole) > 1 and whole[0] == "0":
        if not set(whole) <= set("01234567"):
            raise ValueError("a leading 0 makes a number octal (as in the established agent): digits 0-7 only")
        return int(whole, 8) * scale
    return int(whole) * scale


def parse_int(text: str) -> int:
    """Integer with optional K/M/G suffix (x10^3, 10^6, 10^9)."""
    return _scaled(text, "KMG")


def integer(low: int, high: int) -> Codec:
    """An integer codec limited to ``low..high`` (the established agent's range for the key)."""

    def parse(text: str) -> int:
        value = parse_int(text)
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return Codec(parse)


def parse_bool(text: str) -> bool:
    """``on``/``off`` as the established agent reads them; ``yes``/``no``/``true``/``false`` are additions."""
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
        value = _scaled(text, "KMGTP")
    except ValueError:
        value = 0
    if not 0 < value <= _MAX_SPEED:
        raise ValueError("not a link speed such as 100M or 10G")
    return value


def format_speed(bps: int) -> str:
    """The compact spelling of a speed: the largest suffix that needs at most three decimals."""
    for suffix in "PTGMK":
        scale = _SCALE[suffix]
        if bps >= scale and (bps * 1000) % scale == 0:
            whole, thousandths = divmod(bps * 1000 // scale, 1000)
            return f"{whole}{f'.{thousandths:03}'.rstrip('0') if thousandths else ''}{suffix}"
    return str(bps)


def parse_range(text: str) -> tuple[int, int | None]:
    """``A-B``, ``A-`` (no upper bound) or ``A`` (exactly A), each with optional K/M/G/T/P, at most 2**63-1."""
    low_text, dash, high_text = text.partition("-")
    low = _scaled(low_text, "KMGTP")
    if low > _MAX_SPEED:
        raise ValueError(f"speeds stop at {_MAX_SPEED}")
    if not dash:
        return low, low
    if not high_text:
        return low, None
    high = _scaled(high_text, "KMGTP")
    if high > _MAX_SPEED:
        raise ValueError(f"speeds stop at {_MAX_SPEED}")
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
    """A UUID; also 32 hex digits with ``.`` or ``:`` between bytes, as the established agent reads it."""
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    try:
        return uuid.UUID(bytes=bytes.fromhex(text.translate(str.maketrans("", "", "-.:"))))
    except ValueError:
        raise ValueError("not a UUID") from None


_POSIX_CLASSES = {
    "[:alpha:]": "A-Za-z", "[:digit:]": "0-9", "[:alnum:]": "A-Za-z0-9", "[:upper:]": "A-Z",
    "[:lower:]": "a-z", "[:xdigit:]": "0-9A-Fa-f", "[:space:]": r"\s", "[:blank:]": r" \t",
    "[:punct:]": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"), "[:cntrl:]": r"\x00-\x1f\x7f",
    "[:print:]": r"\x20-\x7e", "[:graph:]": r"\x21-\x7e", "[:word:]": r"\w",
}  # fmt: skip
"""POSIX bracket classes (the established agent compiles patterns with regcomp, REG_EXTENDED) in
Python's spelling, which has none: ``eth[[:digit:]]+`` means here what it means there."""


def parse_regex(text: str) -> str:
    """A regular expression, checked now so a typo fails at start-up, not at the first match.

    Python's syntax, with POSIX bracket classes translated (``_POSIX_CLASSES``); the translated
    pattern is what is kept.
    """
    for posix, python in _POSIX_CLASSES.items():
        text = text.replace(posix, python)
    try:
        with warnings.catch_warnings():  # "possible nested set" and kin: the pattern still compiles
            warnings.simplefilter("ignore")
            re.compile(text)
    except re.error as err:
        raise ValueError(f"not a valid regular expression: {err}") from None
    except (OverflowError, RecursionError):  # a{4294967296}, or parentheses nested too deep
        raise ValueError("not a valid regular expression: too large or nested too deep") from None
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


_APPLICATION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def parse_application(text: str) -> str:
    """A sub-agent's application name (``http``, ``app.myapp``), as written: it lands in hsflowd.auto.

    Digits may lead (``polling.10G``: the established agent files any ``polling.<x>`` as an application).
    """
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


def seconds(high: float) -> Codec:
    """Seconds, fractions allowed, ``0..high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("not a number of seconds") from None
        if not math.isfinite(value) or not 0 <= value <= high:
            raise ValueError(f"must be a number of seconds between 0 and {high:g}")
        return value

    return Codec(parse, format_seconds)


def format_seconds(value: float) -> str:
    """Every digit a float of at most ``high`` seconds carries, without exponent notation."""
    return f"{value:.12g}"


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
PORT = integer(1, 65535)
UINT32 = 0xFFFFFFFF
RATE = integer(0, 10_000_000)
"""1-in-N sampling: 0 turns sampling off, at most 10,000,000 (HSP_MAX_SAMPLING_N)."""
POLLING = integer(0, 300)
"""Counter polling seconds: 0 turns polling off, at most 300 (HSP_MAX_POLLING_S)."""
DIRECTION = choice("in", "out", "both")
