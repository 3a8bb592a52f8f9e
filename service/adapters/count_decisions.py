"""Recent count decisions of first pages, so a first page asked again soon is one statement.

A first page decides whether to count its matches from an ``EXPLAIN`` of the capped count
(:meth:`.read_models.SqlTicketReads.tickets`, docs/queries.md "The total"): a round trip of its own,
~0.45 ms of a ~1.9 ms customer's first page on the 2026-12-04 host (bench/README.md, "Count
decisions"). What that EXPLAIN decides — count with the page, or answer with the planner's estimate
— depends on the filter's values and on how the table's statistics see them, which change slowly; the
first pages asked most are the same ones again (an agent's queue, a dashboard, a customer reloading
their list). :class:`CountDecisions` keeps each filter's decision for ``ttl_s`` seconds, at most
``size`` of them, least recently used dropped first.

What a kept decision can cost: a count that was cheap when decided is run (fresh, in the page's own
statement: the total is never kept) for up to ``ttl_s`` seconds after the data changed under it — a
capped count reads at most ``cap + 1`` entries, a few milliseconds at worst; an estimate answered
instead of a count is up to ``ttl_s`` seconds old (it is inexact by definition: ``total_exact`` is
false). The keys are the filter's shape and values, so one actor's decision never answers another
filter; the totals themselves are never shared.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from service.handlers.read_model import Total

#: How long a decision is kept: the planner's view of a filter changes with ANALYZE, not per second.
COUNT_DECISION_TTL_S = 30.0
#: How many filters' decisions are kept (a few hundred bytes each).
COUNT_DECISIONS_KEPT = 4096


def decision_key(shape: Hashable, values: Mapping[str, Any], cap: int) -> Hashable:
    """A hashable key for a filter's shape, values (lists as tuples) and cap."""
    return shape, cap, tuple((name, tuple(v) if isinstance(v, list) else v) for name, v in values.items())


class CountDecisions:
    """``get(key)`` → ``(cheap, estimate)`` decided less than ``ttl_s`` ago, or None; ``put`` keeps one."""

    def __init__(self, size: int = COUNT_DECISIONS_KEPT, ttl_s: float = COUNT_DECISION_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._size, self._ttl_s, self._clock = size, ttl_s, clock
        self._kept: OrderedDict[Hashable, tuple[float, bool, Total]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: Hashable) -> tuple[bool, Total] | None:
        found = self._kept.get(key)
        if found is None:
            return None
        decided_at, cheap, estimate = found
        if self._clock() - decided_at >= self._ttl_s:
            del self._kept[key]
            return None
        self._kept.move_to_end(key)
        return cheap, estimate

    def put(self, key: Hashable, cheap: bool, estimate: Total) -> None:
        self._kept[key] = (self._clock(), cheap, estimate)
        self._kept.move_to_end(key)
        while len(self._kept) > self._size:
            self._kept.popitem(last=False)
