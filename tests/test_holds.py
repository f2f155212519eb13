"""Held flow samples: sent when the last enricher answers, or when the hold expires; never twice."""

from __future__ import annotations

import asyncio
import time

from packets import sampled_packet

from hsflowd_py.flow import DIRECTION_IN, SampledPacket
from hsflowd_py.holds import SWEEP_S, HeldSamples


def packet(n: int) -> SampledPacket:
    return sampled_packet(n, b"", DIRECTION_IN, rate=10, frame_length=64)


def run(scenario) -> tuple[list[tuple[int, float]], dict[str, int]]:
    emitted: list[tuple[int, float]] = []
    stats = {"faults": 0, "enrich_timeouts": 0}

    async def main() -> None:
        held = HeldSamples(lambda p: emitted.append((p.ds_index, time.monotonic())), stats, timeout=0.4)
        await scenario(held)

    asyncio.run(main())
    return emitted, stats


def test_sent_when_the_last_answer_arrives_and_late_answers_are_ignored() -> None:
    async def scenario(held: HeldSamples) -> None:
        loop = asyncio.get_running_loop()
        a, b = loop.create_future(), loop.create_future()
        held.hold(packet(1), [a, b])
        a.set_result(None)
        await asyncio.sleep(0.01)
        assert len(held) == 1
        b.set_result(None)
        await asyncio.sleep(0.01)
        await held.drain()

    emitted, stats = run(scenario)
    assert [n for n, _ in emitted] == [1]
    assert stats == {"faults": 0, "enrich_timeouts": 0}


def test_an_unanswered_sample_goes_out_within_the_timeout() -> None:
    async def scenario(held: HeldSamples) -> None:
        never = asyncio.get_running_loop().create_future()
        held.hold(packet(2), [never])
        await asyncio.sleep(0.6)
        never.set_result(None)  # too late: must not send the sample again
        await asyncio.sleep(0.01)
        await held.drain()

    emitted, stats = run(scenario)
    assert [n for n, _ in emitted] == [2]
    assert stats["enrich_timeouts"] == 1


def test_hold_time_is_bounded_and_order_of_expiry_is_kept() -> None:
    starts: dict[int, float] = {}

    async def scenario(held: HeldSamples) -> None:
        loop = asyncio.get_running_loop()
        for n in range(5):
            starts[n] = time.monotonic()
            held.hold(packet(n), [loop.create_future()])
            await asyncio.sleep(0.03)
        await asyncio.sleep(0.6)

    emitted, _ = run(scenario)
    assert [n for n, _ in emitted] == [0, 1, 2, 3, 4]
    for n, at in emitted:
        assert 0.4 - 2 * SWEEP_S <= at - starts[n] <= 0.4 + 0.05


def test_a_failing_enricher_is_counted_and_the_sample_still_sent() -> None:
    async def scenario(held: HeldSamples) -> None:
        f = asyncio.get_running_loop().create_future()
        held.hold(packet(3), [f])
        f.set_exception(RuntimeError("look-up failed"))
        await asyncio.sleep(0.01)

    emitted, stats = run(scenario)
    assert [n for n, _ in emitted] == [3] and stats["faults"] == 1


def test_drain_sends_what_is_still_held() -> None:
    async def scenario(held: HeldSamples) -> None:
        held.hold(packet(4), [asyncio.get_running_loop().create_future()])
        await held.drain()

    emitted, stats = run(scenario)
    assert [n for n, _ in emitted] == [4] and stats["enrich_timeouts"] == 1


def test_a_sample_that_fails_to_encode_is_counted_and_later_ones_still_expire() -> None:
    emitted: list[int] = []
    stats = {"faults": 0, "enrich_timeouts": 0}

    def emit(p: SampledPacket) -> None:
        if p.ds_index == 1:
            raise ValueError("an enricher's record does not encode")
        emitted.append(p.ds_index)

    async def main() -> None:
        held = HeldSamples(emit, stats, timeout=0.2)
        loop = asyncio.get_running_loop()
        held.hold(packet(1), [loop.create_future()])
        await asyncio.sleep(0.4)  # expired: its encoding fails inside the sweep
        held.hold(packet(2), [loop.create_future()])
        await asyncio.sleep(0.4)  # the sweep must still run for this one

    asyncio.run(main())
    assert emitted == [2]
    assert stats == {"faults": 1, "enrich_timeouts": 2}
