"""Flow samples held while enrichers answer (the tcp module's socket look-up, for one).

A sample waits for its enrichers' futures; when the last one completes, the enrichers that
waited for their answers run (``resume``), and it is encoded once nothing is pending, or after
at most ``timeout`` seconds without the missing answers (the enrichers still waiting then do not
run).  Samples that enrichers answer at once are never held.
Per held sample this costs one small object and a done-callback per future;
one shared timer sweeps expired samples, instead of a Task and an
``asyncio.wait`` per sample, which cost several times the encoding itself.
A late answer is ignored (the future is not cancelled: an enricher may share
one future between samples).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .flow import SampledPacket

log = logging.getLogger("hsflowd.holds")

SWEEP_S = 0.05

Resume = Callable[[SampledPacket, Any], tuple[list["asyncio.Future[Any]"], Any]]
"""``resume(packet, later)``: run what waited for the answers; the new holds and what waits for them."""


class _Held:
    __slots__ = ("deadline", "emitted", "later", "packet", "waiting")

    def __init__(self, packet: SampledPacket, waiting: int, deadline: float, later: Sequence[Any]) -> None:
        self.packet = packet
        self.waiting = waiting
        self.deadline = deadline
        self.emitted = False
        self.later = later


class HeldSamples:
    """Samples waiting for enrichment; ``emit`` encodes one when it is complete or expired."""

    def __init__(
        self,
        emit: Callable[[SampledPacket], None],
        stats: dict[str, int],
        timeout: float,
        resume: Resume | None = None,
    ) -> None:
        self.emit = emit
        self.stats = stats
        self.timeout = timeout
        self._queue: deque[_Held] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self.resume = resume

    def __len__(self) -> int:
        return len(self._queue)

    def hold(self, packet: SampledPacket, futures: list[asyncio.Future[Any]], later: Sequence[Any] = ()) -> None:
        """Hold ``packet`` until ``futures`` complete, then ``resume(packet, later)`` if ``later`` is not empty."""
        # Expiry is checked every SWEEP_S, so the deadline leaves room for one sweep.
        held = _Held(packet, 0, time.monotonic() + self.timeout - SWEEP_S, later)
        self._wait(held, futures)
        self._queue.append(held)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep)

    def _wait(self, held: _Held, futures: list[asyncio.Future[Any]]) -> None:
        held.waiting = len(futures)
        for f in futures:
            f.add_done_callback(lambda f, held=held: self._answered(held, f))

    def _answered(self, held: _Held, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.stats["faults"] += 1
            log.debug("enrichment failed", exc_info=future.exception())
        held.waiting -= 1
        if held.waiting or held.emitted:
            return
        if held.later and self.resume is not None:
            futures, held.later = self.resume(held.packet, held.later)
            if futures:
                self._wait(held, futures)
                return
        self._emit(held)

    def _emit(self, held: _Held) -> None:
        """Encode a held sample once; a sample that fails to encode is counted and dropped, and the
        sweep that called this goes on (stopping it would stop every later expiry)."""
        held.emitted = True
        try:
            self.emit(held.packet)
        except Exception:
            self.stats["faults"] += 1
            log.exception("a held sample could not be encoded; dropped")

    def _sweep(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        q = self._queue
        while q and (q[0].emitted or q[0].deadline <= now):
            held = q.popleft()
            if not held.emitted:
                self.stats["enrich_timeouts"] += 1
                self._emit(held)
        self._timer = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep) if q else None

    async def drain(self) -> None:
        """At stop: give the held samples their remaining time, then send them as they are."""
        end = time.monotonic() + self.timeout
        while self._queue and time.monotonic() < end:
            await asyncio.sleep(SWEEP_S)
        if self._timer is not None:
            self._timer.cancel()
        self._sweep(now=float("inf"))
