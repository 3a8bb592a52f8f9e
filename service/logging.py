"""structlog set-up: JSON when not on a TTY (production), readable on a TTY (development).

Log lines carry ids (``message_id``, ``correlation_id``, ``ticket_id``, actor id) bound by the
entrypoints — never message bodies, reply text or tokens. Tracebacks, in both renderers, show
frames (file, line, function, source line) and exception class names only: never local variables
(which hold records, tokens and settings) and never exception messages (``int('<a title>')`` puts
the title into its message).
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType
from typing import Any

import structlog


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, withhold_exception_details,
                        renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # FastStream logs every message it handles at INFO; keep its noise at WARNING.
    for noisy in ("faststream", "aiokafka", "faststream.access.kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def withhold_exception_details(logger: Any, name: str, event_dict: Any) -> Any:
    """Replace ``exc_info`` by a traceback without locals or exception messages (see the module doc)."""
    exc_info = event_dict.pop("exc_info", None)
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if isinstance(exc_info, tuple) and exc_info[1] is not None:
        event_dict["exception"] = safe_traceback(exc_info[1])
    return event_dict


def safe_traceback(error: BaseException) -> str:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts = []
    for exc in reversed(chain):
        if parts:
            parts.append("\nwhich led to:\n")
        parts.append("Traceback (most recent call last):\n")
        tb: TracebackType | None = exc.__traceback__
        parts.extend(traceback.StackSummary.extract(traceback.walk_tb(tb), capture_locals=False).format())
        parts.append(f"{type(exc).__module__}.{type(exc).__qualname__} (message withheld)\n")
    return "".join(parts).rstrip("\n")


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
