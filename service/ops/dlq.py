"""Dead letters: count, show, export and replay the records of the ``<input topic>.dlq`` topics.

A letter is addressed as ``<dlq topic>:<partition>:<offset>`` (topic names cannot contain ``:``).
Replay sends a letter's key and value back to its source topic, on the partition it came from, with
its original headers (every ``dlq.*`` header removed) plus ``dlq.replayed_from`` naming the letter.
Replaying twice is safe: commands are idempotent by ``message_id`` (the inbox re-sends the stored
result), a query is answered again, and user events apply in ``occurred_at`` order.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from ticket_contracts import topics

from service.ops.kafka import producer, read_all, reader, topic_partitions
from service.settings import Settings

#: Short names an operator may type instead of a topic.
ALIASES = {"commands": topics.COMMANDS, "queries": topics.QUERIES, "users": topics.USER_EVENTS,
           "user_events": topics.USER_EVENTS}


class DlqError(ValueError):
    """A request the tools cannot carry out (unknown topic, malformed letter id)."""


def resolve_topic(name: str) -> str:
    """The DLQ topic meant by ``name``: a DLQ topic, its source topic, or an alias (``commands``)."""
    name = ALIASES.get(name, name)
    if name in topics.DLQ_TOPICS:
        return name
    if name in topics.INPUT_TOPICS:
        return topics.dlq(name)
    raise DlqError(f"{name!r} is not a dead-letter topic of the service (one of: {', '.join(topics.DLQ_TOPICS)};"
                   f" or {', '.join(ALIASES)})")


def source_of(dlq_topic: str) -> str:
    if not dlq_topic.endswith(".dlq"):
        raise DlqError(f"{dlq_topic!r} is not a dead-letter topic")
    return dlq_topic.removesuffix(".dlq")


def parse_letter_id(text: str, dlq_topic: str) -> tuple[int, int]:
    """``P:O`` or ``<topic>:P:O`` → (partition, offset)."""
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and parts[0] != dlq_topic:
        raise DlqError(f"letter {text!r} is not on {dlq_topic}")
    try:
        partition, offset = int(parts[-2]), int(parts[-1])
    except (ValueError, IndexError):
        raise DlqError(f"a letter is <partition>:<offset> or <topic>:<partition>:<offset>, not {text!r}") from None
    return partition, offset


@dataclass(frozen=True)
class Letter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]

    @classmethod
    def of(cls, record: Any) -> Letter:
        return cls(record.topic, record.partition, record.offset, record.timestamp, record.key, record.value,
                   tuple(record.headers or ()))

    @property
    def id(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (the dead-lettering's own comes last), as text."""
        for key, value in reversed(self.headers):
            if key == name:
                return None if value is None else value.decode(errors="replace")
        return None

    @property
    def error_class(self) -> str:
        return self.header(topics.DLQ_HEADER_ERROR_CLASS) or "(none)"

    @property
    def failed_at(self) -> datetime:
        """When it was dead-lettered: the ``dlq.failed_at`` header, else the record's timestamp."""
        stamp = self.header(topics.DLQ_HEADER_FAILED_AT)
        if stamp:
            try:
                return datetime.fromisoformat(stamp)
            except ValueError:
                pass
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    @property
    def original_headers(self) -> list[tuple[str, bytes | None]]:
        """The headers the record came with: everything but ``dlq.*``."""
        return [(k, v) for k, v in self.headers if not k.startswith(topics.DLQ_HEADER_PREFIX)]

    def as_json(self, *, body: bool = True) -> dict[str, Any]:
        """One JSON Lines record: text where the bytes are UTF-8, else a ``…_base64`` field instead."""
        out: dict[str, Any] = {"letter": self.id, "topic": self.topic, "partition": self.partition,
                               "offset": self.offset, "timestamp": _iso(self.timestamp_ms),
                               "error_class": self.header(topics.DLQ_HEADER_ERROR_CLASS),
                               "source_topic": self.header(topics.DLQ_HEADER_SOURCE_TOPIC)}
        out |= _bytes_field("key", self.key)
        out["headers"] = [{"name": k} | _bytes_field("value", v) for k, v in self.headers]
        if body:
            out |= _bytes_field("value", self.value)
        return out


@dataclass(frozen=True)
class Selection:
    """Which letters of a topic: by id, by error class, at most ``limit`` (None: all)."""

    letters: frozenset[tuple[int, int]] = frozenset()
    error_class: str | None = None
    limit: int | None = None

    def matches(self, letter: Letter) -> bool:
        if self.letters and (letter.partition, letter.offset) not in self.letters:
            return False
        return self.error_class is None or letter.error_class == self.error_class


async def letters(settings: Settings, dlq_topic: str, selection: Selection = Selection()) -> AsyncIterator[Letter]:
    """The selected letters in partition, then offset order."""
    wanted = {p for p, _ in selection.letters} or None
    count = 0
    async with reader(settings) as consumer:
        async for record in read_all(consumer, dlq_topic, wanted):
            letter = Letter.of(record)
            if selection.matches(letter):
                yield letter
                count += 1
                if selection.limit is not None and count >= selection.limit:
                    return


@dataclass
class Summary:
    topic: str
    error_class: str | None
    count: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None

    def add(self, letter: Letter) -> None:
        at = letter.failed_at
        self.count += 1
        self.oldest = at if self.oldest is None or at < self.oldest else self.oldest
        self.newest = at if self.newest is None or at > self.newest else self.newest

    def as_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "error_class": self.error_class, "count": self.count,
                "oldest": self.oldest.isoformat() if self.oldest else None,
                "newest": self.newest.isoformat() if self.newest else None}


async def summarise(settings: Settings, dlq_topics: Iterable[str]) -> list[Summary]:
    """Per topic and error class: how many letters, the oldest and the newest."""
    found: list[Summary] = []
    for topic in dlq_topics:
        by_class: dict[str, Summary] = {}
        async for letter in letters(settings, topic):
            by_class.setdefault(letter.error_class, Summary(topic, letter.error_class)).add(letter)
        found.extend(by_class[c] for c in sorted(by_class))
    return found


@dataclass
class Replayed:
    letter: str
    topic: str
    partition: int | None = None
    offset: int | None = None
    skipped: str | None = None  # why it was not sent


@dataclass
class ReplayReport:
    sent: list[Replayed] = field(default_factory=list)
    skipped: list[Replayed] = field(default_factory=list)


def replay_headers(letter: Letter) -> list[tuple[str, bytes | None]]:
    return [*letter.original_headers, (topics.DLQ_HEADER_REPLAYED_FROM, letter.id.encode())]


async def replay(settings: Settings, dlq_topic: str, selection: Selection, *, dry_run: bool = False) -> ReplayReport:
    """Send the selected letters back to their source topic, in the order they were dead-lettered
    per partition; await every acknowledgement before reporting."""
    target = source_of(dlq_topic)
    report = ReplayReport()
    chosen = [letter async for letter in letters(settings, dlq_topic, selection)]
    if dry_run or not chosen:
        report.sent = [Replayed(letter.id, target) for letter in chosen]
        return report
    partitions = await topic_partitions(settings, target)
    async with producer(settings) as out:
        pending = []
        for letter in chosen:
            if (why := _unreplayable(letter, target)) is not None:
                report.skipped.append(Replayed(letter.id, target, skipped=why))
                continue
            source_partition = letter.header(topics.DLQ_HEADER_SOURCE_PARTITION)
            partition = int(source_partition) if source_partition and source_partition.isdigit() else None
            future = await out.send(target, letter.value, key=letter.key, headers=replay_headers(letter),
                                    partition=partition if partition in partitions else None)
            pending.append((letter, future))
        for letter, future in pending:
            metadata = await future
            report.sent.append(Replayed(letter.id, target, metadata.partition, metadata.offset))
    return report


def _unreplayable(letter: Letter, target: str) -> str | None:
    if letter.header(topics.DLQ_HEADER_PAYLOAD_DROPPED) is not None:
        return "its value was too large for the DLQ and was dropped"
    source = letter.header(topics.DLQ_HEADER_SOURCE_TOPIC)
    if source is not None and source != target:
        return f"its {topics.DLQ_HEADER_SOURCE_TOPIC} header names {source!r}, not {target}"
    if letter.key is None and letter.value is None:
        return "it has neither key nor value"
    return None


async def export(settings: Settings, dlq_topic: str, selection: Selection, out: TextIO) -> int:
    """Write the selected letters as JSON Lines; returns how many."""
    count = 0
    async for letter in letters(settings, dlq_topic, selection):
        out.write(json.dumps(letter.as_json(), ensure_ascii=False) + "\n")
        count += 1
    return count


def _bytes_field(name: str, value: bytes | None) -> dict[str, Any]:
    if value is None:
        return {name: None}
    try:
        return {name: value.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(value).decode()}


def _iso(timestamp_ms: int) -> str:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat()
