"""Register, log in, refresh, log out, and who am I.

Two ways to hold the refresh token. SDKs and bots send it in the JSON body and get it
back in the JSON answer. A browser asks for cookie mode (`X-RTC-Session: cookie` on
login or refresh): the refresh token then travels only in an HttpOnly cookie scoped to
/api/v1/auth, which no script can read, and the JSON answer leaves it out. A request
that authenticates with that cookie must carry `X-RTC-CSRF: 1` (a header no cross-site
form can send, and that no cross-origin script may send without a CORS grant, which
this node never gives) and, when the browser sends Origin, come from this origin.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from realtimechat.domain.errors import CsrfRefused, Unauthorized
from realtimechat.domain.models import TokenPair
from realtimechat.edge.auth import CurrentUser, anonymous_limit
from realtimechat.edge.deps import Auth, Config
from realtimechat.edge.errors import chat_error_response
from realtimechat.edge.responses import json
from realtimechat.edge.schemas import LoginIn, RefreshIn, RegisterIn
from realtimechat.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["auth"])
limited = [Depends(anonymous_limit)]

COOKIE = "rtc_refresh"
COOKIE_PATH = "/api/v1/auth"  # refresh and logout; never sent to the rest of the API
SESSION_HEADER = "x-rtc-session"
CSRF_HEADER = "x-rtc-csrf"


# Documented for /openapi.json; the handlers read them from the request themselves.
_SESSION_DOC = {
    "name": "X-RTC-Session",
    "in": "header",
    "required": False,
    "description": "`cookie`: set the refresh token as an HttpOnly cookie, not in the JSON",
    "schema": {"type": "string", "enum": ["cookie"]},
}
_CSRF_DOC = {
    "name": "X-RTC-CSRF",
    "in": "header",
    "required": False,
    "description": "`1`: required when the refresh token comes from the session cookie",
    "schema": {"type": "string", "enum": ["1"]},
}
_COOKIE_DOC = {
    "name": COOKIE,
    "in": "cookie",
    "required": False,
    "description": "the refresh token in cookie mode (used when the body is absent)",
    "schema": {"type": "string"},
}


def _cookie_mode(request: Request) -> bool:
    return request.headers.get(SESSION_HEADER, "").strip().lower() == "cookie"


def _check_csrf(request: Request, public_url: str | None) -> None:
    """Refuse a cookie-authenticated call that a cross-site page could have made."""
    if request.headers.get(CSRF_HEADER, "").strip() != "1":
        raise CsrfRefused("send X-RTC-CSRF: 1 with a request that uses the session cookie")
    origin = request.headers.get("origin")
    if origin is None:
        return
    # The browser names the page's origin; Host names where it sent the request (or,
    # behind a proxy that rewrites Host, RTC_FILES__PUBLIC_URL names this node).
    ours = {request.headers.get("host", "").lower()}
    if public_url:
        ours.add(urlsplit(public_url).netloc.lower())
    if urlsplit(origin).netloc.lower() not in ours:
        raise CsrfRefused(f"a request with the session cookie came from {origin[:100]}")


def _set_cookie(response: Response, refresh_token: str, max_age_s: int) -> None:
    response.set_cookie(
        COOKIE,
        refresh_token,
        max_age=max_age_s,
        path=COOKIE_PATH,
        secure=True,
        httponly=True,
        samesite="strict",
    )


def _clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=True, httponly=True, samesite="strict")


def _tokens(pair: TokenPair, *, cookie: bool, max_age_s: int) -> Response:
    """The token answer: JSON only, or the refresh token in the cookie and not in the JSON."""
    body = pair.to_json()
    if cookie:
        del body["refresh_token"]
    response = json(body)
    response.headers["Cache-Control"] = "no-store"  # tokens are never cached anywhere
    if cookie:
        _set_cookie(response, pair.refresh_token, max_age_s)
    return response


def _presented(
    request: Request, body: RefreshIn | None, settings: Settings
) -> tuple[str | None, bool]:
    """The refresh token to use and whether it came from the cookie (CSRF checked)."""
    if body is not None:
        return body.refresh_token, False
    cookie = request.cookies.get(COOKIE)
    if cookie:
        _check_csrf(request, settings.files.public_url)
        return cookie, True
    return None, False


@router.post("/auth/register", status_code=201, dependencies=limited)
async def register(body: RegisterIn, auth: Auth) -> Response:
    user = await auth.register(body.email, body.password, body.display_name)
    return json(user.to_json(), 201)


@router.post("/auth/login", dependencies=limited, openapi_extra={"parameters": [_SESSION_DOC]})
async def login(body: LoginIn, request: Request, auth: Auth, settings: Config) -> Response:
    """A token pair; with `X-RTC-Session: cookie` the refresh token is set as a cookie."""
    pair = await auth.login(body.email, body.password)
    return _tokens(pair, cookie=_cookie_mode(request), max_age_s=settings.auth.refresh_ttl_s)


@router.post(
    "/auth/refresh",
    dependencies=limited,
    openapi_extra={"parameters": [_SESSION_DOC, _CSRF_DOC, _COOKIE_DOC]},
)
async def refresh(
    request: Request, auth: Auth, settings: Config, body: RefreshIn | None = None
) -> Response:
    """Rotate the refresh token given in the body, or (cookie mode) in the session cookie."""
    token, from_cookie = _presented(request, body, settings)
    if token is None:
        raise Unauthorized("send {refresh_token} in the body, or the session cookie")
    cookie = from_cookie or _cookie_mode(request)
    try:
        pair = await auth.refresh(token)
    except Unauthorized as exc:
        if not from_cookie:
            raise
        # The cookie's login is over (signed out, reused, expired): drop the cookie too.
        response = chat_error_response(exc)
        _clear_cookie(response)
        return response
    return _tokens(pair, cookie=cookie, max_age_s=settings.auth.refresh_ttl_s)


@router.post(
    "/auth/logout",
    status_code=204,
    dependencies=limited,
    openapi_extra={"parameters": [_CSRF_DOC, _COOKIE_DOC]},
)
async def logout(
    request: Request, auth: Auth, settings: Config, body: RefreshIn | None = None
) -> Response:
    """Sign out the login of the refresh token (body or cookie); the cookie is cleared."""
    token, from_cookie = _presented(request, body, settings)
    if token is not None:
        await auth.logout(token)
    response = Response(status_code=204)
    if from_cookie or _cookie_mode(request):
        _clear_cookie(response)
    return response


@router.get("/users/me", tags=["users"])
async def me(user: CurrentUser, auth: Auth) -> Response:
    return json((await auth.user(user.user_id)).to_json())
