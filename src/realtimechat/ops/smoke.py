"""The post-deploy smoke test: one real conversation through a deployed node, step by step.

Two throwaway users (`smoke-…@smoke.invalid`) get a private channel of their own; the
first sends over REST with client_msg_ids, the second must receive every message over
its WebSocket in seq order. Every step is timed and the report names the first that
failed and why, so a pipeline can print it and roll back. The API has no way to delete
users, teams or channels: cleanup deletes the messages and logs both users out, and a
team and channel named `smoke-<tag>` stay behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from realtimechat_client import (
    ChatAPIError,
    ChatClient,
    ClientOptions,
    LiveSession,
    new_client_msg_id,
)

__all__ = ["STEPS", "SmokeReport", "StepResult", "smoke"]

STEPS = ("livez", "readyz", "register", "setup", "connect", "send", "receive", "cleanup")
MESSAGES = 3  # more than one, so that order is checked too
CLEANUP_BUDGET_S = 10.0  # cleanup runs even after the checks used up the timeout

Status = Literal["ok", "failed", "skipped"]


class SmokeFailure(Exception):
    """A check saw something wrong; its message is the report's detail."""


@dataclass
class StepResult:
    """One step: what happened and how long it took."""

    name: str
    status: Status
    duration_ms: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        """The step ran and passed."""
        return self.status == "ok"

    def line(self) -> str:
        """The step as one line of `realtimechat smoke` output."""
        status = "FAILED" if self.status == "failed" else self.status
        if self.status == "skipped":
            return f"{status:8} {self.name}"
        return f"{status:8} {self.name:9} {self.duration_ms:9.1f} ms  {self.detail}".rstrip()

    def to_json(self) -> dict[str, Any]:
        """The step as plain JSON."""
        return {
            "name": self.name,
            "ok": self.ok,
            "status": self.status,
            "duration_ms": round(self.duration_ms, 1),
            "detail": self.detail,
        }


@dataclass
class SmokeReport:
    """Every step's result; `ok` only when each step passed."""

    url: str
    steps: list[StepResult] = field(default_factory=list)
    total_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """Every step passed."""
        return bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def failed_step(self) -> StepResult | None:
        """The first step that failed (the cause; later failures may follow from it)."""
        return next((s for s in self.steps if s.status == "failed"), None)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON (what `realtimechat smoke --json` prints)."""
        failed = self.failed_step
        return {
            "url": self.url,
            "ok": self.ok,
            "failed_step": failed.name if failed else None,
            "total_ms": round(self.total_ms, 1),
            "steps": [s.to_json() for s in self.steps],
        }

    def verdict(self) -> str:
        """The last line of `realtimechat smoke` output."""
        failed = self.failed_step
        if self.ok:
            return f"smoke passed: {len(self.steps)} steps in {self.total_ms:.0f} ms"
        if failed is not None:
            return f"smoke FAILED at {failed.name}: {failed.detail}"
        return "smoke FAILED"

    def lines(self) -> list[str]:
        """One line per step and the verdict."""
        return [s.line() for s in self.steps] + [self.verdict()]


def describe(exc: BaseException) -> str:
    """A one-line reason for the report."""
    if isinstance(exc, SmokeFailure):
        return str(exc)
    if isinstance(exc, ChatAPIError):
        if exc.status == 0:
            return f"no answer: {exc.detail or exc.code}"
        return f"{exc.status} {exc.code}" + (f": {exc.detail}" if exc.detail else "")
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect to {exc.request.url}: {exc}"
    if isinstance(exc, httpx.TransportError):
        return f"no answer: {type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class _Party:
    """One throwaway user."""

    client: ChatClient
    email: str
    user_id: str = ""


@dataclass
class _Run:
    url: str
    timeout_s: float
    report: SmokeReport
    deadline: float  # loop time
    on_step: Callable[[StepResult], None] | None = None
    tag: str = field(default_factory=lambda: secrets.token_hex(6))
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    http: httpx.AsyncClient | None = None
    sender: _Party | None = None
    listener: _Party | None = None
    live: LiveSession | None = None
    channel_id: str = ""
    sent: list[dict[str, Any]] = field(default_factory=list)
    failed: bool = False

    def record(self, result: StepResult) -> None:
        self.report.steps.append(result)
        if self.on_step is not None:
            self.on_step(result)

    async def step(self, name: str, check: Callable[[], Awaitable[str]]) -> None:
        """Run `check` within the run's deadline, unless an earlier step failed."""
        if self.failed:
            self.record(StepResult(name, "skipped"))
            return
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(self.deadline):
                detail = await check()
            result = StepResult(name, "ok", detail=detail)
        except TimeoutError:
            result = StepResult(
                name, "failed", detail=f"timed out: the whole check has {self.timeout_s:g} s"
            )
        except Exception as exc:
            result = StepResult(name, "failed", detail=describe(exc))
        result.duration_ms = (time.perf_counter() - started) * 1000
        self.failed = self.failed or not result.ok
        self.record(result)

    def options(self) -> ClientOptions:
        # No periodic tail check: it would page over REST and hide whether the WebSocket
        # delivered. A request never waits longer than the whole check may take.
        per_request = min(10.0, self.timeout_s)
        return ClientOptions(
            timeout_s=per_request,
            connect_timeout_s=min(5.0, per_request),
            tail_check_s=None,
            remember_credentials=False,
        )

    # -- the steps ------------------------------------------------------------------------
    async def livez(self) -> str:
        if not self.url.startswith(("http://", "https://")):
            raise SmokeFailure(f"{self.url!r} is not an http:// or https:// URL")
        self.http = httpx.AsyncClient(base_url=self.url, timeout=min(10.0, self.timeout_s))
        resp = await self.http.get("/livez")
        if resp.status_code != 200:
            raise SmokeFailure(f"/livez answered {resp.status_code}: {resp.text[:200]}")
        return "200"

    async def readyz(self) -> str:
        assert self.http is not None
        resp = await self.http.get("/readyz")
        body: dict[str, Any] = {}
        with contextlib.suppress(ValueError):
            parsed = resp.json()
            body = parsed if isinstance(parsed, dict) else {}
        raw_checks = body.get("checks")
        checks: dict[str, Any] = raw_checks if isinstance(raw_checks, dict) else {}
        not_ok = ", ".join(
            f"{name}: {check.get('status')}"
            for name, check in checks.items()
            if isinstance(check, dict) and check.get("status") != "ok"
        )
        summary = f"{resp.status_code} {body.get('status', '?')}" + (
            f" ({not_ok})" if not_ok else ""
        )
        if resp.status_code != 200:
            raise SmokeFailure(f"/readyz answered {summary}")
        return summary

    async def register(self) -> str:
        parties = []
        for role in ("a", "b"):
            email = f"smoke-{self.tag}-{role}@smoke.invalid"
            party = _Party(ChatClient(self.url, self.options()), email)
            # Kept before the calls that may fail, so cleanup closes its client.
            if role == "a":
                self.sender = party
            else:
                self.listener = party
            user = await party.client.register(email, self.password, f"smoke {role}")
            party.user_id = str(user["id"])
            await party.client.login(email, self.password)
            parties.append(party.email)
        return "logged in " + ", ".join(parties)

    async def setup(self) -> str:
        assert self.sender is not None
        assert self.listener is not None
        owner = self.sender.client
        team = await owner.create_team(f"smoke-{self.tag}")
        await owner.add_team_member(team["id"], user_id=self.listener.user_id)
        channel = await owner.create_channel(team["id"], f"smoke-{self.tag}", private=True)
        self.channel_id = str(channel["id"])
        await owner.add_channel_member(self.channel_id, self.listener.user_id)
        return f"team {team['id']}, channel {self.channel_id}"

    async def connect(self) -> str:
        assert self.listener is not None
        self.live = LiveSession(self.listener.client)
        await self.live.start()
        await self.live.wait_connected()
        if self.channel_id not in self.live.channels:
            raise SmokeFailure(f"ready did not list channel {self.channel_id}")
        return f"ready with {len(self.live.channels)} channel(s)"

    async def send(self) -> str:
        assert self.sender is not None
        client = self.sender.client
        for i in range(MESSAGES):
            payload = {
                "channel_id": self.channel_id,
                "body": f"smoke {self.tag} #{i + 1}",
                "client_msg_id": new_client_msg_id(),
            }
            resp = await client.request("POST", "/api/v1/messages", json=payload, idempotent=True)
            msg: dict[str, Any] = resp.json()
            if resp.status_code != 201 or msg.get("body") != payload["body"]:
                raise SmokeFailure(f"send #{i + 1} answered {resp.status_code}: {resp.text[:200]}")
            self.sent.append(msg)
        # The retry a client makes after a lost answer must get the same message back.
        first = self.sent[0]
        retry = await client.request(
            "POST",
            "/api/v1/messages",
            json={"channel_id": self.channel_id, "body": first["body"],
                  "client_msg_id": first["client_msg_id"]},
            idempotent=True,
        )  # fmt: skip
        if retry.status_code != 200 or retry.json().get("id") != first["id"]:
            raise SmokeFailure(
                f"a retry with the same client_msg_id answered {retry.status_code} "
                f"{retry.text[:200]} instead of 200 with message {first['id']}"
            )
        seqs = [m["seq"] for m in self.sent]
        return f"{MESSAGES} messages, seq {seqs}; a retry answered the same message"

    async def receive(self) -> str:
        assert self.live is not None
        want = [(m["id"], m["seq"]) for m in self.sent]
        got: list[tuple[str, int]] = []
        while len(got) < len(want):
            ev = await self.live.next_event()
            if ev["channel_id"] == self.channel_id and ev["event"] == "message.created":
                got.append((ev["data"]["id"], ev["seq"]))
        if got != want:
            raise SmokeFailure(f"received {got}, sent {want} (id, seq)")
        if self.live.stats.pages_fetched:
            # The session filled a hole over REST: the WebSocket lost or reordered.
            raise SmokeFailure(
                f"messages arrived only with {self.live.stats.pages_fetched} REST backfill "
                "page(s): the WebSocket did not deliver them in order"
            )
        return f"{len(got)} messages in seq order over the WebSocket"

    async def cleanup(self) -> None:
        """Undo what the API allows, within its own budget; recorded as a step."""
        started = time.perf_counter()
        done: list[str] = []
        errors: list[str] = []

        async def attempt(what: str, work: Awaitable[Any]) -> None:
            try:
                await work
                done.append(what)
            except Exception as exc:
                errors.append(f"{what}: {describe(exc)}")

        try:
            async with asyncio.timeout(CLEANUP_BUDGET_S):
                if self.live is not None:
                    await self.live.aclose()
                if self.sender is not None and self.sent:
                    client = self.sender.client
                    for m in self.sent:
                        await attempt(
                            f"delete {m['id']}", client.delete_message(m["id"], m["version"])
                        )
                for party in (self.sender, self.listener):
                    if party is not None and party.client.refresh_token is not None:
                        await attempt(f"logout {party.email}", party.client.logout())
        except TimeoutError:
            errors.append(f"timed out after {CLEANUP_BUDGET_S:g} s")
        finally:
            for party in (self.sender, self.listener):
                if party is not None:
                    await party.client.aclose()
            if self.http is not None:
                await self.http.aclose()
        deleted = sum(1 for d in done if d.startswith("delete"))
        logged_out = sum(1 for d in done if d.startswith("logout"))
        if errors:
            status: Status = "failed"
            detail = "; ".join(errors)
        else:
            status = "ok"
            detail = (
                f"deleted {deleted} message(s), logged out {logged_out} user(s)"
                if done
                else "nothing to clean up"
            )
        duration = (time.perf_counter() - started) * 1000
        self.record(StepResult("cleanup", status, duration, detail))


async def smoke(
    url: str, *, timeout_s: float = 30, on_step: Callable[[StepResult], None] | None = None
) -> SmokeReport:
    """Run the smoke test against a deployed node at `url`; every step's result.

    `timeout_s` bounds the checks together (cleanup has CLEANUP_BUDGET_S more);
    `on_step` is called with each step's result as soon as it is known.
    """
    started = time.perf_counter()
    url = url.rstrip("/")
    report = SmokeReport(url)
    loop = asyncio.get_running_loop()
    run = _Run(url, timeout_s, report, deadline=loop.time() + timeout_s, on_step=on_step)
    try:
        await run.step("livez", run.livez)
        await run.step("readyz", run.readyz)
        await run.step("register", run.register)
        await run.step("setup", run.setup)
        await run.step("connect", run.connect)
        await run.step("send", run.send)
        await run.step("receive", run.receive)
    finally:
        # Shielded so that cancelling the smoke test still leaves no live session behind.
        await asyncio.shield(run.cleanup())
    report.total_ms = (time.perf_counter() - started) * 1000
    return report
