"""Who is calling: bearer-token authentication and the per-user rate limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from realtimechat.bootstrap import Deps
from realtimechat.domain.errors import Unauthorized
from realtimechat.observability.logging import bind
from realtimechat.services.auth import Principal


def deps_of(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


async def current_user(request: Request) -> Principal:
    """The authenticated caller; spends one request of their rate budget."""
    deps = deps_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send Authorization: Bearer <access token>")
    principal = deps.auth.authenticate(token.strip())
    bind(user_id=principal.user_id)
    budget = await deps.limiter.hit(
        f"user:{principal.user_id}", deps.settings.limits.user_requests_per_minute
    )
    request.state.response_headers = budget.headers()  # sent by GuardMiddleware
    return principal


async def anonymous_limit(request: Request) -> None:
    """Rate budget per client address for the calls made before login."""
    deps = deps_of(request)
    host = request.client.host if request.client else "unknown"
    budget = await deps.limiter.hit(
        f"ip:{host}", deps.settings.limits.anonymous_requests_per_minute
    )
    request.state.response_headers = budget.headers()  # sent by GuardMiddleware


CurrentUser = Annotated[Principal, Depends(current_user)]
AppDeps = Annotated[Deps, Depends(deps_of)]
