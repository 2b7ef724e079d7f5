"""Register, log in, refresh, log out, and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.responses import Response

from realtimechat.edge.auth import AppDeps, CurrentUser, anonymous_limit
from realtimechat.edge.responses import json
from realtimechat.edge.schemas import LoginIn, RefreshIn, RegisterIn

router = APIRouter(prefix="/api/v1", tags=["auth"])
limited = [Depends(anonymous_limit)]


@router.post("/auth/register", status_code=201, dependencies=limited)
async def register(body: RegisterIn, deps: AppDeps) -> Response:
    user = await deps.auth.register(body.email, body.password, body.display_name)
    return json(user.to_json(), 201)


@router.post("/auth/login", dependencies=limited)
async def login(body: LoginIn, deps: AppDeps) -> Response:
    return json((await deps.auth.login(body.email, body.password)).to_json())


@router.post("/auth/refresh", dependencies=limited)
async def refresh(body: RefreshIn, deps: AppDeps) -> Response:
    return json((await deps.auth.refresh(body.refresh_token)).to_json())


@router.post("/auth/logout", status_code=204, dependencies=limited)
async def logout(body: RefreshIn, deps: AppDeps) -> Response:
    await deps.auth.logout(body.refresh_token)
    return Response(status_code=204)


@router.get("/users/me", tags=["users"])
async def me(user: CurrentUser, deps: AppDeps) -> Response:
    return json((await deps.auth.user(user.user_id)).to_json())
