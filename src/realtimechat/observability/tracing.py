"""OpenTelemetry tracing across HTTP, WebSocket sends, the database and Redis.

Off unless RTC_OTEL_ENDPOINT names an OTLP/HTTP collector. With it off, the
OpenTelemetry API hands out no-op spans, so instrumented code costs next to nothing.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)
tracer = trace.get_tracer("realtimechat")

_provider: TracerProvider | None = None


def configure_tracing(endpoint: str | None, service: str) -> TracerProvider | None:
    """Export spans to `endpoint` (OTLP over HTTP) and instrument Redis and httpx."""
    global _provider
    if not endpoint or _provider is not None:
        return _provider
    # Imported only when tracing is on: the SDK and exporter cost start-up time.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {"service.name": service, "service.instance.id": socket.gethostname()}
    )
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    RedisInstrumentor().instrument()
    HTTPXClientInstrumentor().instrument()
    _provider = provider
    log.info("tracing on: exporting spans to %s", endpoint)
    return provider


def enabled() -> bool:
    """Spans are exported: worth building their attributes."""
    return _provider is not None


def instrument_app(app: Any) -> None:
    """HTTP server spans for every route but the probes (when tracing is on)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=_provider, excluded_urls="livez,readyz,metrics"
    )


def instrument_engine(engine: Engine) -> None:
    """Database spans for every statement on this engine (when tracing is on)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=_provider)


def shutdown() -> None:
    """Flush spans still buffered (at the end of a drain)."""
    if _provider is not None:
        _provider.shutdown()
