"""The ticket aggregate: one method per command, each guarding its rules and recording events.

A method either raises a :class:`~service.domain.errors.DomainError` and changes nothing, or
applies the change, bumps ``version`` once per recorded event and appends to ``pending``.
Replies and time entries are recorded as new children; the thread is never loaded whole.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import events as ev
from .attachments import Attachment, Upload
from .errors import (
    Conflict,
    Forbidden,
    InvalidAssignee,
    InvalidInput,
    InvalidMerge,
    InvalidTransition,
    TicketClosed,
    TicketNotFound,
)
from .followers import MAX_FOLLOWERS, check_follower_change, may_add, may_follow
from .policy import check_admin, check_not_system, check_redactor, check_reply, check_staff, check_update_fields
from .redaction import MARKER, Redaction
from .status import check_not_closed, check_transition, is_reopening
from .values import Actor, DirectoryUser, Role, Status

TICKET_NUMBER_FORMAT = "TKT-{:06d}"


def format_number(seq: int) -> str:
    return TICKET_NUMBER_FORMAT.format(seq)


@dataclass(slots=True)
class Reply:
    id: uuid.UUID
    ticket_id: uuid.UUID
    author_id: uuid.UUID
    author_role: Role
    body: str
    internal: bool
    source: str
    email_message_id: str | None
    created_at: datetime


@dataclass(slots=True)
class TimeEntry:
    id: uuid.UUID
    ticket_id: uuid.UUID
    user_id: uuid.UUID
    minutes: int
    note: str | None
    created_at: datetime


@dataclass(slots=True)
class Ticket:
    id: uuid.UUID
    number: str
    customer_id: uuid.UUID
    created_by: uuid.UUID
    title: str
    description: str
    status: Status
    priority: str
    channel: str
    created_at: datetime
    updated_at: datetime
    status_changed_at: datetime
    version: int = 0
    status_reason: str | None = None
    category_id: uuid.UUID | None = None
    tags: list[str] = field(default_factory=list)
    assignee_id: uuid.UUID | None = None
    first_response_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    deleted_at: datetime | None = None
    follow_up_of: uuid.UUID | None = None
    time_spent_minutes: int = 0
    email_message_id: str | None = None
    follower_ids: list[uuid.UUID] = field(default_factory=list)
    merged_into: uuid.UUID | None = None
    merged_from: list[uuid.UUID] = field(default_factory=list)
    pending: list[ev.DomainEvent] = field(default_factory=list, repr=False)
    new_replies: list[Reply] = field(default_factory=list, repr=False)
    new_time_entries: list[TimeEntry] = field(default_factory=list, repr=False)
    #: Attachments added since loading, and stored ones whose scan status changed (by id).
    new_attachments: list[Attachment] = field(default_factory=list, repr=False)
    scanned_attachments: dict[uuid.UUID, Attachment] = field(default_factory=dict, repr=False)
    #: Redactions to carry out beyond this object's own fields (replies, notes, history, e-mail ids).
    redactions: list[Redaction] = field(default_factory=list, repr=False)

    # ---- creation -------------------------------------------------------------------------
    @classmethod
    def open_new(
        cls,
        *,
        ticket_id: uuid.UUID,
        number: str,
        customer_id: uuid.UUID,
        actor: Actor,
        title: str,
        description: str,
        priority: str,
        category_id: uuid.UUID | None,
        channel: str,
        tags: list[str],
        now: datetime,
        follow_up_of: uuid.UUID | None = None,
        email_message_id: str | None = None,
        attachments: Iterable[Upload] = (),
    ) -> Ticket:
        ticket = cls(
            id=ticket_id, number=number, customer_id=customer_id, created_by=actor.user_id,
            title=title, description=description, status=Status.NEW, priority=priority,
            channel=channel, created_at=now, updated_at=now, status_changed_at=now,
            category_id=category_id, tags=_normalise_tags(tags), follow_up_of=follow_up_of,
            email_message_id=email_message_id,
        )
        files = ticket._attach(attachments, reply_id=None, internal=False, now=now)
        ticket._record(ev.TICKET_CREATED, now, {
            "number": number, "customer_id": customer_id, "created_by": actor.user_id,
            "title": title, "description": description, "priority": priority,
            "category_id": category_id, "channel": channel, "tags": ticket.tags,
            "status": Status.NEW.value, "follow_up_of": follow_up_of,
            "email_message_id": email_message_id, "attachments": [a.view() for a in files],
        })
        return ticket

    # ---- commands -------------------------------------------------------------------------
    def update(self, actor: Actor, changes: dict[str, Any], now: datetime, expected_version: int | None) -> None:
        check_update_fields(actor, set(changes))
        self._check_mutable(expected_version)
        if "tags" in changes:
            changes = {**changes, "tags": _normalise_tags(changes["tags"])}
        diff = {k: {"old": getattr(self, k), "new": v} for k, v in changes.items() if getattr(self, k) != v}
        if not diff:
            return  # nothing changes: accepted, no event (see docs/decisions.md)
        for name, change in diff.items():
            setattr(self, name, change["new"])
        self._record(ev.TICKET_UPDATED, now, {"changes": diff})

    def change_status(
        self, actor: Actor, target: Status, reason: str | None, now: datetime, expected_version: int | None
    ) -> None:
        check_not_system(actor, "change a ticket's status")
        self._check_not_closed()
        check_transition(actor, self.status, target, reason)
        self._check_version(expected_version)
        self._move(target, reason, now, automatic=False)

    def assign(
        self, actor: Actor, assignee: DirectoryUser | None, assignee_id: uuid.UUID | None,
        now: datetime, expected_version: int | None,
    ) -> None:
        check_staff(actor, "assign tickets")
        self._check_mutable(expected_version)
        if assignee_id is not None and (assignee is None or not assignee.can_be_assigned):
            raise InvalidAssignee("the assignee must be an active agent or admin")
        if assignee_id == self.assignee_id:
            return  # already so: accepted, no event
        previous, self.assignee_id = self.assignee_id, assignee_id
        self._record(ev.TICKET_ASSIGNED, now, {"from_assignee_id": previous, "to_assignee_id": assignee_id})

    def add_reply(
        self, actor: Actor, *, reply_id: uuid.UUID, body: str, internal: bool, source: str, now: datetime,
        expected_version: int | None, email_message_id: str | None = None, attachments: Iterable[Upload] = (),
    ) -> None:
        check_reply(actor, internal)
        self._check_mutable(expected_version)
        reply = Reply(reply_id, self.id, actor.user_id, actor.role, body, internal, source, email_message_id, now)
        first_response = actor.is_staff and not internal and self.first_response_at is None
        if first_response:
            self.first_response_at = now
        self.new_replies.append(reply)
        files = self._attach(attachments, reply_id=reply_id, internal=internal, now=now)
        shown = {name: getattr(reply, name) for name in _REPLY_FIELDS} | {"attachments": [a.view() for a in files]}
        self._record(ev.REPLY_ADDED, now, {"reply": shown, "first_response": first_response}, internal=internal)
        if not internal:
            self._move_after_reply(actor, now)

    def log_time(
        self, actor: Actor, *, entry_id: uuid.UUID, minutes: int, note: str | None, now: datetime,
        expected_version: int | None,
    ) -> None:
        check_staff(actor, "log time")
        self._check_mutable(expected_version)
        entry = TimeEntry(entry_id, self.id, actor.user_id, minutes, note, now)
        self.time_spent_minutes += minutes
        self.new_time_entries.append(entry)
        self._record(ev.TIME_LOGGED, now, {"entry": entry, "time_spent_minutes": self.time_spent_minutes},
                     internal=True)

    def delete(self, actor: Actor, reason: str, now: datetime, expected_version: int | None) -> None:
        check_admin(actor, "delete tickets")
        self._check_version(expected_version)
        self.deleted_at = now
        self._record(ev.TICKET_DELETED, now, {"reason": reason})

    def restore(self, actor: Actor, now: datetime, expected_version: int | None) -> None:
        check_admin(actor, "restore tickets")
        if self.deleted_at is None:
            raise InvalidTransition("the ticket is not deleted")
        self._check_version(expected_version)
        self.deleted_at = None
        self._record(ev.TICKET_RESTORED, now, {})

    def set_followers(
        self, actor: Actor, add: Mapping[uuid.UUID, DirectoryUser | None], remove: Iterable[uuid.UUID],
        now: datetime, expected_version: int | None,
    ) -> None:
        """``add``: the user ids to add, each with its directory entry (None when unknown)."""
        check_not_system(actor, "change followers")
        self._check_mutable(expected_version)
        remove = list(remove)
        check_follower_change(actor, self.customer_id, add, remove)
        added = [user_id for user_id in dict.fromkeys(add) if user_id not in self.follower_ids]
        removed = [user_id for user_id in dict.fromkeys(remove) if user_id in self.follower_ids]
        self._change_followers(added, removed, now)

    def follow_from_mail(self, sender: Actor, users: Iterable[DirectoryUser], now: datetime) -> set[uuid.UUID]:
        """Add the users a mail's sender copied who may follow and whom the sender may add (users of
        the ticket's customer); the others are ignored. Returns the ids of the users accepted
        (added now, following already, or the sender), so the caller can report the rest."""
        accepted = {u.user_id for u in users if may_follow(u, self.customer_id) and may_add(sender, u)}
        added = [i for i in sorted(accepted) if i not in self.follower_ids and i != sender.user_id]
        room = max(MAX_FOLLOWERS - len(self.follower_ids), 0)
        accepted -= set(added[room:])  # a full ticket takes no more: reported, the mail still lands
        self._change_followers(added[:room], [], now)
        return accepted

    def record_scan(self, actor: Actor, attachment: Attachment | None, verdict: str, scanner: str,
                    scanned_at: datetime, now: datetime, expected_version: int | None) -> None:
        """A scanner's verdict on one of the ticket's attachments; the same verdict again changes nothing."""
        if actor.role is not Role.SYSTEM:
            raise Forbidden("only service accounts (malware scanners) may record scan verdicts")
        if attachment is None or attachment.ticket_id != self.id:
            raise TicketNotFound("no such attachment on this ticket")
        self._check_version(expected_version)
        current = self.scanned_attachments.get(attachment.id, attachment)
        if current.scan_status == verdict:
            return  # already so: accepted, no event
        updated = current.scanned(verdict, scanner, scanned_at)
        self.new_attachments = [updated if a.id == updated.id else a for a in self.new_attachments]
        if not any(a.id == updated.id for a in self.new_attachments):
            self.scanned_attachments[updated.id] = updated
        self._record(ev.ATTACHMENT_SCANNED, now, {
            "attachment_id": updated.id, "reply_id": updated.reply_id, "verdict": verdict, "scanner": scanner,
            "scanned_at": scanned_at, "attachment": updated.view(),
        }, internal=updated.internal)

    def attachment(self, attachment_id: uuid.UUID) -> Attachment | None:
        """One of the attachments changed in memory (added or scanned since loading), if it is."""
        found = self.scanned_attachments.get(attachment_id)
        return found or next((a for a in self.new_attachments if a.id == attachment_id), None)

    def merge_into(self, actor: Actor, target: Ticket, reason: str | None, now: datetime,
                   expected_version: int | None) -> None:
        """Close this ticket as merged into ``target``, which records that it received it. Both
        are visible to ``actor`` (the caller checked); staff only; neither may be closed."""
        check_staff(actor, "merge tickets")
        self._check_not_closed()
        target._check_not_closed()
        self._check_version(expected_version)
        if target.id == self.id:
            raise InvalidMerge("a ticket cannot be merged into itself")
        if target.customer_id != self.customer_id:
            raise InvalidMerge("tickets can only be merged within one customer")
        self.merged_into = target.id
        self._record(ev.TICKET_MERGED, now, {"into_ticket_id": target.id, "into_number": target.number,
                                             "reason": reason})
        self._move(Status.CLOSED, f"merged into {target.number}", now, automatic=True)
        target.merged_from = [*target.merged_from, self.id]
        target._record(ev.MERGE_RECEIVED, now, {"from_ticket_id": self.id, "from_number": self.number})


    def redact(self, actor: Actor, author_id: uuid.UUID | None, now: datetime, expected_version: int | None) -> None:
        """Erase the ticket's words (or only ``author_id``'s); closed and deleted tickets too.

        The ticket's own text fields change here; its replies, time-entry notes, e-mail ids and
        history are scrubbed by the unit of work (``redactions``). Always recorded, so that every
        accepted redaction tells downstream services to drop their copies; repeating it changes
        no data."""
        check_redactor(actor)
        self._check_version(expected_version)
        if author_id is None:
            self.title = self.description = MARKER
            if self.status_reason is not None:
                self.status_reason = MARKER
            self.email_message_id = None
        self.redactions.append(Redaction(self.id, author_id))
        self._record(ev.TICKET_REDACTED, now, {"author_id": author_id})

    def take_redactions(self) -> list[Redaction]:
        out, self.redactions = self.redactions, []
        return out

    # ---- helpers --------------------------------------------------------------------------
    def _attach(self, uploads: Iterable[Upload], *, reply_id: uuid.UUID | None, internal: bool,
                now: datetime) -> list[Attachment]:
        files = [Attachment.of(u, ticket_id=self.id, reply_id=reply_id, internal=internal, now=now) for u in uploads]
        self.new_attachments.extend(files)
        return files

    def _change_followers(self, added: list[uuid.UUID], removed: list[uuid.UUID], now: datetime) -> None:
        if not added and not removed:
            return  # nothing changes: accepted, no event
        followers = [f for f in self.follower_ids if f not in removed] + added
        if len(followers) > MAX_FOLLOWERS:
            raise InvalidInput(f"a ticket may have at most {MAX_FOLLOWERS} followers")
        self.follower_ids = followers
        self._record(ev.FOLLOWERS_CHANGED, now, {"added": added, "removed": removed})

    def _move_after_reply(self, actor: Actor, now: datetime) -> None:
        if actor.role is Role.CUSTOMER and self.status in (Status.PENDING, Status.RESOLVED):
            self._move(Status.OPEN, "customer replied", now, automatic=True)
        elif actor.is_staff and self.status is Status.NEW:
            self._move(Status.OPEN, "first staff reply", now, automatic=True)

    def _move(self, target: Status, reason: str | None, now: datetime, *, automatic: bool) -> None:
        previous = self.status
        if target is Status.RESOLVED:
            self.resolved_at = now
        elif is_reopening(previous, target):
            self.resolved_at = None
        if target is Status.CLOSED:
            self.closed_at = now
        self.status, self.status_reason, self.status_changed_at = target, reason, now
        self._record(ev.STATUS_CHANGED, now, {
            "from_status": previous.value, "to_status": target.value, "reason": reason, "automatic": automatic,
        })

    def _check_mutable(self, expected_version: int | None) -> None:
        self._check_not_closed()
        self._check_version(expected_version)

    def _check_not_closed(self) -> None:
        if self.merged_into is not None and self.status is Status.CLOSED:
            raise TicketClosed(f"the ticket is closed: it was merged into ticket {self.merged_into}")
        check_not_closed(self.status)

    def _check_version(self, expected_version: int | None) -> None:
        if expected_version is not None and expected_version != self.version:
            raise Conflict(f"expected version {expected_version}, the ticket is at {self.version}")

    def _record(self, type_: str, now: datetime, payload: dict[str, Any], *, internal: bool = False) -> None:
        self.version += 1
        self.updated_at = now
        self.pending.append(ev.DomainEvent(type_, self.id, self.version, now, payload, self.routing(), internal))

    def routing(self) -> dict[str, Any]:
        """The routing fields notification and SLA services need without querying back."""
        return {
            "id": self.id, "number": self.number, "customer_id": self.customer_id, "status": self.status,
            "priority": self.priority, "assignee_id": self.assignee_id, "category_id": self.category_id,
            "created_at": self.created_at, "first_response_at": self.first_response_at,
            "resolved_at": self.resolved_at, "closed_at": self.closed_at, "deleted": self.deleted_at is not None,
            "follower_ids": list(self.follower_ids),
        }

    def take_events(self) -> list[ev.DomainEvent]:
        """Hand over the events recorded since the last call, and forget them."""
        out, self.pending = self.pending, []
        return out

    def take_children(self) -> tuple[list[Reply], list[TimeEntry]]:
        """Hand over the replies and time entries added since loading, and forget them."""
        out = (self.new_replies, self.new_time_entries)
        self.new_replies, self.new_time_entries = [], []
        return out

    def take_attachments(self) -> tuple[list[Attachment], list[Attachment]]:
        """Hand over the attachments added and those scanned since loading, and forget them."""
        out = (self.new_attachments, list(self.scanned_attachments.values()))
        self.new_attachments, self.scanned_attachments = [], {}
        return out

    def copy(self) -> Ticket:
        """An independent copy, to roll back in memory if a handler fails unexpectedly."""
        clone = dataclasses.replace(self)
        clone.tags, clone.follower_ids = list(self.tags), list(self.follower_ids)
        clone.merged_from = list(self.merged_from)
        clone.pending, clone.new_replies = list(self.pending), list(self.new_replies)
        clone.new_time_entries = list(self.new_time_entries)
        clone.new_attachments, clone.scanned_attachments = list(self.new_attachments), dict(self.scanned_attachments)
        clone.redactions = list(self.redactions)
        return clone


_REPLY_FIELDS = tuple(f.name for f in dataclasses.fields(Reply))


def _normalise_tags(tags: list[str]) -> list[str]:
    return sorted(set(tags))
