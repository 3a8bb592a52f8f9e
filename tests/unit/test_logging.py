"""One log set-up: library chatter off, every library line through the same renderer."""

from __future__ import annotations

import json
import logging

import pytest

from service.logging import configure_logging, get_logger


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_per_task_and_per_connection_info_chatter_is_off(restore_root: None) -> None:
    configure_logging("json", "INFO")
    for chatty in ("aiokafka.consumer.group_coordinator", "aiokafka.conn", "faststream.tickets",
                   "faststream.access.kafka"):
        assert not logging.getLogger(chatty).isEnabledFor(logging.INFO), chatty
        assert logging.getLogger(chatty).isEnabledFor(logging.WARNING), chatty
    assert logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)


def test_library_and_service_lines_render_as_the_same_json(restore_root: None, capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    configure_logging("json", "INFO")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade %s", "x")
    get_logger("service.test").warning("something", ticket_id="t")
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("service.test").exception("failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["event"] for line in lines] == ["Running upgrade x", "something", "failed"]
    assert lines[1]["ticket_id"] == "t" and lines[1]["level"] == "warning"
    assert lines[2]["exception"][0]["exc_type"] == "ValueError"
