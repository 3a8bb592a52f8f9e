"""Commands sent to ``tickets.commands.v1`` (SPEC §6), discriminated by ``type``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    TypeAdapter,
    model_serializer,
    model_validator,
)

from .attachments import Attachments, ScanVerdict
from .envelope import Request
from .model import (
    Channel,
    Description,
    Minutes,
    Note,
    Priority,
    Reason,
    ReplyBody,
    ReplySource,
    Status,
    Tags,
    Title,
    Version,
)


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TicketPayload(Payload):
    ticket_id: uuid.UUID
    expected_version: Version | None = Field(
        None, description="Optimistic concurrency: rejected with `conflict` unless the ticket is at this version."
    )


class CreateTicketPayload(Payload):
    ticket_id: uuid.UUID = Field(description="Chosen by the client (UUIDv7 preferred) so retries are idempotent.")
    customer_id: uuid.UUID | None = Field(None, description="Defaults to the customer actor's own.")
    title: Title
    description: Description
    priority: Priority = Priority.NORMAL
    category_id: uuid.UUID | None = None
    channel: Channel = Channel.API
    tags: Tags = []
    attachments: Attachments = Field(default_factory=list, description="The description's attachments (≤ 20).")


class UpdateTicketPayload(TicketPayload):
    """Only the fields present are changed; `category_id: null` clears the category."""

    title: Title | None = None
    description: Description | None = None
    priority: Priority | None = None
    category_id: uuid.UUID | None = None
    tags: Tags | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> UpdateTicketPayload:
        if not self.changed_fields():
            raise ValueError("an update must name at least one of title, description, priority, category_id, tags")
        for name in ("title", "description", "priority", "tags"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    @model_serializer(mode="wrap")
    def _only_fields_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Serialise only the fields that were given: an absent field keeps its value, while an
        explicit ``category_id: null`` clears it — so the two must not look alike on the wire."""
        data = handler(self)
        return {k: v for k, v in data.items() if k == "ticket_id" or k in self.model_fields_set}

    def changed_fields(self) -> dict[str, object]:
        names = ("title", "description", "priority", "category_id", "tags")
        return {n: getattr(self, n) for n in names if n in self.model_fields_set}


class ChangeStatusPayload(TicketPayload):
    status: Status
    reason: Reason | None = None


class AssignTicketPayload(TicketPayload):
    assignee_id: uuid.UUID | None = Field(description="An active agent or admin, or null to unassign.")


class AddReplyPayload(TicketPayload):
    reply_id: uuid.UUID
    body: ReplyBody
    internal: bool = False
    source: ReplySource = ReplySource.API
    attachments: Attachments = Field(
        default_factory=list, description="The reply's attachments (≤ 20); an internal note's are staff-only."
    )


class LogTimePayload(TicketPayload):
    entry_id: uuid.UUID
    minutes: Minutes
    note: Note | None = None


class DeleteTicketPayload(TicketPayload):
    reason: Reason


class RestoreTicketPayload(TicketPayload):
    pass


#: Most users added or removed by one ``ticket.set_followers``.
FOLLOWERS_CHANGE_MAX = 50


class SetFollowersPayload(TicketPayload):
    """Followers are notified about the ticket: staff, or users of the ticket's own customer."""

    add: list[uuid.UUID] = Field(default_factory=list, max_length=FOLLOWERS_CHANGE_MAX)
    remove: list[uuid.UUID] = Field(default_factory=list, max_length=FOLLOWERS_CHANGE_MAX)

    @model_validator(mode="after")
    def _changes_something(self) -> SetFollowersPayload:
        if not self.add and not self.remove:
            raise ValueError("set_followers needs at least one user id in add or remove")
        if set(self.add) & set(self.remove):
            raise ValueError("a user cannot be both added and removed")
        return self


class RecordAttachmentScanPayload(TicketPayload):
    """A malware scanner's verdict on one attachment (system actors only)."""

    attachment_id: uuid.UUID
    verdict: ScanVerdict
    scanner: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] = Field(
        description="Which scanner (and signature version) decided."
    )
    scanned_at: AwareDatetime


class MergeTicketPayload(TicketPayload):
    """Merge the ticket ``ticket_id`` (the source, closed by the merge) into ``into_ticket_id``
    (the target, which lives on). ``expected_version`` is the source's."""

    into_ticket_id: uuid.UUID = Field(description="The ticket that absorbs the source; same customer, not closed.")
    reason: Reason | None = None


class RedactTicketPayload(TicketPayload):
    """Erase the words of a ticket (admins and ``system`` actors; closed and deleted tickets too)."""

    author_id: uuid.UUID | None = Field(None, description=(
        "Only what this user wrote on the ticket: their replies and time-entry notes, their words in the "
        "history, and the title, description or status reason when they wrote the current one. "
        "Absent: the whole ticket (title, description, status reason, every reply, note and attachment "
        "reference, its e-mail identifiers and its history's content)."))


EmailId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=998)]
#: Email bodies are accepted up to this many characters; longer ones are rejected by the service.
EMAIL_BODY_MAX = 200_000


class IngestEmailPayload(Payload):
    """An inbound support email, as the email-ingest gateway parsed it (SPEC §8)."""

    email_message_id: EmailId = Field(description="The mail's Message-ID header.")
    in_reply_to: EmailId | None = None
    references: list[EmailId] = Field(default_factory=list, max_length=100)
    from_address: Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
    subject: Annotated[str, StringConstraints(max_length=2_000)] = ""
    body: Annotated[str, StringConstraints(max_length=EMAIL_BODY_MAX)]
    received_at: AwareDatetime
    auto_submitted: bool = Field(False, description="The gateway's own verdict that the mail is automatic.")
    auto_submitted_header: str | None = Field(None, description="The raw RFC 3834 Auto-Submitted header, if any.")
    precedence_header: str | None = Field(None, description="The raw Precedence header, if any.")
    cc: list[Annotated[str, StringConstraints(strip_whitespace=True, max_length=320)]] = Field(
        default_factory=list, max_length=100,
        description="Cc addresses; active users of the sender's customer become followers of the ticket.",
    )
    attachments: Attachments = Field(
        default_factory=list, description="The mail's attachments (≤ 20), already uploaded by the gateway."
    )


class RecordOutboundEmailPayload(Payload):
    """The Message-ID of a mail the platform sent about a ticket (e.g. a notification), so that
    replies naming it in In-Reply-To/References thread to the ticket. No event, no new version."""

    ticket_id: uuid.UUID
    email_message_id: EmailId = Field(description="The sent mail's Message-ID header.")
    reply_id: uuid.UUID | None = Field(None, description="The reply the mail carried, if any.")
    sent_at: AwareDatetime


class CommandBase(Request):
    pass


class CreateTicket(CommandBase):
    type: Literal["ticket.create"] = "ticket.create"
    payload: CreateTicketPayload


class UpdateTicket(CommandBase):
    type: Literal["ticket.update"] = "ticket.update"
    payload: UpdateTicketPayload


class ChangeStatus(CommandBase):
    type: Literal["ticket.change_status"] = "ticket.change_status"
    payload: ChangeStatusPayload


class AssignTicket(CommandBase):
    type: Literal["ticket.assign"] = "ticket.assign"
    payload: AssignTicketPayload


class AddReply(CommandBase):
    type: Literal["ticket.add_reply"] = "ticket.add_reply"
    payload: AddReplyPayload


class LogTime(CommandBase):
    type: Literal["ticket.log_time"] = "ticket.log_time"
    payload: LogTimePayload


class DeleteTicket(CommandBase):
    type: Literal["ticket.delete"] = "ticket.delete"
    payload: DeleteTicketPayload


class RestoreTicket(CommandBase):
    type: Literal["ticket.restore"] = "ticket.restore"
    payload: RestoreTicketPayload


class MergeTicket(CommandBase):
    """Keyed by the source ticket id."""

    type: Literal["ticket.merge"] = "ticket.merge"
    payload: MergeTicketPayload


class RedactTicket(CommandBase):
    type: Literal["ticket.redact"] = "ticket.redact"
    payload: RedactTicketPayload


class IngestEmail(CommandBase):
    type: Literal["ticket.ingest_email"] = "ticket.ingest_email"
    payload: IngestEmailPayload


class SetFollowers(CommandBase):
    type: Literal["ticket.set_followers"] = "ticket.set_followers"
    payload: SetFollowersPayload


class RecordAttachmentScan(CommandBase):
    type: Literal["ticket.record_attachment_scan"] = "ticket.record_attachment_scan"
    payload: RecordAttachmentScanPayload


class RecordOutboundEmail(CommandBase):
    type: Literal["ticket.record_outbound_email"] = "ticket.record_outbound_email"
    payload: RecordOutboundEmailPayload


Command = Annotated[
    Union[
        CreateTicket,
        UpdateTicket,
        ChangeStatus,
        AssignTicket,
        AddReply,
        LogTime,
        DeleteTicket,
        RestoreTicket,
        IngestEmail,
        SetFollowers,
        RecordAttachmentScan,
        RecordOutboundEmail,
        MergeTicket,
        RedactTicket,
    ],
    Field(discriminator="type"),
]
#: Every command type, derived from the ``Command`` union: the one list of commands.
COMMAND_TYPES: dict[str, type[CommandBase]] = {
    m.model_fields["type"].default: m for m in get_args(get_args(Command)[0])
}
command_adapter: TypeAdapter[Command] = TypeAdapter(Command)


def parse_command(data: bytes | str) -> CommandBase:
    """Decode one command from JSON; raises pydantic.ValidationError."""
    return command_adapter.validate_json(data)  # type: ignore[return-value]
