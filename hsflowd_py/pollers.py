"""Counter pollers: one per data source, each on its own phase.

The first firing is at a random offset in 1..interval seconds so that a fleet
of hosts started together does not send in step.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .sflow.records import Record

Collect = Callable[[], list[Record] | None]


@dataclass
class Poller:
    """A data source polled for counters; ``collect`` returns its records or None to skip a round."""

    ds_class: int
    ds_index: int
    collect: Collect
    name: str
    interval: int | None = None
    """Seconds between polls; None follows the agent's ``polling``."""
    next_due: float = 0.0
    sequence: int = 0

    def schedule_first(self, now: float, interval: int, rng: random.Random) -> None:
        self.next_due = now + rng.randint(1, max(1, interval))

    def due(self, now: float) -> bool:
        return now >= self.next_due

    def advance(self, now: float, interval: int) -> None:
        """Next firing one interval later, without piling up rounds missed while busy."""
        self.next_due += interval
        if self.next_due <= now:
            self.next_due = now + interval

    def next_sequence(self) -> int:
        self.sequence = (self.sequence + 1) & 0xFFFFFFFF
        return self.sequence
