"""Liveness and readiness, JSON with a status per dependency; metrics for the operator.

`/livez` and the statuses of `/readyz` are open (load balancers and orchestrators probe
them); `/metrics` and the details of `/readyz` (pool sizes, latencies, error names,
job counts) are the operator's: they need the bearer token RTC_METRICS_TOKEN.
The checks themselves are observability/health.py's.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from starlette.responses import Response

from realtimechat.domain.errors import NotFound, Unauthorized
from realtimechat.edge.deps import Config, NodeHealth
from realtimechat.edge.responses import json
from realtimechat.observability import metrics
from realtimechat.settings import Settings

router = APIRouter(tags=["health"])


@router.get("/livez")
async def livez(health: NodeHealth) -> Response:
    """The process is up and its event loop turns."""
    return json(health.live())


def operator(request: Request, settings: Settings) -> bool | None:
    """Whether the request carries RTC_METRICS_TOKEN; None when no token is configured."""
    expected = settings.metrics_token
    if expected is None or not expected.get_secret_value():
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.get_secret_value().encode()
    )


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request, settings: Config, health: NodeHealth) -> Response:
    """Prometheus text exposition; stored job counts are read for each scrape."""
    allowed = operator(request, settings)
    if allowed is None:
        raise NotFound("not found")  # no token configured: there are no metrics here
    if not allowed:
        raise Unauthorized("send Authorization: Bearer <RTC_METRICS_TOKEN>")
    await health.refresh_metrics()
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


@router.get("/readyz")
async def readyz(request: Request, settings: Config, health: NodeHealth) -> Response:
    """Ready for traffic: each dependency checked with a short timeout; 503 while draining."""
    report = await health.ready()
    checks = report.checks if operator(request, settings) else report.statuses()
    return json({"status": report.status, "checks": checks}, report.http_status)
