"""SQLAlchemy Core tables: the schema Alembic migrates and the adapters query.

The hot command path uses Core statements in batches (see docs/architecture.md): the ORM's
per-object bookkeeping costs ~1 ms of CPU per command, which the batch design avoids.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Sequence,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TZ = DateTime(timezone=True)

ticket_number_seq = Sequence("ticket_number_seq", metadata=metadata, start=1)

tickets = Table(
    "tickets",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("number", Text, nullable=False, unique=True),
    Column("customer_id", UUID(as_uuid=True), nullable=False),
    Column("created_by", UUID(as_uuid=True), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("status_reason", Text),
    Column("priority", Text, nullable=False),
    #: 1 (low) … 4 (urgent): sorts by priority with a plain index.
    Column("priority_rank", SmallInteger, nullable=False),
    Column("category_id", UUID(as_uuid=True)),
    Column("channel", Text, nullable=False),
    Column("tags", ARRAY(Text), nullable=False, server_default=text("'{}'")),
    Column("assignee_id", UUID(as_uuid=True)),
    Column("version", Integer, nullable=False),
    Column("created_at", TZ, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Column("status_changed_at", TZ, nullable=False),
    Column("first_response_at", TZ),
    Column("resolved_at", TZ),
    Column("closed_at", TZ),
    Column("deleted_at", TZ),
    Column("follow_up_of", UUID(as_uuid=True)),
    Column("time_spent_minutes", Integer, nullable=False, server_default=text("0")),
    Column("email_message_id", Text),
    #: Users notified about the ticket besides its customer and assignee (migration 5b7e0c2d9a41).
    Column("follower_ids", ARRAY(UUID(as_uuid=True)), nullable=False, server_default=text("'{}'")),
    #: Merges (migration b7d1e5a0c3f2): the target this ticket was merged into; those merged into it.
    Column("merged_into", UUID(as_uuid=True)),
    Column("merged_from", ARRAY(UUID(as_uuid=True)), nullable=False, server_default=text("'{}'")),
)

# Query-side indexes (SPEC §9; migration a2fdac6c3948). Sort keys end in ``id`` for keyset paging;
# partial on live tickets, which are all anyone but an admin ever reads.
_LIVE = text("deleted_at IS NULL")
Index("ix_tickets_created", tickets.c.created_at, tickets.c.id, postgresql_where=_LIVE)
Index("ix_tickets_updated", tickets.c.updated_at, tickets.c.id, postgresql_where=_LIVE)
Index("ix_tickets_priority", tickets.c.priority_rank, tickets.c.created_at, tickets.c.id, postgresql_where=_LIVE)
Index("ix_tickets_customer_created", tickets.c.customer_id, tickets.c.created_at, tickets.c.id, postgresql_where=_LIVE)
Index("ix_tickets_assignee_created", tickets.c.assignee_id, tickets.c.created_at, tickets.c.id, postgresql_where=_LIVE)
Index("ix_tickets_status_created", tickets.c.status, tickets.c.created_at, tickets.c.id, postgresql_where=_LIVE)
Index("ix_tickets_category_created", tickets.c.category_id, tickets.c.created_at, tickets.c.id, postgresql_where=_LIVE)
Index("ix_tickets_title_trgm", tickets.c.title, postgresql_using="gin", postgresql_ops={"title": "gin_trgm_ops"})

#: Full-text search documents, one row per ticket, kept current by triggers (migration 9e332d8961c3):
#: ``public_doc`` = title (A), description (B), public replies (C) — all a customer's search reads;
#: ``staff_doc`` = the same plus internal notes (D). Apart from ``tickets`` so that updates that change
#: no text never rewrite the documents or their GIN entries. See docs/queries.md.
ticket_search = Table(
    "ticket_search",
    metadata,
    Column("ticket_id", UUID(as_uuid=True), ForeignKey("tickets.id"), primary_key=True),
    Column("public_doc", TSVECTOR, nullable=False),
    Column("staff_doc", TSVECTOR, nullable=False),
    # Copies of the ticket's columns, kept equal by triggers (migration d6420cf6a748): the newest-first
    # walk, the sort of GIN matches and a customer's scope stay on this table.
    Column("created_at", TZ, nullable=False),
    Column("customer_id", UUID(as_uuid=True), nullable=False),
    Column("deleted_at", TZ),
    Index("ix_ticket_search_public", "public_doc", postgresql_using="gin"),
    Index("ix_ticket_search_staff", "staff_doc", postgresql_using="gin"),
    Index("ix_ticket_search_created", "created_at", "ticket_id"),
    Index("ix_ticket_search_customer_created", "customer_id", "created_at", "ticket_id"),
)

replies = Table(
    "replies",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("ticket_id", UUID(as_uuid=True), ForeignKey("tickets.id"), nullable=False),
    Column("author_id", UUID(as_uuid=True), nullable=False),
    Column("author_role", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("internal", Boolean, nullable=False),
    Column("source", Text, nullable=False),
    Column("email_message_id", Text),
    Column("created_at", TZ, nullable=False),
    Index("ix_replies_ticket_thread", "ticket_id", "created_at", "id"),
)

#: Files attached by reference (never the bytes) to a ticket's description (``reply_id`` null) or to
#: a reply; ``internal`` copies the reply's, so visibility needs no join (migration 5b7e0c2d9a41).
attachments = Table(
    "attachments",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("ticket_id", UUID(as_uuid=True), ForeignKey("tickets.id"), nullable=False),
    Column("reply_id", UUID(as_uuid=True)),
    Column("filename", Text, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("uri", Text, nullable=False),
    Column("internal", Boolean, nullable=False),
    Column("scan_status", Text, nullable=False),
    Column("scanner", Text),
    Column("scanned_at", TZ),
    Column("created_at", TZ, nullable=False),
    Index("ix_attachments_ticket_reply", "ticket_id", "reply_id"),
)

time_entries = Table(
    "time_entries",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("ticket_id", UUID(as_uuid=True), ForeignKey("tickets.id"), nullable=False),
    Column("user_id", UUID(as_uuid=True), nullable=False),
    Column("minutes", Integer, nullable=False),
    Column("note", Text),
    Column("created_at", TZ, nullable=False),
    Index("ix_time_entries_ticket", "ticket_id", "created_at"),
)

#: The permanent history of every ticket, which doubles as the transactional outbox: ``seq``
#: orders publication; what the relay has published is in ``relay_progress``. ``published_at`` is
#: historical: set by versions before migration 3f8a2d61c0b7 for the rows they published, no
#: longer written (NULL since, published or not).
ticket_events = Table(
    "ticket_events",
    metadata,
    Column("seq", BigInteger, Identity(always=False), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("ticket_id", UUID(as_uuid=True), nullable=False),
    Column("ticket_version", Integer, nullable=False),
    Column("type", Text, nullable=False),
    Column("internal", Boolean, nullable=False),
    Column("occurred_at", TZ, nullable=False),
    #: The event exactly as published (JSON text of ticket_contracts.events.Event).
    Column("body", Text, nullable=False),
    Column("published_at", TZ),
    #: W3C trace context of the command that caused the event; the relay sends it as headers.
    Column("traceparent", Text),
    Column("tracestate", Text),
    UniqueConstraint("ticket_id", "ticket_version", name="uq_ticket_events_ticket_version"),
)

#: The inbox: one row per distinct command ``message_id``, with the result it produced.
processed_commands = Table(
    "processed_commands",
    metadata,
    Column("message_id", UUID(as_uuid=True), primary_key=True),
    Column("seq", BigInteger, Identity(always=False), nullable=False, unique=True),
    Column("command_type", Text, nullable=False),
    Column("ticket_id", UUID(as_uuid=True)),
    Column("processed_at", TZ, nullable=False),
    Column("status", Text, nullable=False),
    #: The result exactly as published (JSON text of ticket_contracts.results.CommandResult).
    Column("result", Text, nullable=False),
    Column("reply_to", Text),
    #: Hash of the authenticated sender, command type and payload (migration c4e8f2a61d07).
    Column("fingerprint", Text),
    #: Historical, like ticket_events.published_at: no longer written (see relay_progress).
    Column("result_published_at", TZ),
    Column("traceparent", Text),
    Column("tracestate", Text),
)

#: The relay's progress per outbox table ('ticket_events', 'processed_commands'): every row with
#: ``seq`` ≤ ``max_seen`` is published except the ``holes`` (seqs at or below it not yet seen:
#: in-flight or rolled back). Written only by the relay's leader, once per round
#: (service.adapters.relay.OutboxProgress).
relay_progress = Table(
    "relay_progress",
    metadata,
    Column("outbox", Text, primary_key=True),
    Column("max_seen", BigInteger, nullable=False, server_default=text("0")),
    Column("holes", ARRAY(BigInteger), nullable=False, server_default=text("'{}'")),
    Column("updated_at", TZ, nullable=False, server_default=text("now()")),
)

#: Local replica of the identity service's user directory (users.events.v1).
users = Table(
    "users",
    metadata,
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("email", Text, nullable=False),
    Column("display_name", Text, nullable=False, server_default=text("''")),
    Column("role", Text, nullable=False),
    Column("customer_id", UUID(as_uuid=True)),
    Column("active", Boolean, nullable=False),
    Column("updated_at", TZ, nullable=False),
    Index("ix_users_email", "email"),
)

#: Every email Message-ID the service knows: inbound mails (idempotency, threading) and the
#: ids of notifications the gateway reports, each tied to its ticket.
email_messages = Table(
    "email_messages",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("ticket_id", UUID(as_uuid=True)),
    Column("reply_id", UUID(as_uuid=True)),
    Column("command_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", TZ, nullable=False),
    #: Inbound mails: the sender, lower-case — counts the tickets a sender's mails opened (loop limit).
    Column("from_address", Text),
    #: True for the Message-ID of a mail the platform sent (``ticket.record_outbound_email``).
    Column("outbound", Boolean, nullable=False, server_default=text("false")),
    Index("ix_email_messages_new_tickets", "from_address", "created_at",
          postgresql_where=text("reply_id IS NULL AND ticket_id IS NOT NULL AND NOT outbound")),
)

#: One row per erased user (``user.erased``): the plan's size and progress. Ids only.
erasures = Table(
    "erasures",
    metadata,
    Column("user_id", UUID(as_uuid=True), primary_key=True),
    Column("message_id", UUID(as_uuid=True), nullable=False),
    Column("requested_at", TZ, nullable=False),
    Column("tickets_whole", Integer, nullable=False),
    Column("tickets_authored", Integer, nullable=False),
    Column("commands_sent", Integer, nullable=False, server_default=text("0")),
    Column("done_at", TZ),
)

#: The ``ticket.redact`` commands of an erasure: sent_at is set once the broker has them.
erasure_commands = Table(
    "erasure_commands",
    metadata,
    Column("user_id", UUID(as_uuid=True), ForeignKey("erasures.user_id"), primary_key=True),
    Column("ticket_id", UUID(as_uuid=True), primary_key=True),
    Column("author_only", Boolean, nullable=False),
    Column("command_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("sent_at", TZ),
    Index("ix_erasure_commands_unsent", "user_id", postgresql_where=text("sent_at IS NULL")),
)
