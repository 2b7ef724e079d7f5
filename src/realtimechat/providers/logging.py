"""The embedded default providers: a log line per send instead of a real delivery."""

from __future__ import annotations

import logging

from realtimechat.ids import new_id
from realtimechat.providers.base import EmailMessage, PushMessage

log = logging.getLogger(__name__)

# Enough of a device token to tell devices apart in a log, too little to push to one.
TOKEN_PREFIX = 8


class LogPush:
    """PushProvider that logs the job id and a truncated device token; never the text."""

    name = "log"

    async def send(self, msg: PushMessage) -> str:
        """Log the push (no title or body: message text stays out of logs)."""
        log.info(
            "push job=%s platform=%s token=%s...",
            msg.data.get("job_id", "?"),
            msg.platform,
            msg.token[:TOKEN_PREFIX],
        )
        return f"log-push-{new_id()}"

    async def close(self) -> None:
        """Nothing to release."""


class LogEmail:
    """EmailProvider that logs the job id and the address; never the subject or text."""

    name = "log"

    async def send(self, msg: EmailMessage) -> str:
        """Log the e-mail (no subject or text: message text stays out of logs)."""
        log.info("email job=%s to=%s", msg.job_id, msg.to)
        return f"log-email-{new_id()}"

    async def close(self) -> None:
        """Nothing to release."""
