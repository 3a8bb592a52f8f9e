"""The dead-letter tools on a real broker, on topics of their own: replay sends letters back to the
partition they came from with their original headers (no dlq.* but dlq.replayed_from), skips what
cannot be replayed, and list/export see every letter."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from ticket_contracts import topics

from service.ops import dlq
from service.settings import load_settings
from tests.support.infra import unique_suffix
from tests.support.streams import TopicReader
from tests.support.waiting import eventually
from service.devstack import ensure_topics


def _letter_headers(source: str, partition: int, offset: int, error: str, at: datetime) -> list[tuple[str, bytes]]:
    return [(topics.DLQ_HEADER_ERROR_CLASS, error.encode()), (topics.DLQ_HEADER_ERROR_MESSAGE, b"why"),
            (topics.DLQ_HEADER_SOURCE_TOPIC, source.encode()), (topics.DLQ_HEADER_SOURCE_PARTITION, str(partition).encode()),
            (topics.DLQ_HEADER_SOURCE_OFFSET, str(offset).encode()), (topics.DLQ_HEADER_FAILED_AT, at.isoformat().encode())]


async def test_replay_all_list_and_export_on_a_real_broker(kafka_bootstrap: str) -> None:
    source = f"ops-test.{unique_suffix()}"
    dead = topics.dlq(source)
    await ensure_topics(kafka_bootstrap, [source, dead], partitions=3)
    settings = load_settings(kafka_bootstrap=kafka_bootstrap)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    original = [("reply_to", b"tickets.replies.x"), ("x-dup", b"1"), ("x-dup", b"2"), ("x-bin", b"\xff")]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i, (error, partition) in enumerate([("Boom", 2), ("Boom", 1), ("Other", 0)]):
            await producer.send_and_wait(dead, f"value-{i}".encode(), key=f"key-{i}".encode(), partition=0,
                                         headers=original + _letter_headers(source, partition, 10 + i, error,
                                                                            t0 + timedelta(minutes=i)))
        dropped = original + _letter_headers(source, 0, 99, "MessageTooLarge", t0) + \
            [(topics.DLQ_HEADER_PAYLOAD_DROPPED, b"9999999 bytes")]
        await producer.send_and_wait(dead, b"", key=b"key-big", partition=0, headers=dropped)
    finally:
        await producer.stop()

    summaries = {s.error_class: s for s in await dlq.summarise(settings, [dead])}
    assert {c: s.count for c, s in summaries.items()} == {"Boom": 2, "Other": 1, "MessageTooLarge": 1}
    assert (summaries["Boom"].oldest, summaries["Boom"].newest) == (t0, t0 + timedelta(minutes=1))

    out = io.StringIO()
    assert await dlq.export(settings, dead, dlq.Selection(error_class="Boom"), out) == 2
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["value"] for x in lines] == ["value-0", "value-1"]
    assert lines[0]["headers"][:4] == [{"name": "reply_to", "value": "tickets.replies.x"}, {"name": "x-dup", "value": "1"},
                                       {"name": "x-dup", "value": "2"}, {"name": "x-bin", "value_base64": "/w=="}]

    dry = await dlq.replay(settings, dead, dlq.Selection(), dry_run=True)
    assert len(dry.sent) == 4 and not dry.skipped

    reader = await TopicReader(kafka_bootstrap, source).start()
    try:
        report = await dlq.replay(settings, dead, dlq.Selection())
        assert [r.letter for r in report.skipped] == [f"{dead}:0:3"], "the letter without its value"
        assert [(r.letter, r.partition) for r in report.sent] == [(f"{dead}:0:0", 2), (f"{dead}:0:1", 1),
                                                                   (f"{dead}:0:2", 0)]
        records = await eventually(lambda: len(reader.records) >= 3 and reader.records, what="replayed records")
    finally:
        await reader.stop()
    by_value = {r.value: r for r in records}
    assert set(by_value) == {b"value-0", b"value-1", b"value-2"}
    for i in range(3):
        record = by_value[f"value-{i}".encode()]
        assert record.key == f"key-{i}".encode() and record.partition == [2, 1, 0][i]
        assert list(record.headers) == original + [(topics.DLQ_HEADER_REPLAYED_FROM, f"{dead}:0:{i}".encode())]


def test_letter_ids_and_topic_names() -> None:
    assert dlq.resolve_topic("commands") == topics.dlq(topics.COMMANDS)
    assert dlq.resolve_topic(topics.QUERIES) == topics.dlq(topics.QUERIES)
    assert dlq.resolve_topic(topics.dlq(topics.USER_EVENTS)) == topics.dlq(topics.USER_EVENTS)
    assert dlq.parse_letter_id("3:17", "a.dlq") == (3, 17)
    assert dlq.parse_letter_id("a.dlq:3:17", "a.dlq") == (3, 17)
    for bad, topic in (("x", "a.dlq"), ("b.dlq:1:2", "a.dlq"), ("1:two", "a.dlq")):
        try:
            dlq.parse_letter_id(bad, topic)
        except dlq.DlqError:
            continue
        raise AssertionError(f"{bad} accepted")
    try:
        dlq.resolve_topic(topics.EVENTS)
    except dlq.DlqError:
        pass
    else:
        raise AssertionError("the events topic is not a DLQ")
