"""When to ask DNS again (REFERENCE.md section 5, the established agent's mod_dnssd).

The first query waits a random 1..firstQuery seconds so that a fleet
restarted together does not hit its DNS server at once.  After an answer the
next query follows the smallest TTL seen, so a changed record is picked up as
soon as caches may hold it no longer, but never sooner than 10 s (a TTL of 0,
dnsmasq's default for local records, must not turn into a query loop) and
every 300 s when no answer carried a TTL.

A failed query is retried sooner than that, with exponential backoff from
1 s, never later than the normal interval: a restarting DNS server or one
lost datagram costs a second, while a dead server is asked at 1, 2, 4, 8 s…
and then at the normal pace.
"""

from __future__ import annotations

import random

MIN_INTERVAL_S = 10.0
NO_TTL_INTERVAL_S = 300.0
FIRST_RETRY_S = 1.0


def first_delay(first_query_max: float, rng: random.Random) -> float:
    """Random in 1..first_query_max; a maximum under 1 s (tests) is used as is."""
    return rng.uniform(min(FIRST_RETRY_S, first_query_max), first_query_max)


def next_interval(ttl: int | None) -> float:
    if ttl is None:
        return NO_TTL_INTERVAL_S
    return max(MIN_INTERVAL_S, float(ttl))


def retry_delay(failures: int, interval: float) -> float:
    """Delay after the ``failures``-th failure in a row (1 = the first)."""
    return min(FIRST_RETRY_S * 2 ** min(failures - 1, 30), interval)
