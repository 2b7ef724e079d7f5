"""E-mail through SendGrid's v3 Mail Send API."""

from __future__ import annotations

from email.utils import parseaddr
from typing import Any

import httpx

from realtimechat.providers.base import EmailMessage, ProviderUnavailable
from realtimechat.providers.http_errors import request, status_error
from realtimechat.settings import EmailSettings


class SendGridEmail:
    """EmailProvider for SendGrid: `POST /v3/mail/send`, the job id as a custom arg."""

    name = "sendgrid"

    def __init__(self, settings: EmailSettings) -> None:
        if settings.sendgrid_api_key is None or not settings.sendgrid_api_key.get_secret_value():
            raise ValueError("e-mail provider sendgrid needs RTC_NOTIFY__EMAIL__SENDGRID_API_KEY")
        sender_name, sender_email = parseaddr(settings.from_address)
        if "@" not in sender_email:
            raise ValueError(
                f"RTC_NOTIFY__EMAIL__FROM_ADDRESS {settings.from_address!r} has no e-mail address"
            )
        self._sender: dict[str, str] = {"email": sender_email}
        if sender_name:
            self._sender["name"] = sender_name
        self._url = f"{settings.sendgrid_url.rstrip('/')}/v3/mail/send"
        self._client = httpx.AsyncClient(
            timeout=settings.timeout_s,
            headers={"Authorization": f"Bearer {settings.sendgrid_api_key.get_secret_value()}"},
        )

    async def send(self, msg: EmailMessage) -> str:
        """Send one e-mail; returns SendGrid's X-Message-Id, or "" when it gives none."""
        body = {
            "personalizations": [
                {"to": [{"email": msg.to}], "custom_args": {"job_id": msg.job_id}}
            ],
            "from": self._sender,
            "subject": msg.subject,
            "content": [{"type": "text/plain", "value": msg.text}],
        }
        response = await request("sendgrid", self._client.post(self._url, json=body))
        if response.is_success:
            return str(response.headers.get("x-message-id", ""))
        reason = _reason(response)
        if response.status_code in (401, 403):
            # A bad or under-privileged API key fails every send alike: an outage for the
            # breaker to see, not a verdict on this one message.
            raise ProviderUnavailable(
                f"sendgrid refused the API key: {response.status_code} {reason}"
            )
        raise status_error("sendgrid", response, reason)

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()


def _reason(response: httpx.Response) -> str:
    """SendGrid's `{"errors": [{"message", "field"}]}`, joined; else the raw text."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        parts = []
        for error in errors:
            if isinstance(error, dict):
                field = f" ({error['field']})" if error.get("field") else ""
                parts.append(f"{error.get('message', '')}{field}")
        if parts:
            return "; ".join(parts)
    return response.text[:200] or response.reason_phrase
