"""Tracing: W3C trace context in, spans for batches, commands, queries and the relay's publish.

Off by default. The exporter comes from the standard OpenTelemetry variables:
``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``; unset or ``none``: no export — this service does
not follow the SDK's "otlp by default", so that a plain deploy sends nothing anywhere),
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` and friends for the
exporter, ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` for the resource, ``OTEL_BSP_*``
for batching, ``OTEL_TRACES_SAMPLER`` for sampling, ``OTEL_SDK_DISABLED=true`` to force it off.

With tracing off the trace context is still propagated: a command's ``traceparent`` is stored with
its events and result and sent with them, so downstream traces stay connected.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracerProvider, Span, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from service.logging import get_logger

log = get_logger(__name__)
_PROPAGATOR = TraceContextTextMapPropagator()
INSTRUMENTATION = "ticket-service"


def tracer_provider_from_env(environ: dict[str, str] | None = None) -> TracerProvider:
    """An SDK tracer provider exporting as the ``OTEL_*`` variables say, or a no-op one."""
    env = os.environ if environ is None else environ
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "none").split(",") if n.strip()]
    names = [n for n in names if n != "none"]
    if not names or env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return NoOpTracerProvider()
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    named = env.get("OTEL_SERVICE_NAME") or "service.name=" in env.get("OTEL_RESOURCE_ATTRIBUTES", "")
    provider = SdkTracerProvider(resource=Resource.create({} if named else {"service.name": INSTRUMENTATION}))
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    log.info("tracing on", exporters=names)
    return provider


def _exporter(name: str) -> Any:
    """The exporter registered under ``name`` (entry point group ``opentelemetry_traces_exporter``,
    the SDK's own mechanism: ``otlp``, ``otlp_proto_http``, ``console``, …)."""
    from importlib.metadata import entry_points

    for entry in entry_points(group="opentelemetry_traces_exporter"):
        if entry.name == name:
            return entry.load()()
    raise ValueError(f"OTEL_TRACES_EXPORTER names {name!r}, which is not installed")


def extract(headers: dict[str, str]) -> Context:
    """The trace context of an incoming message (an empty context when it has none or a bad one)."""
    return _PROPAGATOR.extract(headers)


def carrier(span: Span | None = None, context: Context | None = None) -> tuple[str | None, str | None]:
    """``(traceparent, tracestate)`` of ``span`` (or of ``context``); ``(None, None)`` without a trace."""
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span) if span is not None else context)
    return headers.get("traceparent"), headers.get("tracestate")


def links(contexts: Iterable[Context], limit: int = 128) -> list[trace.Link]:
    out = []
    for ctx in contexts:
        span_context = trace.get_current_span(ctx).get_span_context()
        if span_context.is_valid:
            out.append(trace.Link(span_context))
            if len(out) >= limit:
                break
    return out
