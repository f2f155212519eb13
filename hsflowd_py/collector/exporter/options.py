"""The exporter's bounds as command-line flags, so that ``cli`` adds them in one call.

Kept apart from ``server`` so that parsing ``--help`` never needs prometheus_client.
"""

from __future__ import annotations

import argparse
import ipaddress
from typing import Any

from .state import Limits

__all__ = ["add_arguments", "limits_of", "server_options"]

DEFAULT_CONNECTIONS = 64
DEFAULT_TIMEOUT = 10.0
DEFAULT_CACHE = 1.0
_LIMITS = {
    "agents": "agents remembered",
    "sources": "data sources remembered, all agents together",
    "sources_per_agent": "data sources remembered per agent",
    "series": "data-source series exported, all agents together",
    "series_per_agent": "data-source series exported per agent",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Limits()
    parser.add_argument(
        "--prometheus-agents",
        action="append",
        default=[],
        metavar="CIDR",
        help="take in only agents whose address is in CIDR (repeatable; default: any agent)",
    )
    for name, what in _LIMITS.items():
        parser.add_argument(
            f"--prometheus-max-{name.replace('_', '-')}",
            dest=f"prometheus_max_{name}",
            type=int,
            default=getattr(defaults, name),
            metavar="N",
            help=f"at most N {what}; beyond, the least recently heard of the largest claimant are evicted "
            f"(default {getattr(defaults, name)})",
        )
    parser.add_argument(
        "--prometheus-connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        metavar="N",
        help=f"HTTP connections open at once; one more closes the oldest idle one (default {DEFAULT_CONNECTIONS})",
    )
    parser.add_argument(
        "--prometheus-timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"an HTTP connection's time for its request and the answer (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--prometheus-cache",
        type=float,
        default=DEFAULT_CACHE,
        metavar="SECONDS",
        help=f"serve one render to every scrape within SECONDS of it (default {DEFAULT_CACHE:g})",
    )


def limits_of(args: argparse.Namespace) -> Limits:
    """The parsed flags as ``Limits``; ValueError names the flag at fault."""
    allow = []
    for text in args.prometheus_agents:
        try:
            allow.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(f"--prometheus-agents {text!r} is not an address or network") from None
    for name in _LIMITS:
        if getattr(args, f"prometheus_max_{name}") < 1:
            raise ValueError(f"--prometheus-max-{name.replace('_', '-')} must be at least 1")
    return Limits(**{name: getattr(args, f"prometheus_max_{name}") for name in _LIMITS}, allow=tuple(allow))


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The HTTP bounds for ``MetricsServer``; ValueError names the flag at fault."""
    if args.prometheus_connections < 1:
        raise ValueError("--prometheus-connections must be at least 1")
    if not args.prometheus_timeout > 0:
        raise ValueError("--prometheus-timeout must be above 0")
    if not args.prometheus_cache >= 0:
        raise ValueError("--prometheus-cache must be 0 or more")
    return {
        "connections": args.prometheus_connections,
        "timeout": args.prometheus_timeout,
        "cache": args.prometheus_cache,
    }
