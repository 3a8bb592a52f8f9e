"""Run a coroutine from synchronous code, whether or not the calling thread has a running loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")


def run_coroutine_in_thread(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` to completion on a private event loop in a worker thread.

    Unlike a bare ``asyncio.run`` this neither fails inside a running loop nor clears the caller's
    current event loop (which pytest-asyncio relies on).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="devstack") as pool:
        return pool.submit(asyncio.run, coro).result()
