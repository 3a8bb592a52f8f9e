"""`tickets run` freezes its start-up heap once the service is ready; in-process runs do not."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from service import app as service_app
from service.settings import load_settings


class RecordingApp:
    """Stands in for the FastStream app: runs its after-startup hooks in order, like FastStream."""

    def __init__(self, hooks: list[Callable[[], Any]]) -> None:
        self.hooks = hooks
        self.frozen_after: list[int] = []

    def after_startup(self, hook: Callable[[], Any]) -> Callable[[], Any]:
        self.hooks.append(hook)
        return hook

    async def run(self) -> None:
        for hook in self.hooks:
            hook()
            self.frozen_after.append(gc.get_freeze_count())


def test_run_service_freezes_the_heap_after_the_service_started(monkeypatch: pytest.MonkeyPatch) -> None:
    gc.unfreeze()
    recording = RecordingApp([lambda: None])  # create_app's own hooks (start_background) come first
    monkeypatch.setattr(service_app, "create_app", lambda settings, **_: (recording, None))
    monkeypatch.setattr(service_app, "configure_logging", lambda *a: None)
    try:
        asyncio.run(service_app.run_service(load_settings()))
        assert recording.frozen_after[0] == 0, "frozen before the service was ready"
        assert recording.frozen_after[-1] > 1000, "the start-up heap was not frozen"
    finally:
        gc.unfreeze()


def test_freezing_collects_startup_garbage_first() -> None:
    gc.unfreeze()

    class Cycle:
        pass

    cycle = Cycle()
    cycle.me = cycle  # type: ignore[attr-defined]
    alive = weakref.ref(cycle)
    del cycle
    try:
        service_app.freeze_startup_heap()
        assert alive() is None, "garbage was frozen instead of collected"
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
