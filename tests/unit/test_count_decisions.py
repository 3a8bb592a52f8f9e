"""The first pages' kept count decisions: how long, how many, and by what key."""

from __future__ import annotations

import uuid

from service.adapters.count_decisions import CountDecisions, decision_key
from service.handlers.read_model import Total


def test_a_decision_is_kept_for_its_ttl_then_decided_again() -> None:
    now = [100.0]
    decisions = CountDecisions(ttl_s=30.0, clock=lambda: now[0])
    decisions.put("mine", True, Total(12, False))
    now[0] = 129.9
    assert decisions.get("mine") == (True, Total(12, False))
    now[0] = 130.0
    assert decisions.get("mine") is None
    assert len(decisions) == 0  # a stale decision is dropped when found


def test_at_most_size_decisions_are_kept_the_least_recently_used_dropped() -> None:
    decisions = CountDecisions(size=2, clock=lambda: 0.0)
    decisions.put("a", True, Total(1, False))
    decisions.put("b", False, Total(2, False))
    assert decisions.get("a") is not None  # a is now the most recently used
    decisions.put("c", True, Total(3, False))
    assert (decisions.get("a"), decisions.get("b"), decisions.get("c")) == (
        (True, Total(1, False)), None, (True, Total(3, False)))
    assert len(decisions) == 2


def test_the_key_holds_the_shape_every_value_and_the_cap() -> None:
    customer = uuid.uuid4()
    key = decision_key(("count plan", (False, False, "customer_id", "status_any")),
                       {"customer_id": customer, "status_any": ["new", "open"]}, 10_000)
    assert hash(key) == hash(decision_key(("count plan", (False, False, "customer_id", "status_any")),
                                          {"customer_id": customer, "status_any": ["new", "open"]}, 10_000))
    others = [
        decision_key(("count plan", (False, False, "customer_id", "status_any")),
                     {"customer_id": uuid.uuid4(), "status_any": ["new", "open"]}, 10_000),
        decision_key(("count plan", (False, False, "customer_id", "status_any")),
                     {"customer_id": customer, "status_any": ["new"]}, 10_000),
        decision_key(("count plan", (False, False, "customer_id", "status_any")),
                     {"customer_id": customer, "status_any": ["new", "open"]}, 100),
        decision_key(("count plan", (True, False, "customer_id", "status_any")),
                     {"customer_id": customer, "status_any": ["new", "open"]}, 10_000),
    ]
    assert len({key, *others}) == 5
