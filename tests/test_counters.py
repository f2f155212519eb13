"""Monotonic accumulation: outputs never step back, 32-bit wraps are followed, restarts are absorbed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsflowd_py.counters import Monotonic, long_bits, step

U32 = 1 << 32
increments = st.lists(st.integers(min_value=0, max_value=(1 << 31) - 1), min_size=1, max_size=60)


@pytest.mark.parametrize(
    "last, raw, source_bits, added",
    [
        (10, 15, 64, 5),
        (10, 10, 64, 0),
        (U32 - 6, 4, 32, 10),  # a 32-bit wrap
        (1000, 5, 32, 0),  # a restart: the step back is far more than half the range
        (1000, 990, 64, 0),  # /proc/stat iowait stepping back
        ((1 << 64) - 1, 0, 64, 1),
    ],
)
def test_step(last: int, raw: int, source_bits: int, added: int) -> None:
    assert step(last, raw, source_bits) == added


@given(st.integers(min_value=0, max_value=U32 - 1), increments)
def test_a_wrapping_32_bit_source_is_followed_exactly(start: int, incs: list[int]) -> None:
    mono = Monotonic()
    raw = start
    assert mono.update("c", raw, bits=64, source_bits=32, from_zero=True) == 0
    for inc in incs:
        raw = (raw + inc) % U32
        out = mono.update("c", raw, bits=64, source_bits=32, from_zero=True)
    assert out == sum(incs)


@given(st.integers(min_value=0, max_value=U32 - 1), increments)
def test_32_bit_output_differences_equal_the_increments(start: int, incs: list[int]) -> None:
    mono = Monotonic()
    prev = mono.update("c", start, bits=32, source_bits=32)
    assert prev == start  # counted as read, not from zero
    raw = start
    for inc in incs:
        raw = (raw + inc) % U32
        out = mono.update("c", raw, bits=32, source_bits=32)
        assert (out - prev) % U32 == inc
        prev = out


@given(st.lists(st.integers(min_value=0, max_value=(1 << 64) - 1), min_size=1, max_size=60))
def test_output_never_decreases_whatever_the_source_does(raws: list[int]) -> None:
    mono = Monotonic()
    outs = [mono.update("c", r, bits=64 + 64, source_bits=64) for r in raws]  # wide enough never to wrap
    assert outs == sorted(outs)


@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(min_value=0, max_value=10**6)),
        min_size=1,
        max_size=60,
    )
)
def test_a_restarting_source_adds_only_what_it_counted_between_readings(events: list[tuple[bool, int]]) -> None:
    """Each event is (restart?, increment).  A restart drops the source to a value below the last reading."""
    mono = Monotonic()
    raw = 10**7
    expected = 0
    mono.update("c", raw, bits=64, from_zero=True)
    for restart, inc in events:
        if restart:
            raw = inc % raw if raw else 0  # restarted and counted a little, still below the last reading
        else:
            raw += inc
            expected += inc
        assert mono.update("c", raw, bits=64, from_zero=True) == expected


@given(
    st.lists(
        st.dictionaries(st.sampled_from("abcdef"), st.integers(min_value=0, max_value=10**9), max_size=6),
        min_size=1,
        max_size=40,
    )
)
def test_a_sum_over_members_that_come_and_go_never_decreases(readings: list[dict[str, int]]) -> None:
    mono = Monotonic()
    outs = [mono.update_sum("nio", r, bits=128) for r in readings]
    assert outs == sorted(outs)


def test_sum_adds_member_deltas_and_ignores_the_history_of_newcomers() -> None:
    mono = Monotonic()
    assert mono.update_sum("s", {"a": 100, "b": 50}, bits=64) == 150  # counted as read
    assert mono.update_sum("s", {"a": 110, "b": 55}, bits=64) == 165
    assert mono.update_sum("s", {"a": 120}, bits=64) == 175  # b removed: nothing lost
    assert mono.update_sum("s", {"a": 121, "b": 9000}, bits=64) == 176  # b is new again: a baseline
    assert mono.update_sum("s", {"a": 121, "b": 9001}, bits=64) == 177
    assert Monotonic().update_sum("z", {"a": 100}, bits=64, from_zero=True) == 0


def test_output_is_reduced_to_the_field_width() -> None:
    mono = Monotonic()
    assert mono.update("c", U32 + 5, bits=32) == 5
    assert mono.update("c", U32 + 7, bits=32) == 7
    assert mono.update("d", (1 << 64) + 3, bits=64, source_bits=128) == 3


@pytest.mark.parametrize(
    "machine, bits",
    [("x86_64", 64), ("aarch64", 64), ("ppc64le", 64), ("s390x", 64), ("alpha", 64), ("riscv64", 64),
     ("i686", 32), ("armv7l", 32), ("mips", 32), ("s390", 32)],
)  # fmt: skip
def test_long_bits(machine: str, bits: int) -> None:
    assert long_bits(machine) == bits
