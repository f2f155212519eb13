"""Counter pollers: one per data source, each on its own phase.

The first firing is at a random offset in 1..interval seconds so that a fleet
of hosts started together does not send in step.  A poller with ``read`` does
its blocking part (files of /proc and /sys) there, off the agent's loop: the
core runs the due ones' reads together on a thread, at most a budget of them per
tick, and calls ``collect`` back on the loop once they are done.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .sflow.records import Record

Collect = Callable[[], list[Record] | None]
Read = Callable[[], object]


@dataclass
class Poller:
    """A data source polled for counters; ``collect`` returns its records or None to skip a round."""

    ds_class: int
    ds_index: int
    collect: Collect
    name: str
    read: Read | None = None
    """Blocking work run off the loop just before ``collect`` (which then only builds records)."""
    interval: int | None = None
    """Seconds between polls; None follows the agent's ``polling``."""
    next_due: float = 0.0
    sequence: int = 0
    reading: bool = False
    """Its ``read`` is under way on a thread."""

    def schedule_first(self, now: float, interval: int, rng: random.Random) -> None:
        self.next_due = now + rng.randint(1, max(1, interval))

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def postpone(self, now: float) -> None:
        """Not this tick (over the tick's budget): due at the next one, the phase moved for good,
        so that sources added together spread over the ticks that follow."""
        self.next_due = now + 1

    def advance(self, now: float, interval: int) -> None:
        """Next firing one interval later, without piling up rounds missed while busy."""
        self.next_due += interval
        if self.next_due <= now:
            self.next_due = now + interval

    def next_sequence(self) -> int:
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        return self.sequence
