"""The relay's read bounds (``ScanBounds``): a bound passes a seq only when no transaction that could
still commit a row below it is running — checked by rule and against a simulated database."""

from __future__ import annotations

import random

import pytest

from service.adapters.relay import ScanBounds


def test_with_nothing_running_the_bound_follows_the_rows_at_once() -> None:
    bounds = ScanBounds()
    bounds.published([1, 2, 3], False, xmin=10, xmax=10)
    assert bounds.lo == 4


def test_a_transaction_running_at_the_read_holds_the_bound_until_it_ends() -> None:
    bounds = ScanBounds()
    bounds.published([1, 2, 3], False, xmin=7, xmax=9)  # xid 7 or 8 may still commit a row below 4
    assert bounds.lo == 0
    bounds.published([], False, xmin=8, xmax=12)  # 8 still runs
    assert bounds.lo == 0
    bounds.published([5], False, xmin=11, xmax=12)  # 7 and 8 ended before this read, which saw theirs
    assert bounds.lo == 4, "the older candidate is ripe; the newer one (xmax 12) is not yet"
    bounds.published([], False, xmin=12, xmax=12)
    assert bounds.lo == 6


def test_a_read_that_stopped_at_its_limit_bounds_the_bound() -> None:
    bounds = ScanBounds()
    bounds.published([1, 2, 3, 50], False, xmin=5, xmax=6)
    bounds.published([10, 11], True, xmin=6, xmax=6)  # ripe up to 51, but rows above 11 may wait
    assert bounds.lo == 12


@pytest.mark.parametrize("seed", range(40))
def test_against_a_simulated_database_no_committed_row_is_ever_left_below_the_bound(seed: int) -> None:
    """Transactions take an id, then seqs (as the insert triggers make them), and commit or roll
    back in any order; the relay reads committed, unpublished rows from ``lo`` with a limit."""
    rng = random.Random(seed)
    next_xid, next_seq, limit = 100, 1, rng.choice([1, 2, 5, 50])
    running: dict[int, list[int]] = {}
    committed: set[int] = set()
    published: set[int] = set()
    bounds = ScanBounds()
    for step in range(400):
        action = rng.random()
        if action < 0.3:  # a transaction starts: its id first, then its rows' seqs
            running[next_xid] = []
            next_xid += 1
        elif action < 0.55 and running:
            xid = rng.choice(list(running))
            running[xid] += range(next_seq, next_seq + (n := rng.randint(1, 3)))
            next_seq += n
        elif action < 0.75 and running:
            rows = running.pop(rng.choice(list(running)))
            if rng.random() < 0.8:  # commit; else roll back: those seqs never appear
                committed.update(rows)
        else:
            _relay_round(bounds, committed, published, running, next_xid, limit)
        assert not {s for s in committed - published if s < bounds.lo}, f"a committed row fell below lo at {step}"
    for xid in list(running):  # everything ends; the relay catches up
        committed.update(running.pop(xid))
    for _ in range(len(committed) + 2):
        _relay_round(bounds, committed, published, running, next_xid, limit)
    assert committed <= published


def _relay_round(bounds: ScanBounds, committed: set[int], published: set[int], running: dict[int, list[int]],
                 next_xid: int, limit: int) -> None:
    xmin = min(running, default=next_xid)
    read = sorted(s for s in committed - published if s >= bounds.lo)[:limit]
    published.update(read)
    bounds.published(read, len(read) == limit, xmin, next_xid)
