"""structlog set-up: JSON when not on a TTY (production), readable on a TTY (development).

One set-up for every process and every line: the service, ``tickets migrate`` (Alembic's lines),
the embedded dev stack and the libraries all go through the same handler and renderer, so JSON
mode is JSON everywhere — a failure's traceback included, as the ``exception`` field (frames only,
never local variables) — and the dev console has one format.

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
from structlog.tracebacks import ExceptionDictTransformer

#: Libraries whose INFO lines are per-task or per-connection chatter: FastStream's per-message and
#: per-task lines ("callback for Task-… is being executed"), aiokafka's group and fetch lines.
QUIET = ("faststream", "faststream.access.kafka", "aiokafka", "alembic.runtime.plugins")


def use_json(fmt: str) -> bool:
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


def configure_logging(fmt: str = "auto", level: str = "INFO") -> None:
    """Idempotent: route the root logger (and so every library) through structlog."""
    as_json = use_json(fmt)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # Tracebacks are rendered by the handler (so one process could render both formats): in JSON a
    # structured field, on the console text; both without locals or exception messages.
    exceptions: list[structlog.types.Processor] = (
        [structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
         withhold_exception_messages] if as_json else [withhold_exception_details])
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exceptions, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Alembic's own loggers must not keep handlers of their own (alembic.ini's fileConfig would add
    # them): every line once, through the root handler.
    for name in ("alembic", "sqlalchemy.engine"):
        lib = logging.getLogger(name)
        lib.handlers[:] = []
        lib.propagate = True


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


def withhold_exception_messages(logger: Any, name: str, event_dict: Any) -> Any:
    """In a structured ``exception`` field: keep types and frames, drop messages, notes and locals."""
    for entry in event_dict.get("exception") or ():
        if isinstance(entry, dict):
            entry["exc_value"] = "(message withheld)"
            entry.pop("exc_notes", None)
            entry.pop("syntax_error", None)
            for frame in entry.get("frames") or ():
                if isinstance(frame, dict):
                    frame.pop("locals", None)
    return event_dict


def safe_traceback(error: BaseException) -> str:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
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
