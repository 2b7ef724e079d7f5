"""The error tree: every error carries a stable machine-readable code.

The edge maps each class to an HTTP status or a WebSocket error frame; nothing
below the edge knows about HTTP.
"""

from __future__ import annotations

from typing import Any


class ChatError(Exception):
    """Base of every error the product reports to a client."""

    code = "internal_error"
    title = "Internal error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class NotFound(ChatError):
    code = "not_found"
    title = "Not found"


class Forbidden(ChatError):
    code = "forbidden"
    title = "Forbidden"


class NotAMember(Forbidden):
    code = "not_a_member"
    title = "Join the channel first"


class CsrfRefused(Forbidden):
    """A call authenticated by the session cookie that a cross-site page could have made."""

    code = "csrf_refused"
    title = "Cookie sessions need the X-RTC-CSRF header and a same-origin request"


class Unauthorized(ChatError):
    code = "unauthorized"
    title = "Authentication required"


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    title = "Wrong e-mail or password"


class TokenExpired(Unauthorized):
    code = "token_expired"
    title = "Token expired"


class RefreshTokenReused(Unauthorized):
    code = "refresh_token_reused"
    title = "Refresh token already used; all sessions of this login were revoked"


class RefreshTokenRevoked(Unauthorized):
    """A refresh token revoked before it was ever used: its login was signed out."""

    code = "refresh_token_revoked"
    title = "Refresh token revoked"


class SessionRevoked(Unauthorized):
    """An access token of a login that was signed out or revoked since it was issued."""

    code = "session_revoked"
    title = "This login was signed out"


class Conflict(ChatError):
    code = "conflict"
    title = "Conflict"


class EmailTaken(Conflict):
    code = "email_taken"
    title = "E-mail already registered"


class AlreadyExists(Conflict):
    """A unique key another transaction took first: a race the service may resolve by
    trying again (a retried send then finds the stored message)."""

    code = "already_exists"
    title = "Created at the same moment by another request"


class TooManyInvitations(Conflict):
    code = "too_many_invitations"
    title = "The team has too many pending invitations"


class ChannelAdminRequired(Forbidden):
    code = "channel_admin_required"
    title = "Only the channel's admins add members to a private channel"


class IdempotencyMismatch(ChatError):
    code = "idempotency_key_reused"
    title = "This idempotency key was already used with a different request"


class PreconditionRequired(ChatError):
    code = "precondition_required"
    title = "If-Match header required"


class PreconditionFailed(ChatError):
    code = "version_conflict"
    title = "The message changed since you read it"


class MessageDeleted(ChatError):
    code = "message_deleted"
    title = "Message was deleted"


class ValidationFailed(ChatError):
    code = "validation_error"
    title = "Invalid request"


class RateLimited(ChatError):
    code = "rate_limited"
    title = "Too many requests"

    def __init__(self, retry_after_s: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class LoginLocked(RateLimited):
    """Too many failed sign-ins for this e-mail address, whether or not it has an account."""

    code = "login_locked"
    title = "Too many failed sign-ins; try again later"


class Overloaded(ChatError):
    code = "overloaded"
    title = "Server busy, retry shortly"

    def __init__(self, retry_after_s: int = 1, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Unavailable(ChatError):
    code = "unavailable"
    title = "A dependency is unavailable"

    def __init__(self, retry_after_s: int = 1, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class TooLarge(ChatError):
    code = "file_too_large"
    title = "File larger than the limit"


class QuotaExceeded(Conflict):
    code = "quota_exceeded"
    title = "The team's storage quota would be exceeded"


class UploadIncomplete(Conflict):
    code = "upload_incomplete"
    title = "The file's bytes have not been uploaded yet"


class ChecksumMismatch(ValidationFailed):
    code = "checksum_mismatch"
    title = "The uploaded bytes do not match the declared size or sha256"


class InvalidAttachment(ValidationFailed):
    code = "invalid_attachment"
    title = "Attachments must be ready files you may share here"


class LinkInvalid(Forbidden):
    code = "link_invalid"
    title = "This link is invalid or has expired"


class FeatureDisabled(Unavailable):
    code = "feature_disabled"
    title = "This feature is switched off for now"


class UploadGone(ChatError):
    """An upload URL whose reservation ended: its bytes are refused."""

    code = "upload_gone"
    title = "This upload no longer accepts bytes"


class UploadCancelled(UploadGone):
    code = "upload_cancelled"
    title = "This upload was cancelled"


class UploadExpired(UploadGone):
    code = "upload_expired"
    title = "This upload's reservation expired"


class UploadAlreadyComplete(Conflict):
    code = "upload_complete"
    title = "This upload is already complete"


class PendingUploadsLimit(Conflict):
    code = "too_many_pending_uploads"
    title = "Too many uploads are waiting for their bytes"


class HostNotAllowed(ChatError):
    code = "host_not_allowed"
    title = "The Host header names a host this server does not answer for"
