"""The floor: a minimal hand-written consume → PostgreSQL → produce → commit loop (aiokafka + asyncpg).

It does, per fetched batch, the same database work per command as the service, with none of its
framework: decode the commands with ``json.loads`` (no validation); in one transaction lock and read
the batch's tickets, look up the inbox (and, when needed, the assignees and new ticket numbers), apply a
minimal version of the rules in plain dicts, and write with multi-row ``unnest`` statements — new ticket
rows, changed ticket rows, reply and time-entry rows, one row per event, one inbox row (with the result)
per command; then produce every event and result (1 MB producer batches), await them all, and only then
commit the offsets. Events are published straight after the commit (no outbox relay), so their rows are
inserted as already published. It keeps the service's atomic transaction, inbox and per-ticket order
(a duplicate is skipped rather than answered again; the bench sends none), and it is what
:mod:`bench.commands` compares the service with.

    python -m bench.floor --bootstrap 127.0.0.1:9092 --dsn postgresql://postgres@/db?host=/tmp --group g
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from ticket_contracts import topics

_LOCK = """SELECT id, number, customer_id, status, status_reason, priority, assignee_id, category_id, version,
                  created_at, updated_at, status_changed_at, first_response_at, resolved_at, closed_at, deleted_at,
                  time_spent_minutes
           FROM tickets WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE"""
_INBOX = "SELECT message_id FROM processed_commands WHERE message_id = ANY($1::uuid[])"
_ASSIGNABLE = """SELECT user_id FROM users WHERE user_id = ANY($1::uuid[]) AND active
                 AND role IN ('agent', 'admin')"""
_NUMBERS = "SELECT nextval('ticket_number_seq') FROM generate_series(1, $1)"
_INSERT_TICKETS = """
INSERT INTO tickets (id, number, customer_id, created_by, title, description, status, priority, priority_rank,
                     channel, tags, version, created_at, updated_at, status_changed_at)
SELECT u.id, u.number, u.customer_id, u.created_by, u.title, u.description, 'new', u.priority, u.rank, u.channel,
       u.tags::text[], u.version, u.at, u.updated_at, u.at
FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[], $8::int2[],
            $9::text[], $10::text[], $11::int[], $12::timestamptz[], $13::timestamptz[])
     AS u(id, number, customer_id, created_by, title, description, priority, rank, channel, tags, version, at,
          updated_at)"""
_STATE = ("status", "status_reason", "assignee_id", "version", "updated_at", "status_changed_at",
          "first_response_at", "resolved_at", "time_spent_minutes")
_UPDATE_TICKETS = """
UPDATE tickets SET status = u.status, status_reason = u.status_reason, assignee_id = u.assignee_id,
       version = u.version, updated_at = u.updated_at, status_changed_at = u.status_changed_at,
       first_response_at = u.first_response_at, resolved_at = u.resolved_at, time_spent_minutes = u.minutes
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::int[], $6::timestamptz[], $7::timestamptz[],
            $8::timestamptz[], $9::timestamptz[], $10::int[])
     AS u(id, status, status_reason, assignee_id, version, updated_at, status_changed_at, first_response_at,
          resolved_at, minutes)
WHERE tickets.id = u.id"""
_INSERT_REPLIES = """
INSERT INTO replies (id, ticket_id, author_id, author_role, body, internal, source, created_at)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bool[], $7::text[],
                     $8::timestamptz[])"""
_INSERT_TIME = """
INSERT INTO time_entries (id, ticket_id, user_id, minutes, note, created_at)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::text[], $6::timestamptz[])"""
_INSERT_EVENTS = """
INSERT INTO ticket_events (event_id, ticket_id, ticket_version, type, internal, occurred_at, body, published_at)
SELECT u.*, now() FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::bool[], $6::timestamptz[],
                              $7::text[]) AS u"""
_INSERT_INBOX = """
INSERT INTO processed_commands (message_id, command_type, ticket_id, processed_at, status, result, reply_to,
                                result_published_at)
SELECT u.*, now() FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::timestamptz[], $5::text[], $6::text[],
                              $7::text[]) AS u"""
_RANK = {"low": 1, "normal": 2, "high": 3, "urgent": 4}
_STAFF = ("agent", "admin")


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=_plain, separators=(",", ":"))


class Rejected(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Batch:
    """One fetched batch: the ticket rows it addresses, and every row and message it will write."""

    def __init__(self, now: datetime, tickets: dict[str, dict[str, Any]], assignable: set[str],
                 numbers: list[int]) -> None:
        self.now, self.tickets, self.assignable, self.numbers = now, tickets, assignable, numbers
        self.new: set[str] = set()
        self.dirty: set[str] = set()
        self.replies: list[tuple[Any, ...]] = []
        self.entries: list[tuple[Any, ...]] = []
        self.events: list[tuple[Any, ...]] = []
        self.inbox: list[tuple[Any, ...]] = []
        self.out: list[tuple[str, bytes, bytes | None]] = []

    def handle(self, cmd: dict[str, Any]) -> None:
        p, kind, actor = cmd.get("payload", {}), cmd["type"], cmd["actor"]
        tid = p.get("ticket_id")
        recorded: list[tuple[str, dict[str, Any], bool]] = []
        try:
            if kind == "ticket.create":
                t = self._create(tid, p, actor)
                created = {k: t[k] for k in ("number", "customer_id", "created_by", "title", "description",
                                             "priority", "category_id", "channel", "tags", "status")}
                recorded.append(("ticket.created", created, False))
            else:
                t = self.tickets.get(tid)
                if t is None or (actor["role"] == "customer" and str(t["customer_id"]) != actor["customer_id"]):
                    raise Rejected("not_found", "no such ticket")
                if t["status"] == "closed":
                    raise Rejected("ticket_closed", "the ticket is closed")
                recorded += self._apply(t, kind, p, actor)
        except Rejected as rejected:
            self._finish(cmd, tid, [], None, rejected.reason, str(rejected))
            return
        ids = []
        for type_, payload, internal in recorded:
            t["version"] += 1
            t["updated_at"] = self.now
            ids.append(self._event(cmd, t, type_, payload, internal))
        self.dirty.add(tid)
        self._finish(cmd, tid, ids, t["version"], None, None)

    def _create(self, tid: str, p: dict[str, Any], actor: dict[str, Any]) -> dict[str, Any]:
        if tid in self.tickets:
            raise Rejected("conflict", "a ticket with this ticket_id already exists")
        t = {
            "id": tid, "number": f"TKT-{self.numbers.pop():06d}", "customer_id": actor.get("customer_id")
            or p.get("customer_id"), "created_by": actor["user_id"], "title": p["title"],
            "description": p["description"], "priority": p.get("priority", "normal"),
            "channel": p.get("channel", "api"),
            "tags": sorted(set(p.get("tags", []))), "status": "new", "status_reason": None, "assignee_id": None,
            "category_id": None, "version": 0, "created_at": self.now, "updated_at": self.now,
            "status_changed_at": self.now, "first_response_at": None, "resolved_at": None, "closed_at": None,
            "deleted_at": None, "time_spent_minutes": 0,
        }
        self.tickets[tid] = t
        self.new.add(tid)
        return t

    def _apply(self, t: dict[str, Any], kind: str, p: dict[str, Any], actor: dict[str, Any]) -> list[Any]:
        staff = actor["role"] in _STAFF
        if kind == "ticket.add_reply":
            internal = bool(p.get("internal"))
            first = staff and not internal and t["first_response_at"] is None
            if first:
                t["first_response_at"] = self.now
            self.replies.append((p["reply_id"], t["id"], actor["user_id"], actor["role"], p["body"], internal,
                                 p.get("source", "api"), self.now))
            reply = dict(zip(("id", "ticket_id", "author_id", "author_role", "body", "internal", "source",
                              "created_at"), self.replies[-1], strict=True))
            out = [("ticket.reply_added", {"reply": reply, "first_response": first}, internal)]
            if not internal and not staff and t["status"] in ("pending", "resolved"):
                out.append(self._move(t, "open", "customer replied", True))
            elif not internal and staff and t["status"] == "new":
                out.append(self._move(t, "open", "first staff reply", True))
            return out
        if kind == "ticket.assign":
            if not staff:
                raise Rejected("forbidden", "only agents and admins may assign tickets")
            if p["assignee_id"] not in self.assignable:
                raise Rejected("invalid_assignee", "the assignee must be an active agent or admin")
            previous, t["assignee_id"] = t["assignee_id"], p["assignee_id"]
            return [("ticket.assigned", {"from_assignee_id": previous, "to_assignee_id": p["assignee_id"]}, False)]
        if kind == "ticket.change_status":
            if p["status"] == t["status"]:
                raise Rejected("invalid_transition", "already so")
            return [self._move(t, p["status"], p.get("reason"), False)]
        if kind == "ticket.log_time":
            t["time_spent_minutes"] += p["minutes"]
            self.entries.append((p["entry_id"], t["id"], actor["user_id"], p["minutes"], p.get("note"), self.now))
            return [("ticket.time_logged", {"entry_id": p["entry_id"], "minutes": p["minutes"],
                                            "time_spent_minutes": t["time_spent_minutes"]}, True)]
        raise Rejected("validation_error", f"the floor does not handle {kind}")

    def _move(self, t: dict[str, Any], target: str, reason: str | None, automatic: bool) -> Any:
        previous = t["status"]
        if target == "resolved":
            t["resolved_at"] = self.now
        t["status"], t["status_reason"], t["status_changed_at"] = target, reason, self.now
        return ("ticket.status_changed",
                {"from_status": previous, "to_status": target, "reason": reason, "automatic": automatic}, False)

    def _event(self, cmd: dict[str, Any], t: dict[str, Any], type_: str, payload: dict[str, Any],
               internal: bool) -> str:
        event_id = str(uuid.uuid4())
        snapshot = {k: t[k] for k in ("id", "number", "customer_id", "status", "priority", "assignee_id",
                                      "category_id", "created_at", "first_response_at", "resolved_at",
                                      "closed_at")}
        snapshot["deleted"] = t["deleted_at"] is not None
        body = _dumps({
            "message_id": event_id, "event_id": event_id, "type": type_, "schema_version": 1,
            "correlation_id": cmd.get("correlation_id") or cmd["message_id"], "causation_id": cmd["message_id"],
            "occurred_at": self.now, "actor": cmd["actor"], "ticket_id": t["id"], "ticket_version": t["version"],
            "internal": internal, "ticket": snapshot, "payload": payload,
        })
        self.events.append((event_id, t["id"], t["version"], type_, internal, self.now, body))
        self.out.append((topics.EVENTS, body.encode(), str(t["id"]).encode()))
        return event_id

    def _finish(self, cmd: dict[str, Any], tid: str | None, event_ids: list[str], version: int | None,
                reason: str | None, message: str | None) -> None:
        result = _dumps({
            "message_id": str(uuid.uuid4()), "type": "ticket.command_result", "schema_version": 1,
            "correlation_id": cmd.get("correlation_id") or cmd["message_id"], "causation_id": cmd["message_id"],
            "sent_at": self.now, "actor": cmd["actor"], "command_id": cmd["message_id"],
            "command_type": cmd["type"], "ticket_id": tid, "status": "rejected" if reason else "accepted",
            "event_ids": event_ids, "ticket_version": version, "reason": reason, "message": message,
        })
        self.inbox.append((cmd["message_id"], cmd["type"], tid, self.now, "rejected" if reason else "accepted",
                           result, None))
        self.out.append((topics.COMMAND_RESULTS, result.encode(), tid.encode() if tid else None))


def _columns(rows: Iterable[tuple[Any, ...]], width: int) -> list[list[Any]]:
    cols: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for i, value in enumerate(row):
            cols[i].append(value)
    return cols


async def handle(conn: asyncpg.Connection, commands: list[dict[str, Any]]) -> Batch:
    """One transaction for the whole batch; returns what to publish once it has committed."""
    async with conn.transaction():
        ids = sorted({c["payload"]["ticket_id"] for c in commands if "ticket_id" in c.get("payload", {})})
        rows = await conn.fetch(_LOCK, ids)
        seen = {str(r["message_id"]) for r in await conn.fetch(_INBOX, [c["message_id"] for c in commands])}
        wanted = [c["payload"]["assignee_id"] for c in commands if c["type"] == "ticket.assign"]
        assignable = {str(r["user_id"]) for r in await conn.fetch(_ASSIGNABLE, wanted)} if wanted else set()
        creates = sum(c["type"] == "ticket.create" for c in commands)
        numbers = [r[0] for r in await conn.fetch(_NUMBERS, creates)] if creates else []
        tickets = {str(r["id"]): dict(r, id=str(r["id"])) for r in rows}
        batch = Batch(datetime.now(UTC), tickets, assignable, numbers)
        done: set[str] = set()
        for cmd in commands:
            if cmd["message_id"] in seen or cmd["message_id"] in done:
                continue  # a duplicate: the service re-sends the stored result; the floor never sees any
            done.add(cmd["message_id"])
            batch.handle(cmd)
        await _write(conn, batch)
    return batch


async def _write(conn: asyncpg.Connection, b: Batch) -> None:
    new = [b.tickets[i] for i in b.new]
    if new:
        await conn.execute(_INSERT_TICKETS, *_columns(
            ((t["id"], t["number"], t["customer_id"], t["created_by"], t["title"], t["description"], t["priority"],
              _RANK[t["priority"]], t["channel"], "{" + ",".join(t["tags"]) + "}", t["version"], t["created_at"],
              t["updated_at"]) for t in new), 13))
    changed = [b.tickets[i] for i in b.dirty - b.new]
    if changed:
        await conn.execute(_UPDATE_TICKETS, *_columns(
            ((t["id"], *(t[k] for k in _STATE)) for t in changed), 10))
    if b.replies:
        await conn.execute(_INSERT_REPLIES, *_columns(b.replies, 8))
    if b.entries:
        await conn.execute(_INSERT_TIME, *_columns(b.entries, 6))
    if b.events:
        await conn.execute(_INSERT_EVENTS, *_columns(b.events, 7))
    if b.inbox:
        await conn.execute(_INSERT_INBOX, *_columns(b.inbox, 7))


async def run(bootstrap: str, dsn: str, group: str, *, max_records: int = 200, fetch_max_wait_ms: int = 10,
              stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    conn = await asyncpg.connect(dsn)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=1 << 20)
    consumer = AIOKafkaConsumer(
        topics.COMMANDS, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=fetch_max_wait_ms,
    )
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            fetched = await consumer.getmany(timeout_ms=100, max_records=max_records)
            records = [r for part in fetched.values() for r in part]
            if not records:
                continue
            batch = await handle(conn, [json.loads(r.value) for r in records])
            futures = [await producer.send(topic, value, key=key) for topic, value, key in batch.out]
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--dsn", required=True, help="asyncpg DSN (postgresql://…) of a migrated database")
    parser.add_argument("--group", required=True, help="consumer group")
    parser.add_argument("--max-records", type=int, default=200)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=10)
    args = parser.parse_args()

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run(args.bootstrap, args.dsn, args.group, max_records=args.max_records,
                  fetch_max_wait_ms=args.fetch_max_wait_ms, stop=stop)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
