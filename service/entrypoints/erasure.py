"""``user.erased`` → ``ticket.redact`` commands on the service's own commands topic.

Per erased user: plan (or find the plan of) the erasure in the database, then publish the unsent
``ticket.redact`` commands keyed by ticket id — so each ticket's commands stay in order — in
chunks, marking each chunk sent once the broker acknowledged it, with an ``ops.erasure_progress``
event on ``tickets.ops.v1`` after the plan and after every chunk. The user-events offsets are
committed only after all of it: a crash anywhere redelivers the ``user.erased``, which resumes
with what is unsent (same command ids: the inbox makes repeats no-ops). A finished erasure makes
any later ``user.erased`` of the same user a no-op.
"""

from __future__ import annotations

import asyncio

from ticket_contracts import topics
from ticket_contracts.commands import RedactTicket
from ticket_contracts.envelope import Actor
from ticket_contracts.ops import ErasureProgress
from ticket_contracts.users import UserErased

from service.adapters.erasure import ErasurePlan, mark_sent, plan_erasure
from service.logging import get_logger
from service.runtime import Runtime

log = get_logger(__name__)

CHUNK = 500


async def erase(rt: Runtime, event: UserErased) -> ErasurePlan:
    s = rt.settings
    user_id = event.payload.user_id
    plan = await plan_erasure(rt.engine, user_id, event.message_id, event.occurred_at,
                              whole_customer=s.erasure_customer_scope == "customer")
    if not plan.new and plan.done:
        log.info("user already erased: nothing to do", user_id=str(user_id))
        await _progress(rt, plan, plan.commands_sent, done=True)
        return plan
    log.info("erasing a user", user_id=str(user_id), tickets_whole=plan.tickets_whole,
             tickets_authored=plan.tickets_authored, unsent=len(plan.unsent))
    await _progress(rt, plan, plan.commands_sent, done=not plan.unsent)
    actor = Actor(user_id=s.erasure_actor_id, role="system")
    sent = plan.commands_sent
    for start in range(0, len(plan.unsent), CHUNK):
        chunk = plan.unsent[start:start + CHUNK]
        futures = []
        for item in chunk:
            command = RedactTicket(  # type: ignore[call-arg]  # sent_at: default (Annotated Field)
                message_id=item.command_id, correlation_id=event.message_id, causation_id=event.message_id,
                actor=actor, actor_token=s.erasure_actor_token or None,
                payload={"ticket_id": item.ticket_id, "author_id": user_id if item.author_only else None},
            )
            futures.append(await rt.broker.publish(
                command.model_dump_json().encode(), topics.COMMANDS, key=str(item.ticket_id).encode(),
                headers={topics.HEADER_TYPE: command.type, topics.HEADER_CONTENT_TYPE: topics.JSON_CONTENT_TYPE,
                         topics.HEADER_CORRELATION_ID: str(event.message_id)}, no_confirm=True))
        await asyncio.gather(*futures)
        last = start + CHUNK >= len(plan.unsent)
        sent = await mark_sent(rt.engine, user_id, [i.ticket_id for i in chunk], last=last)
        await _progress(rt, plan, sent, done=last)
    plan.commands_sent, plan.unsent = sent, []
    return plan


async def _progress(rt: Runtime, plan: ErasurePlan, sent: int, done: bool = False) -> None:
    progress = ErasureProgress(instance_id=rt.settings.instance_id, user_id=plan.user_id,  # type: ignore[call-arg]
                               tickets_to_redact=plan.tickets_whole,
                               tickets_with_authored_content=plan.tickets_authored, commands_sent=sent, done=done)
    await rt.broker.publish(progress.model_dump_json().encode(), topics.OPS, key=str(plan.user_id).encode(),
                            headers={topics.HEADER_TYPE: progress.type,
                                     topics.HEADER_CONTENT_TYPE: topics.JSON_CONTENT_TYPE})

