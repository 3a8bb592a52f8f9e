"""TicketClient's reply topic: removed when a client with a generated id stops, kept and reused
(from its end) by a client with a fixed id."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from ticket_contracts.client import TicketClient


async def _topics(bootstrap: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_a_generated_reply_topic_is_deleted_on_close(kafka_bootstrap: str) -> None:
    async with TicketClient(kafka_bootstrap) as client:
        assert client.reply_topic in await _topics(kafka_bootstrap)
    assert client.reply_topic not in await _topics(kafka_bootstrap)


async def test_a_fixed_client_id_keeps_its_topic_and_reads_only_new_replies(kafka_bootstrap: str) -> None:
    client_id = f"fixed-{uuid.uuid4().hex[:8]}"
    async with TicketClient(kafka_bootstrap, client_id=client_id) as first:
        topic = first.reply_topic
    assert topic in await _topics(kafka_bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"causation_id": "stale"}')
    finally:
        await producer.stop()
    async with TicketClient(kafka_bootstrap, client_id=client_id) as second:
        assert second.reply_topic == topic
        assert await second._consumer.position(TopicPartition(topic, 0)) >= 1, "starts after the stale reply"
    assert topic in await _topics(kafka_bootstrap)
