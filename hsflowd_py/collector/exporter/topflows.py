"""A bounded set of flow counters: the top N flows by rate, everything else in ``other``.

Flow keys are unbounded (every port scan, every client), Prometheus series
must not be, and counters must never go backwards.  So:

* at most ``capacity`` candidate flows are tracked; when the table is full,
  the candidates that are not exported and have the lowest recent rate are
  dropped, half the table at once (amortised O(log n) per new flow, a
  space-saving sketch in spirit: a flow heavy enough to matter keeps its
  place, since it never sits at the bottom);
* once a second (``rank``) each flow's rate is smoothed (exponentially, time
  constant ``smoothing`` seconds) and the N fastest become the exported set;
* bytes and packets are added, at the moment they are sampled, either to
  the flow's own series (if it is exported) or to ``other``: each sampled
  byte lands in exactly one series, every series only grows, and the sum
  over all series is the total.  A flow that drops out of the top N stops
  being exported (its series goes stale) and resumes from the same values if
  it comes back while still tracked;
* flows with no traffic for ``expiry`` seconds are forgotten, exported or not.
"""

from __future__ import annotations

import heapq
import math
import operator
from collections.abc import Callable, Hashable, Iterator

__all__ = ["TopFlows"]


_rate = operator.itemgetter(0)


class _Flow:
    __slots__ = ("bytes", "exported", "idle_since", "labels", "packets", "rate", "window")

    def __init__(self, now: float) -> None:
        self.bytes = 0  # counted while exported
        self.packets = 0
        self.window = 0  # bytes since the last rank
        self.rate = 0.0  # smoothed bytes per second
        self.exported = False
        self.idle_since = now
        self.labels: tuple[str, ...] | None = None


class TopFlows:
    """Counters for the top ``exported`` flows by rate, the rest in one ``other`` series."""

    def __init__(
        self,
        exported: int,
        labels: Callable[[Hashable], tuple[str, ...]],
        *,
        capacity: int | None = None,
        smoothing: float = 10.0,
        expiry: float = 300.0,
        now: float = 0.0,
    ) -> None:
        self.exported = max(exported, 0)
        self.capacity = max(capacity or 10 * self.exported, 2 * self.exported, 64)
        self.smoothing = smoothing
        self.expiry = expiry
        self._labels = labels
        self.flows: dict[Hashable, _Flow] = {}
        self.other_bytes = 0
        self.other_packets = 0
        self.last_rank = now

    def add(self, key: Hashable, nbytes: int, packets: int, now: float) -> None:
        flow = self.flows.get(key)
        if flow is None:
            if len(self.flows) >= self.capacity:
                self._sweep(now)
            flow = self.flows[key] = _Flow(now)
        flow.window += nbytes
        if flow.exported:
            flow.bytes += nbytes
            flow.packets += packets
        else:
            self.other_bytes += nbytes
            self.other_packets += packets

    def _sweep(self, now: float) -> None:
        """Drop the slowest half of the flows that are not exported."""
        elapsed = max(now - self.last_rank, 1.0)
        candidates = [(f.rate + f.window / elapsed, k) for k, f in self.flows.items() if not f.exported]
        candidates.sort(key=_rate)  # half of them go: a sort by rate alone beats a heap (ties: oldest first)
        for _, key in candidates[: max(len(self.flows) - self.capacity // 2, 1)]:
            del self.flows[key]

    def rank(self, now: float) -> None:
        """Smooth the rates, forget idle flows, choose the exported set."""
        elapsed = now - self.last_rank
        if elapsed <= 0:
            return
        self.last_rank = now
        keep = math.exp(-elapsed / self.smoothing)
        idle: list[Hashable] = []
        for key, flow in self.flows.items():
            flow.rate = flow.rate * keep + (flow.window / elapsed) * (1 - keep)
            if flow.window:
                flow.window = 0
                flow.idle_since = now
            elif now - flow.idle_since > self.expiry:
                idle.append(key)
        for key in idle:
            del self.flows[key]
        top = heapq.nlargest(self.exported, self.flows.items(), key=lambda item: item[1].rate)
        chosen = {key for key, flow in top if flow.rate > 0}
        for key, flow in self.flows.items():
            flow.exported = key in chosen

    def forget(self, match: Callable[[Hashable], bool]) -> None:
        """Drop the flows whose key matches (an agent that expired)."""
        for key in [k for k in self.flows if match(k)]:
            del self.flows[key]

    def series(self) -> Iterator[tuple[tuple[str, ...], int, int]]:
        """(labels, bytes, packets) of every exported flow; ``other`` is separate."""
        for key, flow in self.flows.items():
            if flow.exported:
                if flow.labels is None:
                    flow.labels = self._labels(key)
                yield flow.labels, flow.bytes, flow.packets
