"""A small asyncio client: ``send(command)`` awaits its result, ``request(query)`` its answer.

Each client reads its own reply topic (``tickets.replies.<client id>``, created on start),
so answers and results addressed to it never reach anyone else. A client with a generated id
deletes its topic when it stops; one given a ``client_id`` keeps the topic and reuses it on the
next start, reading only what arrives from then on (``delete_reply_topic`` overrides either).
Needs the ``client`` extra (aiokafka). Pass ``security=KafkaSecurity(...)`` for TLS
and/or SASL.

    async with TicketClient("localhost:9092") as client:
        result = await client.send(CreateTicket(actor=actor, payload=...))
        answer = await client.request(GetTicket(actor=actor, payload=...))
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from .answers import AnswerBase, ErrorAnswer, parse_answer
from .commands import CommandBase
from .envelope import Message
from .kafka_security import KafkaSecurity
from .queries import QueryBase
from .results import CommandResult
from .topics import COMMANDS, HEADER_CORRELATION_ID, HEADER_REPLY_TO, QUERIES


class TicketClientError(Exception):
    pass


class ReplyTimeout(TicketClientError, TimeoutError):
    """No result or answer arrived in time; the command may still be handled later."""


class QueryFailed(TicketClientError):
    def __init__(self, answer: ErrorAnswer) -> None:
        super().__init__(f"{answer.reason}: {answer.message}")
        self.answer = answer


class TicketClient:
    def __init__(self, bootstrap_servers: str, *, client_id: str | None = None, timeout: float = 30.0,
                 fetch_max_wait_ms: int = 10, delete_reply_topic: bool | None = None,
                 security: KafkaSecurity | None = None) -> None:
        self.delete_reply_topic = client_id is None if delete_reply_topic is None else delete_reply_topic
        self.client_id = client_id or uuid.uuid4().hex[:12]
        self.reply_topic = f"tickets.replies.{self.client_id}"
        self.timeout = timeout
        self._bootstrap = bootstrap_servers
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._security = security or KafkaSecurity()
        self._waiting: dict[uuid.UUID, asyncio.Future[bytes]] = {}
        self._producer: Any = None
        self._consumer: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TicketClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        secure = self._security.client_kwargs()
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, **secure)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.reply_topic, 1, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()
        self._producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, linger_ms=0, **secure)
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=self._fetch_max_wait_ms, **secure,
        )
        await self._consumer.start()
        partition = TopicPartition(self.reply_topic, 0)
        self._consumer.assign([partition])
        if not self.delete_reply_topic:  # a reused topic: what it holds answered an earlier run
            await self._consumer.seek_to_end(partition)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        for part in (self._consumer, self._producer):
            if part is not None:
                await part.stop()
        self._consumer = self._producer = self._reader = None
        for future in self._waiting.values():
            future.cancel()
        if self.delete_reply_topic:
            await self._delete_reply_topic()

    async def _delete_reply_topic(self) -> None:
        """Best effort: a broker that refuses (no DELETE permission) leaves the topic behind."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, **self._security.client_kwargs())
        try:
            await admin.start()
            await asyncio.wait_for(admin.delete_topics([self.reply_topic]), 10)
        except Exception:  # noqa: BLE001 - closing must not fail because clean-up did
            pass
        finally:
            await admin.close()

    async def publish(self, message: Message, topic: str, key: uuid.UUID | str | None = None,
                      reply: bool = True) -> None:
        """Send without waiting for the outcome (the result still goes to this client's topic)."""
        headers = [(HEADER_CORRELATION_ID, str(message.correlation_id or message.message_id).encode())]
        if reply:
            headers.append((HEADER_REPLY_TO, self.reply_topic.encode()))
        await self._producer.send_and_wait(
            topic, message.model_dump_json().encode(), key=str(key).encode() if key else None, headers=headers
        )

    async def send(self, command: CommandBase, timeout: float | None = None) -> CommandResult:
        """Send a command and await its result (accepted or rejected)."""
        key = getattr(getattr(command, "payload", None), "ticket_id", None)
        raw = await self._round_trip(command, COMMANDS, key, timeout)
        return CommandResult.model_validate_json(raw)

    async def request(self, query: QueryBase, timeout: float | None = None, *, raise_on_error: bool = False
                      ) -> AnswerBase:
        """Send a query and await its answer; an ``ErrorAnswer`` is returned (or raised if asked)."""
        key = getattr(getattr(query, "payload", None), "ticket_id", None) or query.actor.user_id
        answer = parse_answer(await self._round_trip(query, QUERIES, key, timeout))
        if raise_on_error and isinstance(answer, ErrorAnswer):
            raise QueryFailed(answer)
        return answer

    async def _round_trip(self, message: Message, topic: str, key: Any, timeout: float | None) -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[message.message_id] = future
        try:
            await self.publish(message, topic, key)
            return await asyncio.wait_for(future, timeout or self.timeout)
        except TimeoutError as error:
            raise ReplyTimeout(f"no reply to {message.type} {message.message_id} within "
                               f"{timeout or self.timeout}s") from error
        finally:
            self._waiting.pop(message.message_id, None)

    async def _read(self) -> None:
        import json

        while True:
            batches = await self._consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    try:
                        cause = uuid.UUID(json.loads(record.value)["causation_id"])
                    except (ValueError, KeyError, TypeError):
                        continue
                    future = self._waiting.get(cause)
                    if future is not None and not future.done():
                        future.set_result(record.value)
