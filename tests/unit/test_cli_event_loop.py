"""`tickets run` runs on uvloop unless TICKETS_EVENT_LOOP=asyncio."""

from __future__ import annotations

import asyncio

import uvloop

from service.cli import event_loop_runner
from service.settings import load_settings


def test_uvloop_is_the_default_and_asyncio_can_be_chosen() -> None:
    assert event_loop_runner(load_settings()) is uvloop.run
    assert event_loop_runner(load_settings(event_loop="asyncio")) is asyncio.run


def test_the_uvloop_runner_runs_a_coroutine_on_a_uvloop_loop() -> None:
    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert issubclass(event_loop_runner(load_settings())(loop_type()), uvloop.Loop)
