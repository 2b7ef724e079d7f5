"""The base URL a node puts into the links it hands out, never taken from an unchecked Host."""

from __future__ import annotations

from starlette.requests import Request

from realtimechat.domain.errors import HostNotAllowed
from realtimechat.settings import Settings


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether a Host header value is listed, as `name:port` or as a bare `name`."""
    host = host.strip().lower()
    if host in allowed:
        return True
    name, sep, port = host.rpartition(":")
    # "[::1]:8000" splits at its last colon; a bare "[::1]" or "::1" has no port to strip.
    return bool(sep) and port.isdigit() and not name.endswith(":") and name in allowed


def base_url(request: Request, settings: Settings) -> str:
    """RTC_FILES__PUBLIC_URL, else this request's own address if its Host is allowed.

    A link built from a forged Host would send the client (and its bytes) elsewhere.
    """
    configured = settings.files.public_url
    if configured:
        return configured.rstrip("/")
    host = request.headers.get("host")
    if host is not None and not host_allowed(host, settings.allowed_host_names()):
        raise HostNotAllowed(
            "this server builds links only for the hosts in RTC_ALLOWED_HOSTS (or sets "
            "RTC_FILES__PUBLIC_URL); the request's Host header names another",
        )
    return str(request.base_url).rstrip("/")
