"""Who is acting: the envelope's actor (development) or a verified signed token (production).

``trust`` believes the asserted ``actor`` — the service says so loudly at start-up.
``jwt`` verifies ``actor_token`` (HS256, claims ``sub``, ``role``, optional ``customer_id``,
``exp``) and ignores the asserted actor; a missing or bad token is a ``forbidden`` rejection.
"""

from __future__ import annotations

import uuid
from typing import Any

import jwt

from service.domain.errors import Forbidden
from service.domain.values import Actor, Role


class ActorResolver:
    def __init__(self, mode: str, secret: str = "") -> None:
        if mode == "jwt" and len(secret.encode()) < 32:
            raise ValueError("TICKETS_AUTH_JWT_SECRET of at least 32 bytes is required when TICKETS_AUTH_MODE=jwt")
        self.mode = mode
        self._secret = secret

    def resolve(self, asserted: Any, token: str | None) -> Actor:
        """``asserted`` is the envelope's ticket_contracts Actor."""
        if self.mode == "trust":
            return Actor(asserted.user_id, Role(asserted.role.value), asserted.customer_id)
        if not token:
            raise Forbidden("an actor_token is required")
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], options={"require": ["sub", "role"]})
            customer = claims.get("customer_id")
            actor = Actor(uuid.UUID(claims["sub"]), Role(claims["role"]), uuid.UUID(customer) if customer else None)
        except (jwt.PyJWTError, ValueError, KeyError) as error:
            raise Forbidden("the actor_token is not valid") from error
        if actor.role is Role.CUSTOMER and actor.customer_id is None:
            raise Forbidden("a customer token needs customer_id")
        return actor


def issue_token(secret: str, actor: Actor, ttl_s: int = 3600) -> str:
    """For tests and tooling: sign a token the ``jwt`` mode accepts."""
    import time

    claims: dict[str, Any] = {"sub": str(actor.user_id), "role": actor.role.value, "exp": int(time.time()) + ttl_s}
    if actor.customer_id:
        claims["customer_id"] = str(actor.customer_id)
    return jwt.encode(claims, secret, algorithm="HS256")
