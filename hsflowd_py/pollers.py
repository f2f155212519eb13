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


@dataclass(frozen=True)
class PollerSpec:
    """A data source to poll for counters, as a module declares it (``ModuleContext.add_poller``, the
    core's ``add_poller``): the one place its parts are named, so no layer can pass them in another
    order."""

    ds_class: int
    ds_index: int
    collect: Collect
    """Its records, or None to skip a round."""
    name: str
    """For logs."""
    first_now: bool = False
    """First sample on the next tick, not at a random phase (a container just found)."""
    read: Read | None = None
    """Blocking work (files of /proc, /sys, cgroups) run off the loop just before ``collect``, which
    then only builds records; it may run on any thread, so it only stores what it read where
    ``collect`` takes it."""


@dataclass
class Poller:
    """A polled data source: its declaration and where its schedule stands."""

    spec: PollerSpec
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
