"""Structured logs: one JSON object per line, with request, user and trace ids.

Every record, ours or a library's (uvicorn, SQLAlchemy), goes through the same
structlog processors. Secrets in URLs (signed links) and fields named like secrets
are masked as a last line of defence; message bodies are never logged by the code.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog
from opentelemetry import trace

_SECRET_KEYS = {"password", "token", "access_token", "refresh_token", "authorization",
                "secret", "sig", "body", "api_key"}  # fmt: skip
_SECRET_PARAMS = re.compile(
    r"((?:sig|X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|token|access_token)=)"
    r"[^&\s\"']+"
)

EventDict = MutableMapping[str, Any]


def add_trace_ids(_logger: Any, _name: str, event: EventDict) -> EventDict:
    """The current span's trace and span ids, when tracing is on."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


def redact(_logger: Any, _name: str, event: EventDict) -> EventDict:
    """Mask signatures in logged URLs and values of secret-named fields."""
    event.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "[redacted]"
    message = event.get("event")
    if isinstance(message, str) and "=" in message:
        event["event"] = _SECRET_PARAMS.sub(r"\1[redacted]", message)
    return event


def configure_logging(level: str, fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """Route every logger through structlog, rendering JSON lines (or console text)."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
        redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True


def bind(**values: Any) -> None:
    """Attach values (request_id, user_id) to every log line of the current task."""
    structlog.contextvars.bind_contextvars(**values)
