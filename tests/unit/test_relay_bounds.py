"""The relay's progress (``OutboxProgress``): every seq at or below ``max_seen`` is published except
the holes, and a hole is dropped only when no transaction that could still commit its row is
running — checked by rule and against a simulated database, with leaders that stop and resume."""

from __future__ import annotations

import random

import pytest

from service.adapters.relay import OutboxProgress, continued


def test_with_nothing_running_the_progress_follows_the_rows_at_once() -> None:
    progress = OutboxProgress()
    assert progress.published([1, 2, 3], False, xmin=10, xmax=10)
    assert (progress.max_seen, progress.holes) == (3, [])


def test_a_seq_passed_over_is_a_hole_until_every_transaction_running_at_that_read_has_ended() -> None:
    progress = OutboxProgress()
    progress.published([1, 3, 5], False, xmin=7, xmax=9)  # xid 7 or 8 may still commit 2 or 4
    assert (progress.max_seen, progress.holes) == (5, [2, 4])
    progress.published([], False, xmin=8, xmax=12)  # 8 still runs
    assert progress.holes == [2, 4]
    progress.published([4, 6], False, xmin=9, xmax=12)  # 7 and 8 have ended: 4 committed, 2 never will
    assert (progress.max_seen, progress.holes) == (6, [])


def test_a_hole_returned_later_is_published_then_and_the_rows_past_it_were_not_held_back() -> None:
    progress = OutboxProgress()
    progress.published([1, 2, 4], False, xmin=5, xmax=6)
    assert progress.holes == [3]
    progress.published([3, 5], False, xmin=5, xmax=7)  # the late row and the next one, in one read
    assert (progress.max_seen, progress.holes) == (5, [])


def test_a_read_that_stopped_at_its_limit_drops_only_the_holes_below_where_it_stopped() -> None:
    progress = OutboxProgress(max_seen=10, holes=[2, 7])
    # Nothing runs, but the read stopped at its LIMIT after seq 5: hole 7 may be committed, unread.
    progress.published([5], True, xmin=20, xmax=20)
    assert progress.holes == [7]
    progress.published([], False, xmin=20, xmax=20)
    assert progress.holes == []


def test_a_new_leader_keeps_loaded_holes_until_its_own_reads_show_them_gone() -> None:
    progress = OutboxProgress(max_seen=10, holes=[4, 8])
    assert not progress.published([], False, xmin=30, xmax=33), "a transaction below 33 may hold them"
    assert progress.holes == [4, 8]
    assert progress.published([8], False, xmin=33, xmax=35), "8 committed; 4 never will"
    assert (progress.max_seen, progress.holes) == (10, [])


def test_a_round_that_changes_nothing_needs_no_storing() -> None:
    progress = OutboxProgress(max_seen=3)
    assert not progress.published([], False, xmin=5, xmax=5)


@pytest.mark.parametrize("seed", range(40))
def test_against_a_simulated_database_no_committed_row_is_ever_left_out_of_the_progress(seed: int) -> None:
    """Transactions take an id, then seqs (as the insert triggers make them), and commit or roll
    back in any order; the relay reads committed rows among its holes and past ``max_seen``, with a
    limit, stores its progress after each round, and now and then a new leader loads it."""
    rng = random.Random(seed)
    next_xid, next_seq, limit = 100, 1, rng.choice([1, 2, 5, 50])
    running: dict[int, list[int]] = {}
    committed: set[int] = set()
    published: set[int] = set()
    progress = OutboxProgress()
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
        elif action < 0.78:  # a new leader: only what was stored survives
            progress = OutboxProgress(progress.max_seen, progress.holes)
        else:
            _relay_round(progress, committed, published, running, next_xid, limit)
        left_out = {s for s in committed - published if s <= progress.max_seen and s not in progress.holes}
        assert not left_out, f"committed rows {left_out} are neither past max_seen nor holes at step {step}"
        assert all(s not in committed or s not in published for s in progress.holes), "a published hole"
    for xid in list(running):  # everything ends; the relay catches up and its holes drain
        committed.update(running.pop(xid))
    for _ in range(len(committed) + 3):
        _relay_round(progress, committed, published, running, next_xid, limit)
    assert committed <= published
    assert progress.holes == [] and progress.max_seen == max(committed, default=0)


def _relay_round(progress: OutboxProgress, committed: set[int], published: set[int], running: dict[int, list[int]],
                 next_xid: int, limit: int) -> None:
    xmin = min(running, default=next_xid)
    holes = set(progress.holes)
    read = sorted(s for s in committed - published if s in holes or s > progress.max_seen)[:limit]
    published.update(read)
    progress.published(read, len(read) == limit, xmin, next_xid)


# ---- rows handed over by this process's committed batches (``continued``) --------------------
def _rows(*seqs: int) -> list[dict[str, int]]:
    return [{"seq": s} for s in seqs]


def test_handed_rows_right_after_the_progress_are_published_as_they_are() -> None:
    progress = OutboxProgress(max_seen=4)
    assert continued(progress, _rows(5, 6, 7)) == _rows(5, 6, 7)
    progress.continued_to(7)
    assert (progress.max_seen, progress.holes) == (7, [])


def test_handed_rows_a_read_already_published_are_left_out() -> None:
    assert continued(OutboxProgress(max_seen=6), _rows(5, 6, 7, 8)) == _rows(7, 8)
    assert continued(OutboxProgress(max_seen=9), _rows(5, 6)) == []


@pytest.mark.parametrize("seqs", [(6, 7), (5, 7), (5, 6, 8)], ids=["after-a-gap", "with-a-gap", "gap-before-last"])
def test_handed_rows_with_a_seq_missing_before_or_among_them_are_read_instead(seqs: tuple[int, ...]) -> None:
    # the missing seq may be another transaction's, still running or committed and not yet read:
    # publishing past it could put a ticket's later event before its earlier one
    assert continued(OutboxProgress(max_seen=4), _rows(*seqs)) is None


def test_with_a_hole_pending_handed_rows_are_read_instead() -> None:
    progress = OutboxProgress(max_seen=4, holes=[2])
    assert continued(progress, _rows(5, 6)) is None
    assert continued(progress, _rows(3)) is None
