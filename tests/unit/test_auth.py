"""Actor resolution: trust the envelope (development) or verify a signed token (production)."""

from __future__ import annotations

import uuid

import pytest
from ticket_contracts import Actor as ContractActor

from service.adapters.auth import ActorResolver, issue_token
from service.domain.errors import Forbidden
from service.domain.values import Actor, Role

SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret!"
ASSERTED = ContractActor(user_id=uuid.uuid4(), role="admin")


def test_trust_mode_takes_the_envelope_actor() -> None:
    actor = ActorResolver("trust").resolve(ASSERTED, None)
    assert actor == Actor(ASSERTED.user_id, Role.ADMIN, None)


def test_jwt_mode_uses_the_token_and_ignores_the_asserted_role() -> None:
    real = Actor(uuid.uuid4(), Role.CUSTOMER, uuid.uuid4())
    actor = ActorResolver("jwt", SECRET).resolve(ASSERTED, issue_token(SECRET, real))
    assert actor == real


@pytest.mark.parametrize("token", [None, "", "not-a-jwt", issue_token("another-secret-another-secret-1234", Actor(uuid.uuid4(), Role.ADMIN)),
                                   issue_token(SECRET, Actor(uuid.uuid4(), Role.ADMIN), ttl_s=-10),
                                   issue_token(SECRET, Actor(uuid.uuid4(), Role.CUSTOMER, None))],
                         ids=["missing", "empty", "garbage", "wrong-secret", "expired", "customer-without-customer"])
def test_jwt_mode_refuses_bad_tokens(token: str | None) -> None:
    with pytest.raises(Forbidden):
        ActorResolver("jwt", SECRET).resolve(ASSERTED, token)


def test_jwt_mode_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="TICKETS_AUTH_JWT_SECRET"):
        ActorResolver("jwt", "")


def test_jwt_mode_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ActorResolver("jwt", "short")
