"""Liveness and readiness, JSON with a status per dependency; metrics for the operator.

`/livez` and the statuses of `/readyz` are open (load balancers and orchestrators probe
them); `/metrics` and the details of `/readyz` (pool sizes, latencies, error names,
job counts) are the operator's: they need the bearer token RTC_METRICS_TOKEN.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from realtimechat.domain.errors import NotFound, Unauthorized
from realtimechat.edge.auth import deps_of
from realtimechat.edge.responses import json
from realtimechat.observability import metrics
from realtimechat.services.stats import refresh_metrics

router = APIRouter(tags=["health"])


@router.get("/livez")
async def livez() -> Response:
    """The process is up and its event loop turns."""
    return json({"status": "ok"})


def operator(request: Request) -> bool | None:
    """Whether the request carries RTC_METRICS_TOKEN; None when no token is configured."""
    expected = deps_of(request).settings.metrics_token
    if expected is None or not expected.get_secret_value():
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.get_secret_value().encode()
    )


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition; stored job counts are read for each scrape."""
    allowed = operator(request)
    if allowed is None:
        raise NotFound("not found")  # no token configured: there are no metrics here
    if not allowed:
        raise Unauthorized("send Authorization: Bearer <RTC_METRICS_TOKEN>")
    deps = deps_of(request)
    with contextlib.suppress(Exception):  # a scrape must not fail with the database
        await asyncio.wait_for(
            refresh_metrics(deps.uow, deps.db.pool_status), deps.settings.db.health_timeout_s
        )
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready for traffic: each dependency checked with a short timeout; 503 while draining."""
    deps = deps_of(request)
    checks: dict[str, dict[str, object]] = {}
    started = time.perf_counter()
    try:
        await asyncio.wait_for(deps.db.ping(), deps.settings.db.health_timeout_s)
        checks["database"] = {
            "status": "ok",
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "pool": deps.db.pool_status(),
        }
    except Exception as exc:
        checks["database"] = {
            "status": "down",
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            "detail": exc.__class__.__name__,
        }
    checks["bus"] = await _bus(request)
    limits_status, limits_detail = deps.limiter.health()
    checks["rate_limits"] = {
        "status": limits_status,
        **({"detail": limits_detail} if limits_detail else {}),
    }
    checks["storage"] = await _storage(request)
    checks["notifications"] = await _notifications(request)
    draining = request.app.state.gateway.draining
    if draining:
        status = "draining"
    elif any(c["status"] == "down" for c in checks.values()):
        status = "down"
    elif any(c["status"] != "ok" for c in checks.values()):
        status = "degraded"
    else:
        status = "ok"
    code = 503 if status in ("draining", "down") else 200
    if not operator(request):
        checks = {name: {"status": check["status"]} for name, check in checks.items()}
    return json({"status": status, "checks": checks}, code)


async def _notifications(request: Request) -> dict[str, object]:
    """Each provider's breaker and bulkhead (where this node dispatches), and jobs by state.

    A provider down is `degraded`, never `fail`: chat goes on, notifications wait.
    """
    deps = deps_of(request)
    check: dict[str, object] = {"status": "ok"}
    worker = request.app.state.worker
    if worker is not None:
        for kind, guard in worker.providers.guards.items():
            health = guard.health()
            check[kind] = {"provider": getattr(worker.providers, kind).name, **health}
            if health["state"] != "closed":
                check["status"] = "degraded"
    try:
        check["jobs"] = await asyncio.wait_for(
            deps.notifications.job_counts(), deps.settings.db.health_timeout_s
        )
    except Exception as exc:
        check["jobs"] = {"detail": exc.__class__.__name__}
    return check


async def _storage(request: Request) -> dict[str, object]:
    """The object store answers (uploads and downloads need it; chat does not: degraded)."""
    deps = deps_of(request)
    started = time.perf_counter()
    try:
        await asyncio.wait_for(deps.files.store.ping(), deps.settings.files.timeout_s)
    except Exception as exc:
        return {"status": "degraded", "backend": deps.files.store.name, "detail": repr(exc)}
    return {
        "status": "ok",
        "backend": deps.files.store.name,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
    }


async def _bus(request: Request) -> dict[str, object]:
    """The bus's own view (degraded while its loops fail) and a round trip to it now."""
    deps = deps_of(request)
    status, detail = deps.bus.health()
    started = time.perf_counter()
    try:
        await asyncio.wait_for(deps.bus.ping(), deps.settings.redis.timeout_s)
    except Exception as exc:
        return {"status": "degraded", "detail": detail or repr(exc)}
    latency = round((time.perf_counter() - started) * 1000, 2)
    return {"status": status, "latency_ms": latency, **({"detail": detail} if detail else {})}
