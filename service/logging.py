"""structlog set-up: JSON when not on a TTY (production), readable on a TTY (development).

One set-up for every process and every line: the service, ``tickets migrate`` (Alembic's lines),
the embedded dev stack and the libraries all go through the same handler and renderer, so JSON
mode is JSON everywhere — a failure's traceback included, as the ``exception`` field (frames only,
never local variables) — and the dev console has one format.

Log lines carry ids (``message_id``, ``correlation_id``, ``ticket_id``, actor id) bound by the
entrypoints — never message bodies, reply text or tokens.
"""

from __future__ import annotations

import logging
import sys

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
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if as_json:  # the traceback as a structured field; the console renderer prints its own
        shared.append(structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)))
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
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
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


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
