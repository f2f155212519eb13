"""When DNS-SD asks again: first query jitter, TTL with a 10 s floor, 300 s without TTL, backoff on failure."""

from __future__ import annotations

import random

import pytest

from hsflowd_py.modules.dnssd.schedule import first_delay, next_interval, retry_delay


def test_first_query_is_spread_over_1_to_max() -> None:
    rng = random.Random(7)
    delays = [first_delay(30, rng) for _ in range(2000)]
    assert min(delays) >= 1 and max(delays) <= 30
    assert min(delays) < 3 and max(delays) > 28  # spread over the whole range, not a constant


def test_first_query_max_under_a_second_is_used_as_is() -> None:
    assert first_delay(0, random.Random(1)) == 0
    assert 0.5 <= first_delay(0.5, random.Random(1)) <= 1


@pytest.mark.parametrize(("ttl", "interval"), [(None, 300), (0, 10), (9, 10), (10, 10), (60, 60), (3600, 3600)])
def test_next_query_follows_the_smallest_ttl_never_under_10_s(ttl: int | None, interval: float) -> None:
    assert next_interval(ttl) == interval


@pytest.mark.parametrize(
    ("failures", "interval", "delay"),
    [(1, 10, 1), (2, 10, 2), (3, 10, 4), (4, 10, 8), (5, 10, 10), (50, 10, 10), (9, 300, 256), (10, 300, 300)],
)
def test_failures_back_off_from_1_s_up_to_the_normal_interval(failures: int, interval: float, delay: float) -> None:
    assert retry_delay(failures, interval) == delay
