"""Message contracts of the ticket service: import these to talk to it over Kafka."""

from . import topics
from .answers import (
    Answer,
    AnswerBase,
    ErrorAnswer,
    HistoryAnswer,
    HistoryEntry,
    SearchAnswer,
    SearchItem,
    TicketAnswer,
    TicketPageAnswer,
    ThreadAnswer,
    TimeEntriesAnswer,
    parse_answer,
)
from .commands import (
    AddReply,
    AssignTicket,
    ChangeStatus,
    Command,
    CommandBase,
    CreateTicket,
    DeleteTicket,
    IngestEmail,
    LogTime,
    RedactTicket,
    RestoreTicket,
    UpdateTicket,
    parse_command,
)
from .envelope import Actor, Message, Request, new_id, utcnow
from .errors import ReasonCode
from .events import Event, EventBase, parse_event
from .model import Channel, Priority, ReplySource, Role, Status
from .ops import ErasureProgress, Heartbeat
from .queries import (
    GetTicket,
    ListTickets,
    MyTickets,
    Query,
    QueryBase,
    SearchTickets,
    TicketHistory,
    TicketThread,
    TicketTimeEntries,
    parse_query,
)
from .results import CommandResult, parse_result
from .users import UserDeactivated, UserErased, UserEvent, UserUpserted, parse_user_event
from .views import ReplyView, TicketSnapshot, TicketView, TimeEntryView

__all__ = [name for name in dir() if not name.startswith("_")]
