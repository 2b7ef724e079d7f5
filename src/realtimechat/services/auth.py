"""Accounts and tokens: argon2id passwords, 15-minute JWTs, rotated refresh tokens."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from realtimechat.domain.errors import (
    EmailTaken,
    InvalidCredentials,
    NotFound,
    RefreshTokenReused,
    RefreshTokenRevoked,
    TokenExpired,
    Unauthorized,
    ValidationFailed,
)
from realtimechat.domain.models import TokenPair, User
from realtimechat.ids import new_id, now_ms
from realtimechat.settings import AuthSettings
from realtimechat.storage import repositories as repo
from realtimechat.storage import tokens as token_repo
from realtimechat.storage.database import Database

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


class AuthService:
    """Registration, login, refresh rotation with reuse detection, logout."""

    def __init__(self, *, db: Database, settings: AuthSettings, secret: str) -> None:
        self._db = db
        self._settings = settings
        self._secret = secret
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

        def work(conn: Connection) -> None:
            if repo.user_with_hash_by_email(conn, email) is not None:
                raise EmailTaken()
            repo.insert_user(conn, user, password_hash)

        try:
            await self._db.write(work)
        except sa_exc.IntegrityError as exc:
            raise EmailTaken() from exc
        return user

    async def login(self, email: str, password: str) -> TokenPair:
        email = email.strip().lower()
        found = await self._db.read(lambda c: repo.user_with_hash_by_email(c, email))
        stored = found[1] if found else self._dummy_hash  # same cost either way
        try:
            await asyncio.to_thread(self._hasher.verify, stored, password)
        except (VerifyMismatchError, InvalidHashError) as exc:
            raise InvalidCredentials() from exc
        if found is None:
            raise InvalidCredentials()
        return await self._issue(found[0].id, family_id=new_id())

    async def refresh(self, refresh_token: str) -> TokenPair:
        token_hash = _hash_token(refresh_token)
        now = now_ms()
        new_refresh = secrets.token_urlsafe(32)

        def work(conn: Connection) -> tuple[str, str] | str:
            row = token_repo.by_hash(conn, token_hash)
            if row is None:
                return "unknown"
            if row.used_at is not None:
                # A rotated token presented again: someone holds a stolen copy.
                token_repo.revoke_family(conn, row.family_id, now)
                return "reused"
            if row.revoked_at is not None:
                # Revoked but never used: its login was signed out (or its family revoked),
                # which is no evidence of theft. Refused, and nothing else changes.
                return "revoked"
            if row.expires_at <= now:
                return "expired"
            token_repo.mark_used(conn, row.id, now)
            token_repo.insert(
                conn,
                user_id=row.user_id,
                token_hash=_hash_token(new_refresh),
                family_id=row.family_id,
                now=now,
                expires_at=now + self._settings.refresh_ttl_s * 1000,
            )
            return row.user_id, row.family_id

        result = await self._db.write(work)
        if result == "unknown":
            raise Unauthorized("unknown refresh token")
        if result == "reused":
            raise RefreshTokenReused()
        if result == "revoked":
            raise RefreshTokenRevoked("this login was signed out or revoked; log in again")
        if result == "expired":
            raise TokenExpired("refresh token expired")
        assert isinstance(result, tuple)
        return TokenPair(
            self._access_token(result[0], result[1]), new_refresh, self._settings.access_ttl_s
        )

    async def logout(self, refresh_token: str) -> None:
        token_hash = _hash_token(refresh_token)
        now = now_ms()

        def work(conn: Connection) -> None:
            row = token_repo.by_hash(conn, token_hash)
            if row is not None:
                token_repo.revoke_family(conn, row.family_id, now)

        await self._db.write(work)

    async def user(self, user_id: str) -> User:
        """The user record (NotFound if the account is gone)."""
        found = await self._db.read(lambda c: repo.user_by_id(c, user_id))
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
        return Principal(
            str(claims["sub"]), sid if isinstance(sid, str) else None, int(claims["exp"])
        )

    def _access_token(self, user_id: str, session_id: str) -> str:
        now = now_ms() // 1000
        claims = {
            "sub": user_id,
            "sid": session_id,
            "iss": self._settings.issuer,
            "iat": now,
            "exp": now + self._settings.access_ttl_s,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    async def _issue(self, user_id: str, *, family_id: str) -> TokenPair:
        refresh = secrets.token_urlsafe(32)
        now = now_ms()

        def work(conn: Connection) -> None:
            token_repo.insert(
                conn,
                user_id=user_id,
                token_hash=_hash_token(refresh),
                family_id=family_id,
                now=now,
                expires_at=now + self._settings.refresh_ttl_s * 1000,
            )

        await self._db.write(work)
        return TokenPair(
            self._access_token(user_id, family_id), refresh, self._settings.access_ttl_s
        )
