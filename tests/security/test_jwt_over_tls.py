"""The service in production shape, end to end over the real (embedded) broker: every client
connection is TLS through the proxy, and actors come only from verified tokens.

Each attack gets ``forbidden``, and the next valid command on the same partition is processed.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from ticket_contracts import Actor as ContractActor
from ticket_contracts import CreateTicket, new_id
from ticket_contracts.client import TicketClient
from ticket_contracts.commands import IngestEmail, IngestEmailPayload

from service.adapters.auth import issue_token
from service.domain.values import Actor, Role
from service.runtime import Runtime
from tests.security.conftest import GATEWAY, ISSUER, IdentityProvider, TlsBroker

ASSERTED_ADMIN = ContractActor(user_id=uuid.uuid4(), role="admin")
TICKET = uuid.uuid4()  # every command below targets one ticket, hence one partition


def token(idp: IdentityProvider, actor: Actor, **changes: Any) -> str:
    return issue_token(idp.key, actor, changes.pop("ttl_s", 600), algorithm="EdDSA", kid=changes.pop("kid", "idp-1"),
                       issuer=changes.pop("iss", ISSUER), audience=changes.pop("aud", "ticket-service"),
                       extra=changes)


def create(actor_token: str | None, ticket_id: uuid.UUID = TICKET) -> CreateTicket:
    return CreateTicket(actor=ASSERTED_ADMIN, actor_token=actor_token,
                        payload={"ticket_id": ticket_id, "title": "Printer", "description": "On fire"})


def alg_none(actor: Actor) -> str:
    part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    now = int(time.time())
    claims = {"sub": str(actor.user_id), "role": "admin", "iat": now, "exp": now + 60, "iss": ISSUER,
              "aud": "ticket-service"}
    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'idp-1'})}.{part(claims)}."


async def test_a_verified_token_is_the_actor_over_tls(secure_client: TicketClient, secure_service: Runtime,
                                                     idp: IdentityProvider, tls_broker: TlsBroker) -> None:
    customer = Actor(uuid.uuid4(), Role.CUSTOMER, uuid.uuid4())
    ticket_id = new_id()
    result = await secure_client.send(create(token(idp, customer), ticket_id))
    assert result.status == "accepted", result
    # The envelope asserted an admin; the token's customer is who acted.
    assert result.actor is not None and result.actor.user_id == customer.user_id
    assert result.actor.role == "customer"
    assert tls_broker.proxy.connections > 0  # the service and the client spoke TLS to the proxy


async def test_bad_tokens_are_forbidden_and_the_partition_moves_on(
    secure_client: TicketClient, secure_service: Runtime, idp: IdentityProvider,
) -> None:
    agent = Actor(uuid.uuid4(), Role.AGENT)
    stranger = IdentityProvider(idp.path.with_name("stranger.json"))
    now = int(time.time())
    attacks = {
        "no token": None,
        "garbage": "not-a-jwt",
        "alg none": alg_none(agent),
        "wrong audience": token(idp, agent, aud="another-service"),
        "wrong issuer": token(idp, agent, iss="https://evil.example.test"),
        "ten-year lifetime": token(idp, agent, ttl_s=10 * 365 * 86400),
        "expired": token(idp, agent, iat=now - 3600, exp=now - 600),
        "unknown kid": token(stranger, agent, kid="idp-9"),
        "forged with the known kid": token(stranger, agent),
        "hs256 with a guessed secret": issue_token("x" * 40, agent, issuer=ISSUER, audience="ticket-service"),
    }
    before = secure_service.metrics.total(secure_service.metrics.auth_failures, "missing", "malformed", "algorithm",
                                          "issuer_audience", "lifetime", "expired", "unknown_key", "signature")
    for name, bad in attacks.items():
        result = await secure_client.send(create(bad))
        assert (result.status, result.reason) == ("rejected", "forbidden"), name
    after = secure_service.metrics.total(secure_service.metrics.auth_failures, "missing", "malformed", "algorithm",
                                         "issuer_audience", "lifetime", "expired", "unknown_key", "signature")
    assert after - before == len(attacks)
    # Same ticket, same partition: the next valid command is processed (and nothing was created before).
    accepted = await secure_client.send(CreateTicket(
        actor=ASSERTED_ADMIN, actor_token=token(idp, agent),
        payload={"ticket_id": TICKET, "title": "Printer", "description": "On fire", "customer_id": uuid.uuid4()}))
    assert accepted.status == "accepted" and accepted.ticket_version == 1, accepted


def mail(actor_token: str) -> IngestEmail:
    payload = IngestEmailPayload(email_message_id=f"<{uuid.uuid4().hex}@mail.example.test>", from_address=
                                 "nobody@example.test", subject="Help", body="Please.", received_at=datetime.now(UTC))
    return IngestEmail(actor=ContractActor(user_id=GATEWAY, role="system"), actor_token=actor_token, payload=payload)


async def test_only_the_gateway_accounts_may_ingest_email(secure_client: TicketClient, secure_service: Runtime,
                                                          idp: IdentityProvider) -> None:
    other_service = Actor(uuid.uuid4(), Role.SYSTEM)
    refused = await secure_client.send(mail(token(idp, other_service)))
    assert (refused.status, refused.reason) == ("rejected", "forbidden")
    gateway = await secure_client.send(mail(token(idp, Actor(GATEWAY, Role.SYSTEM))))
    # The gateway gets past authorisation: the sender is simply not a known customer.
    assert (gateway.status, gateway.reason) == ("rejected", "unknown_sender"), gateway
