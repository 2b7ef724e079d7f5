"""Accounts and tokens: argon2id passwords, 15-minute JWTs, rotated refresh tokens."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError

from realtimechat.domain.errors import (
    AlreadyExists,
    EmailTaken,
    InvalidCredentials,
    LoginLocked,
    NotFound,
    RefreshTokenReused,
    RefreshTokenRevoked,
    SessionRevoked,
    TokenExpired,
    Unauthorized,
    ValidationFailed,
)
from realtimechat.domain.lockout import LockoutPolicy
from realtimechat.domain.models import TokenPair, User
from realtimechat.domain.records import LoginFailures
from realtimechat.ids import new_id, now_ms
from realtimechat.observability import metrics
from realtimechat.services.sessions import Revocations
from realtimechat.services.uow import Tx, UnitOfWork
from realtimechat.settings import AuthSettings

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by an access token.

    `session_id` is the login (the refresh-token family) the token was issued to,
    so that signing out ends it; `expires_at` is the token's expiry (epoch seconds).
    """

    user_id: str
    session_id: str | None = None
    expires_at: int = 0


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _account_key(email: str) -> str:
    """The lockout key of an e-mail address, with or without an account."""
    return hashlib.sha256(b"rtc-login\0" + email.encode()).hexdigest()


class AuthService:
    """Registration, login with lockout, refresh rotation with reuse detection, logout."""

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        settings: AuthSettings,
        secret: str,
        revocations: Revocations,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._uow = uow
        self._settings = settings
        self._secret = secret
        self.revocations = revocations
        self._clock = clock
        self._lockout = LockoutPolicy(
            free=settings.lockout_free_attempts,
            base_ms=int(settings.lockout_base_s * 1000),
            max_ms=int(settings.lockout_max_s * 1000),
            reset_ms=int(settings.lockout_reset_s * 1000),
        )
        self._hasher = PasswordHasher(
            time_cost=settings.hash_time_cost, memory_cost=settings.hash_memory_kib
        )
        self._dummy_hash = self._hasher.hash(secrets.token_hex(8))

    async def register(self, email: str, password: str, display_name: str) -> User:
        email = email.strip().lower()
        display_name = display_name.strip()
        if not _EMAIL.match(email) or len(email) > 320:
            raise ValidationFailed("email is not a valid e-mail address", field="email")
        if len(password) < 8:
            raise ValidationFailed("password must be at least 8 characters", field="password")
        if not display_name:
            raise ValidationFailed("display_name must not be empty", field="display_name")
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        user = User(new_id(), email, display_name, now_ms())

        def work(tx: Tx) -> None:
            if tx.users.with_hash_by_email(email) is not None:
                raise EmailTaken()
            tx.users.add(user, password_hash)

        try:
            await self._uow.write(work)
        except AlreadyExists as exc:  # registered at the same moment
            raise EmailTaken() from exc
        return user

    async def login(self, email: str, password: str) -> TokenPair:
        """Tokens for a right password; every address (with an account or not) locks alike."""
        email = email.strip().lower()
        key = _account_key(email)
        now = self._clock()

        def attempt(tx: Tx) -> tuple[int, tuple[User, str] | None]:
            state = tx.sessions.failures(key)
            if state.locked_until > now:
                return state.locked_until, None
            # Counted before the password is checked (and cleared on success), so
            # guesses sent all at once are each counted.
            failures, locked_until = self._lockout.after_failure(
                state.failures, state.last_failed_at, now
            )
            tx.sessions.set_failures(key, LoginFailures(failures, locked_until, now))
            return 0, tx.users.with_hash_by_email(email)

        locked_until, found = await self._uow.write(attempt)
        if locked_until:
            metrics.LOGIN_FAILURES.labels("locked").inc()
            retry_after_s = LockoutPolicy.retry_after_s(locked_until, now)
            log.warning(
                "login refused: locked out",
                extra={"account": key[:12], "retry_after_s": retry_after_s},
            )
            raise LoginLocked(
                retry_after_s,
                f"too many failed sign-ins for this address; try again in {retry_after_s} s",
            )
        stored = found[1] if found else self._dummy_hash  # same cost either way
        try:
            await asyncio.to_thread(self._hasher.verify, stored, password)
        except (VerifyMismatchError, InvalidHashError):
            found = None
        if found is None:
            metrics.LOGIN_FAILURES.labels("invalid_credentials").inc()
            log.warning("login failed: invalid credentials", extra={"account": key[:12]})
            raise InvalidCredentials()
        return await self._issue(found[0].id, family_id=new_id(), clear_failures=key)

    async def refresh(self, refresh_token: str) -> TokenPair:
        token_hash = _hash_token(refresh_token)
        now = self._clock()
        new_refresh = secrets.token_urlsafe(32)

        def work(tx: Tx) -> tuple[str, str]:
            row = tx.tokens.by_hash(token_hash)
            if row is None:
                return "unknown", ""
            if row.used_at is not None:
                # A rotated token presented again: someone holds a stolen copy.
                self._revoke(tx, row.family_id, now)
                return "reused", row.family_id
            if row.revoked_at is not None:
                # Revoked but never used: its login was signed out (or its family revoked),
                # which is no evidence of theft. Refused, and nothing else changes.
                return "revoked", ""
            if row.expires_at <= now:
                return "expired", ""
            tx.tokens.mark_used(row.id, now)
            tx.tokens.add(
                user_id=row.user_id,
                token_hash=_hash_token(new_refresh),
                family_id=row.family_id,
                now=now,
                expires_at=now + self._settings.refresh_ttl_s * 1000,
            )
            return row.user_id, row.family_id

        outcome, family_id = await self._uow.write(work)
        if outcome == "unknown":
            raise Unauthorized("unknown refresh token")
        if outcome == "reused":
            self._revoked_here(family_id, now)
            raise RefreshTokenReused()
        if outcome == "revoked":
            raise RefreshTokenRevoked("this login was signed out or revoked; log in again")
        if outcome == "expired":
            raise TokenExpired("refresh token expired")
        return TokenPair(
            self._access_token(outcome, family_id), new_refresh, self._settings.access_ttl_s
        )

    async def logout(self, refresh_token: str) -> None:
        """Sign the login out: its refresh tokens, access tokens and sockets end now."""
        token_hash = _hash_token(refresh_token)
        now = self._clock()

        def work(tx: Tx) -> str | None:
            row = tx.tokens.by_hash(token_hash)
            if row is None:
                return None
            self._revoke(tx, row.family_id, now)
            return row.family_id

        family_id = await self._uow.write(work)
        if family_id is not None:
            self._revoked_here(family_id, now)

    def _revoke(self, tx: Tx, family_id: str, now: int) -> None:
        """Revoke a login's refresh tokens and record it for its access tokens' lifetime."""
        tx.tokens.revoke_family(family_id, now)
        tx.sessions.revoke(family_id, now, self._revocation_expiry(now))

    def _revocation_expiry(self, now: int) -> int:
        # Every access token of the login was issued by now, so each expires by then
        # (a second of slack for the token's whole-second timestamps).
        return now + (self._settings.access_ttl_s + 1) * 1000

    def _revoked_here(self, family_id: str, now: int) -> None:
        """Apply a committed revocation on this node at once (others read it in a poll)."""
        self.revocations.learn([(family_id, self._revocation_expiry(now))])

    async def user(self, user_id: str) -> User:
        """The user record (NotFound if the account is gone)."""
        found = await self._uow.read(lambda tx: tx.users.get(user_id))
        if found is None:
            raise NotFound("user not found")
        return found

    def authenticate(self, access_token: str) -> Principal:
        """Verify an access token (no I/O)."""
        try:
            claims = jwt.decode(
                access_token,
                self._secret,
                algorithms=["HS256"],
                issuer=self._settings.issuer,
                options={"require": ["exp", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("access token expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid access token") from exc
        sid = claims.get("sid")
        session_id = sid if isinstance(sid, str) else None
        if session_id is not None and self.revocations.is_revoked(session_id):
            raise SessionRevoked("this login was signed out or revoked; log in again")
        return Principal(str(claims["sub"]), session_id, int(claims["exp"]))

    def _access_token(self, user_id: str, session_id: str) -> str:
        now = self._clock() // 1000
        claims = {
            "sub": user_id,
            "sid": session_id,
            "iss": self._settings.issuer,
            "iat": now,
            "exp": now + self._settings.access_ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    async def _issue(
        self, user_id: str, *, family_id: str, clear_failures: str | None = None
    ) -> TokenPair:
        refresh = secrets.token_urlsafe(32)
        now = self._clock()

        def work(tx: Tx) -> None:
            if clear_failures is not None:
                tx.sessions.set_failures(clear_failures, LoginFailures())
            tx.tokens.add(
                user_id=user_id,
                token_hash=_hash_token(refresh),
                family_id=family_id,
                now=now,
                expires_at=now + self._settings.refresh_ttl_s * 1000,
            )

        await self._uow.write(work)
        return TokenPair(
            self._access_token(user_id, family_id), refresh, self._settings.access_ttl_s
        )
