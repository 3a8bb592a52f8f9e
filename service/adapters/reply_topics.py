"""Which topics a ``reply_to`` header may name: the one gate for every copy sent to a client.

Only topics matching ``TICKETS_REPLY_TO_PATTERN`` (a regular expression matched against the
whole name; by default ``tickets.replies.<client>``, what ``TicketClient`` reads) are ever
written to through ``reply_to``, and never one of the service's own topics. The decoders refuse
other names, and the relay and the re-sender of stored results check again before producing,
so a pattern narrowed after a command was stored still holds.
"""

from __future__ import annotations

import re

from ticket_contracts import topics

DEFAULT_REPLY_TO_PATTERN = r"tickets\.replies\.[A-Za-z0-9._-]+"
BAD_REPLY_TO = ("reply_to is refused: the service answers only to topics matching its reply pattern "
                "(TICKETS_REPLY_TO_PATTERN, by default tickets.replies.<client>)")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_OWN_TOPICS = frozenset(topics.ALL_TOPICS) | frozenset(topics.dlq(t) for t in topics.INPUT_TOPICS)


class ReplyTopics:
    def __init__(self, pattern: str = DEFAULT_REPLY_TO_PATTERN) -> None:
        self.pattern = re.compile(pattern)

    def allows(self, topic: str | None) -> bool:
        return bool(topic) and self.problem(topic) is None  # type: ignore[arg-type]

    def problem(self, topic: str) -> str | None:
        """Why ``topic`` may not be written to, or None when it may."""
        if (not _TOPIC_NAME.fullmatch(topic) or topic in (".", "..") or topic in _OWN_TOPICS
                or not self.pattern.fullmatch(topic)):
            return BAD_REPLY_TO
        return None


DEFAULT_REPLY_TOPICS = ReplyTopics()
