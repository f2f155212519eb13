"""The DNS side of DNS-SD: SRV and TXT for ``_sflow._udp`` + domain, then each SRV target's address.

Two outcomes must not be confused (REFERENCE.md section 5): an answer that
says there is no SRV record (NXDOMAIN, or NOERROR with no answer) means "stop
sending", while a query that got no usable answer (timeout, SERVFAIL, REFUSED,
server unreachable) means "keep what you have".  The first is a
:class:`Found` with no collectors, the second raises :class:`LookupFailed`.

Every SRV record is a collector, whatever its priority and weight: the agent
sends each datagram to all of them, as the established agent does.  Targets
are resolved through the same resolver (so a ``dns-sd { server }``
also answers for them), IPv4 first, then IPv6.  TTLs are taken from positive
answers only, CNAMEs included; a negative answer's SOA TTL could hold off
rediscovery for hours after a record is re-added.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
import dns.rrset

from .settings import DnsSdSettings

SERVICE = "_sflow._udp"
TIMEOUT_S = 2.0
"""Per try: a local or LAN resolver answers in milliseconds."""
LIFETIME_S = 5.0
"""Per query, retries included: one round never holds up the next for long."""
RESOLV_CONF = "/etc/resolv.conf"


class LookupFailed(Exception):
    """No usable answer: the current collectors and settings stay."""


@dataclass(frozen=True)
class Found:
    """One round's answers.

    ``collectors`` are (IP literal, port), sorted so that a server rotating its
    records does not look like a change; ``txt`` is None when the TXT query
    failed (the SRV answer still counts); ``ttl`` is the smallest TTL seen,
    None if no positive answer carried one; ``skipped`` names SRV targets that
    have no address, with the reason.
    """

    collectors: tuple[tuple[str, int], ...]
    txt: tuple[bytes, ...] | None
    ttl: int | None
    skipped: tuple[str, ...] = ()


def service_name(domain: str) -> dns.name.Name:
    """``_sflow._udp`` + domain; relative when the domain is empty, so the resolver's search list completes it."""
    if not domain:
        return dns.name.from_text(SERVICE, origin=None)
    return dns.name.from_text(SERVICE + domain)


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def make_resolver(config: DnsSdSettings, resolv_conf: str = RESOLV_CONF) -> dns.asyncresolver.Resolver:
    """The system's resolver, its name servers replaced by ``dns-sd { server port }`` when given.

    Built afresh for each round so that a resolv.conf rewritten by DHCP is
    followed; its search list still applies to an empty domain when a
    server is named.
    """
    try:
        resolver = dns.asyncresolver.Resolver(filename=resolv_conf)
    except (dns.resolver.NoResolverConfiguration, OSError) as e:
        if config.server is None:
            raise LookupFailed(f"no name server: {resolv_conf}: {e}") from None
        resolver = dns.asyncresolver.Resolver(configure=False)
    if config.server is not None:
        resolver.nameservers = [config.server]
    resolver.port = config.port
    resolver.timeout = TIMEOUT_S
    resolver.lifetime = LIFETIME_S
    return resolver


async def _query(
    resolver: dns.asyncresolver.Resolver, name: dns.name.Name, rdtype: str
) -> tuple[dns.rrset.RRset | None, int | None]:
    """(records or None when the name or type does not exist, TTL of a positive answer)."""
    try:
        answer = await resolver.resolve(name, rdtype, search=True, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return None, None
    except dns.resolver.LifetimeTimeout:
        servers = ", ".join(f"{s}:{resolver.port}" for s in resolver.nameservers)
        raise LookupFailed(f"{rdtype} {_text(name)}: no answer from {servers} within {LIFETIME_S:g} s") from None
    except (dns.exception.DNSException, OSError) as e:
        raise LookupFailed(f"{rdtype} {_text(name)}: {e}") from None
    if answer.rrset is None:
        return None, None
    return answer.rrset, answer.chaining_result.minimum_ttl


async def _address(resolver: dns.asyncresolver.Resolver, target: dns.name.Name) -> tuple[str | None, int | None]:
    """(the target's lowest IPv4 address, else its lowest IPv6 one, TTL): a stable pick under round-robin DNS."""
    for rdtype, version in (("A", ipaddress.IPv4Address), ("AAAA", ipaddress.IPv6Address)):
        rrset, ttl = await _query(resolver, target, rdtype)
        if rrset:
            return str(min(version(r.address) for r in rrset)), ttl
    return None, None


async def lookup(resolver: dns.asyncresolver.Resolver, domain: str) -> Found:
    """One round: SRV, TXT, then every SRV target's address; raises LookupFailed as described above."""
    name = service_name(domain)
    srv, srv_ttl = await _query(resolver, name, "SRV")
    try:
        txt_rrset, txt_ttl = await _query(resolver, name, "TXT")
        txt: tuple[bytes, ...] | None = tuple(s for r in txt_rrset or () for s in r.strings)
    except LookupFailed:
        txt, txt_ttl = None, None
    ttls = [t for t in (srv_ttl, txt_ttl) if t is not None]
    records = []
    skipped = []
    for r in srv or ():
        target = _text(r.target)
        if r.target == dns.name.root:
            continue  # RFC 2782: a target of "." says the service is decidedly not available there
        if r.port == 0:
            skipped.append(f"{target}:0: port 0")
            continue
        records.append((target, r))
    results = await asyncio.gather(*(_address(resolver, r.target) for _, r in records), return_exceptions=True)
    collectors = set()
    for (target, r), result in zip(records, results, strict=True):
        if isinstance(result, BaseException):
            raise result
        address, ttl = result
        if ttl is not None:
            ttls.append(ttl)
        if address is None:
            skipped.append(f"{target}:{r.port}: no IPv4 or IPv6 address")
        else:
            collectors.add((address, r.port))
    return Found(tuple(sorted(collectors)), txt, min(ttls, default=None), tuple(skipped))
