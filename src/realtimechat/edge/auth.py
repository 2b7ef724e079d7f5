"""Who is calling: bearer-token authentication and the per-user rate limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from realtimechat.domain.errors import Unauthorized
from realtimechat.edge.deps import AppDeps as AppDeps  # routes/messages.py imports it from here
from realtimechat.edge.deps import Auth, Config, Limiter
from realtimechat.observability.logging import bind
from realtimechat.services.auth import Principal


async def current_user(
    request: Request, auth: Auth, limiter: Limiter, settings: Config
) -> Principal:
    """The authenticated caller; spends one request of their rate budget."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send Authorization: Bearer <access token>")
    principal = auth.authenticate(token.strip())
    bind(user_id=principal.user_id)
    budget = await limiter.hit(
        f"user:{principal.user_id}", settings.limits.user_requests_per_minute
    )
    request.state.response_headers = budget.headers()  # sent by GuardMiddleware
    return principal


async def anonymous_limit(request: Request, limiter: Limiter, settings: Config) -> None:
    """Rate budget per client address for the calls made before login."""
    host = request.client.host if request.client else "unknown"
    budget = await limiter.hit(f"ip:{host}", settings.limits.anonymous_requests_per_minute)
    request.state.response_headers = budget.headers()  # sent by GuardMiddleware


CurrentUser = Annotated[Principal, Depends(current_user)]
