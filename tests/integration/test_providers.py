"""The FCM and SendGrid adapters and their guard, against the fake providers over real HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from realtimechat.providers.base import (
    EmailMessage,
    ProviderUnavailable,
    PushMessage,
    RateLimited,
    Rejected,
    TokenUnregistered,
)
from realtimechat.providers.factory import Providers, build_providers
from realtimechat.providers.fcm import REFRESH_MARGIN_S, FcmPush
from realtimechat.providers.guard import ProviderGuard
from realtimechat.providers.sendgrid import SendGridEmail
from realtimechat.settings import EmailSettings, NotifySettings, PushSettings
from tests.fake_providers import (  # noqa: F401 (the fixtures)
    FakeFcm,
    FakeSendGrid,
    fake_fcm_fixture,
    fake_sendgrid_fixture,
)
from tests.support import ManualClock


def state(guard: ProviderGuard) -> str:
    """The breaker state, read afresh (a helper, so mypy does not narrow it between reads)."""
    return guard.state


def push(job_id: str = "job-1", token: str = "device-token-0123456789", **data: str) -> PushMessage:
    return PushMessage(
        token=token,
        platform="android",
        title="Alice in #general",
        body="lunch?",
        data={"job_id": job_id, **data},
    )


def email(job_id: str = "job-1", to: str = "bob@example.com") -> EmailMessage:
    return EmailMessage(to=to, subject="Unread in #general", text="Alice: lunch?", job_id=job_id)


@pytest.fixture
async def fcm(fake_fcm: FakeFcm) -> AsyncIterator[FcmPush]:
    adapter = FcmPush(fake_fcm.push_settings(timeout_s=2.0))
    yield adapter
    await adapter.close()


@pytest.fixture
async def sendgrid(fake_sendgrid: FakeSendGrid) -> AsyncIterator[SendGridEmail]:
    adapter = SendGridEmail(
        fake_sendgrid.email_settings(timeout_s=2.0, from_address="Team Chat <chat@example.com>")
    )
    yield adapter
    await adapter.close()


@pytest.fixture
async def guarded(fake_fcm: FakeFcm) -> AsyncIterator[Providers]:
    """Both providers built from settings: short timeout, small bulkhead, 3-failure breaker."""
    settings = NotifySettings(
        push=fake_fcm.push_settings(timeout_s=0.3, concurrency=2, breaker_failures=3)
    )
    providers = build_providers(settings)
    yield providers
    await providers.close()


# -- FCM ------------------------------------------------------------------------------------


async def test_push_arrives_in_fcm_v1_shape(fake_fcm: FakeFcm, fcm: FcmPush) -> None:
    name = await fcm.send(push("job-7", channel="c1"))

    assert name == "projects/rtc-test/messages/1"
    assert fake_fcm.accepted == [
        {
            "message": {
                "token": "device-token-0123456789",
                "notification": {"title": "Alice in #general", "body": "lunch?"},
                "data": {"job_id": "job-7", "channel": "c1"},
                "android": {"priority": "high", "collapse_key": "job-7"},
            }
        }
    ]
    assert fake_fcm.by_job_id == {"job-7": 1}


async def test_access_token_is_reused_then_renewed_before_it_expires(fake_fcm: FakeFcm) -> None:
    clock = ManualClock()
    fake_fcm.token_ttl = 600
    adapter = FcmPush(fake_fcm.push_settings(), clock=clock)
    try:
        await adapter.send(push("a"))
        await adapter.send(push("b"))
        assert fake_fcm.tokens_issued == 1

        clock.advance(600 - REFRESH_MARGIN_S)  # inside the margin: the cached token is stale
        await adapter.send(push("c"))
    finally:
        await adapter.close()

    assert fake_fcm.tokens_issued == 2
    assert fake_fcm.tokens_used == ["ya29.fake-1", "ya29.fake-1", "ya29.fake-2"]


async def test_a_401_fetches_a_new_token_and_retries_once(fake_fcm: FakeFcm, fcm: FcmPush) -> None:
    await fcm.send(push("a"))
    fake_fcm.revoke_tokens()  # the cached token now looks expired to FCM

    await fcm.send(push("b"))

    assert fake_fcm.tokens_issued == 2
    assert fake_fcm.received == 3  # a, b refused with 401, b again
    assert fake_fcm.tokens_used == ["ya29.fake-1", "ya29.fake-2"]
    assert fake_fcm.by_job_id == {"a": 1, "b": 1}


async def test_credentials_the_token_endpoint_refuses_make_fcm_unavailable(
    fake_fcm: FakeFcm, tmp_path: Path
) -> None:
    account = fake_fcm.service_account()
    account["private_key"] = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    (tmp_path / "wrong.json").write_text(json.dumps(account))
    adapter = FcmPush(fake_fcm.push_settings(fcm_credentials_file=tmp_path / "wrong.json"))
    try:
        with pytest.raises(ProviderUnavailable, match="refused the credentials: 400 invalid_grant"):
            await adapter.send(push())
    finally:
        await adapter.close()
    assert fake_fcm.tokens_issued == 0
    assert fake_fcm.received == 0


async def test_unregistered_token_raises_token_unregistered(
    fake_fcm: FakeFcm, fcm: FcmPush
) -> None:
    fake_fcm.unregister("uninstalled-app-token")

    with pytest.raises(TokenUnregistered) as info:
        await fcm.send(push("a", token="uninstalled-app-token"))

    assert not info.value.retryable
    assert await fcm.send(push("b")) == "projects/rtc-test/messages/1"
    assert fake_fcm.by_job_id == {"b": 1}


async def test_429_is_rate_limited_with_retry_after(fake_fcm: FakeFcm, fcm: FcmPush) -> None:
    fake_fcm.behave("ratelimit", 7)

    with pytest.raises(RateLimited) as info:
        await fcm.send(push())

    assert info.value.retry_after == 7
    assert fake_fcm.accepted == []


async def test_500_is_unavailable_with_retry_after_when_given(
    fake_fcm: FakeFcm, fcm: FcmPush
) -> None:
    fake_fcm.behave("fail")
    with pytest.raises(ProviderUnavailable, match="fcm answered 500") as info:
        await fcm.send(push())
    assert info.value.retry_after is None

    fake_fcm.behave("fail", 3)
    with pytest.raises(ProviderUnavailable) as info:
        await fcm.send(push())
    assert info.value.retry_after == 3


async def test_other_4xx_is_rejected_with_the_providers_reason(fcm: FcmPush) -> None:
    missing_job_id = PushMessage(token="t", platform="ios", title="x", body="y", data={})

    with pytest.raises(Rejected, match=r"400: Invalid request: message\.data\.job_id") as info:
        await fcm.send(missing_job_id)

    assert not info.value.retryable
    assert not isinstance(info.value, TokenUnregistered)


async def test_refused_connection_is_unavailable_until_it_listens_again(
    fake_fcm: FakeFcm, fcm: FcmPush
) -> None:
    await fcm.send(push("a"))  # a pooled connection exists when the fake goes away
    fake_fcm.behave("refuse")

    with pytest.raises(ProviderUnavailable, match="unreachable"):
        await fcm.send(push("b"))

    fake_fcm.behave("ok")
    await fcm.send(push("c"))
    assert fake_fcm.by_job_id == {"a": 1, "c": 1}


async def test_slow_provider_is_unavailable_after_the_timeout(
    fake_fcm: FakeFcm, guarded: Providers
) -> None:
    await guarded.push.send(push("warm"))  # the token exchange is not what is timed
    fake_fcm.behave("slow", 1.0)

    started = time.perf_counter()
    with pytest.raises(ProviderUnavailable, match="timed out"):
        await guarded.push.send(push("slow"))
    elapsed = time.perf_counter() - started

    assert 0.25 <= elapsed < 0.8
    assert guarded.guards["push"].health()["consecutive_failures"] == 1


# -- the guard ------------------------------------------------------------------------------


def guard_and_send(
    fake_fcm: FakeFcm, fcm: FcmPush, clock: ManualClock, **settings: float
) -> tuple[ProviderGuard, Callable[[str], Coroutine[Any, Any, str]]]:
    guard = ProviderGuard("push", fake_fcm.push_settings(**settings), clock=clock)

    async def send(job_id: str) -> str:
        return await guard.call(lambda: fcm.send(push(job_id)))

    return guard, send


async def test_breaker_opens_fails_fast_then_a_successful_trial_closes_it(
    fake_fcm: FakeFcm, fcm: FcmPush
) -> None:
    clock = ManualClock()
    guard, send = guard_and_send(fake_fcm, fcm, clock, breaker_failures=3, breaker_reset_s=30)
    fake_fcm.behave("fail")
    for i in range(3):
        assert state(guard) == "closed"
        with pytest.raises(ProviderUnavailable, match="answered 500"):
            await send(f"j{i}")
    assert state(guard) == "open"
    assert fake_fcm.received == 3

    clock.advance(10)
    with pytest.raises(ProviderUnavailable, match="push circuit open") as info:
        await send("fast")
    assert info.value.retry_after == pytest.approx(20)
    assert fake_fcm.received == 3  # refused without reaching the provider

    clock.advance(20)
    assert state(guard) == "half-open"
    fake_fcm.behave("ok")
    assert await send("trial") == "projects/rtc-test/messages/1"

    assert state(guard) == "closed"
    health = guard.health()
    assert health["consecutive_failures"] == 0
    assert health["calls"] == 4
    assert health["failures"] == 3
    assert health["rejected"] == 1
    assert health["in_flight"] == 0
    assert health["last_latency_ms"] is not None
    assert health["last_error"] is not None
    assert "answered 500" in health["last_error"]


async def test_a_failed_trial_reopens_the_breaker(fake_fcm: FakeFcm, fcm: FcmPush) -> None:
    clock = ManualClock()
    guard, send = guard_and_send(fake_fcm, fcm, clock, breaker_failures=2, breaker_reset_s=5)
    fake_fcm.behave("fail")
    for i in range(2):
        with pytest.raises(ProviderUnavailable):
            await send(f"j{i}")
    clock.advance(5)
    assert state(guard) == "half-open"

    with pytest.raises(ProviderUnavailable, match="answered 500"):
        await send("trial")

    assert state(guard) == "open"
    assert fake_fcm.received == 3  # only the one trial reached the provider
    with pytest.raises(ProviderUnavailable, match="circuit open") as info:
        await send("fast")
    assert info.value.retry_after == pytest.approx(5)
    assert fake_fcm.received == 3


async def test_half_open_lets_exactly_one_trial_through(fake_fcm: FakeFcm, fcm: FcmPush) -> None:
    clock = ManualClock()
    guard, send = guard_and_send(
        fake_fcm, fcm, clock, breaker_failures=1, breaker_reset_s=5, timeout_s=5
    )
    await send("warm")  # fetch the access token while the provider answers
    fake_fcm.behave("fail")
    with pytest.raises(ProviderUnavailable):
        await send("down")
    clock.advance(5)
    fake_fcm.behave("slow", 0.3)

    trial = asyncio.create_task(send("trial"))
    await asyncio.to_thread(fake_fcm.wait_for_received, 3)
    with pytest.raises(ProviderUnavailable, match="circuit open"):
        await send("second")

    assert await trial == "projects/rtc-test/messages/2"
    assert state(guard) == "closed"
    assert fake_fcm.by_job_id == {"warm": 1, "trial": 1}


async def test_rate_limits_and_rejections_do_not_open_the_breaker(
    fake_fcm: FakeFcm, fcm: FcmPush
) -> None:
    guard, send = guard_and_send(fake_fcm, fcm, ManualClock(), breaker_failures=2)
    fake_fcm.behave("ratelimit", 1)
    for i in range(4):
        with pytest.raises(RateLimited):
            await send(f"r{i}")
    assert state(guard) == "closed"

    fake_fcm.behave("ok")
    fake_fcm.unregister("device-token-0123456789")
    for i in range(4):
        with pytest.raises(TokenUnregistered):
            await send(f"u{i}")
    assert state(guard) == "closed"

    # An answer from the provider also ends a run of outages.
    for mode in ("fail", "ratelimit", "fail"):
        fake_fcm.behave(mode)
        with pytest.raises((ProviderUnavailable, RateLimited)):
            await send(mode)
    assert state(guard) == "closed"
    assert guard.health()["consecutive_failures"] == 1


async def test_breaker_through_build_providers_stops_calls_reaching_the_provider(
    fake_fcm: FakeFcm, guarded: Providers
) -> None:
    fake_fcm.behave("fail")
    for i in range(3):
        with pytest.raises(ProviderUnavailable, match="answered 500"):
            await guarded.push.send(push(f"j{i}"))

    for i in range(5):
        with pytest.raises(ProviderUnavailable, match="push:fcm circuit open"):
            await guarded.push.send(push(f"fast{i}"))

    assert fake_fcm.received == 3
    health = guarded.guards["push"].health()
    assert health["state"] == "open"
    assert health["consecutive_failures"] == 3
    assert health["rejected"] == 5
    assert guarded.guards["email"].state == "closed"


async def test_bulkhead_refuses_a_call_beyond_concurrency_at_once(fake_fcm: FakeFcm) -> None:
    settings = fake_fcm.push_settings(concurrency=2, timeout_s=5)
    guarded = build_providers(NotifySettings(push=settings))
    await guarded.push.send(push("warm"))
    fake_fcm.behave("slow", 0.3)
    first = asyncio.create_task(guarded.push.send(push("a")))
    second = asyncio.create_task(guarded.push.send(push("b")))
    await asyncio.to_thread(fake_fcm.wait_for_received, 3)
    assert guarded.guards["push"].health()["in_flight"] == 2

    started = time.perf_counter()
    with pytest.raises(ProviderUnavailable, match="bulkhead full"):
        await guarded.push.send(push("c"))
    assert time.perf_counter() - started < 0.1

    assert fake_fcm.received == 3
    await asyncio.gather(first, second)
    await guarded.close()
    assert fake_fcm.by_job_id == {"warm": 1, "a": 1, "b": 1}
    assert guarded.guards["push"].state == "closed"  # a full bulkhead is not an outage


async def test_guard_times_out_a_call_that_never_answers() -> None:
    guard = ProviderGuard("test", PushSettings(timeout_s=0.05))
    never = asyncio.Event()

    async def hang() -> str:
        await never.wait()
        return "unreachable"

    with pytest.raises(ProviderUnavailable, match=r"test timed out after 0\.05 s"):
        await guard.call(hang)
    assert guard.health()["in_flight"] == 0
    assert guard.health()["consecutive_failures"] == 1


async def test_guard_does_not_count_our_own_bugs_as_outages() -> None:
    guard = ProviderGuard("test", PushSettings(breaker_failures=1))

    async def broken() -> str:
        raise RuntimeError("bug")

    for _ in range(3):
        with pytest.raises(RuntimeError):
            await guard.call(broken)
    assert state(guard) == "closed"
    assert guard.health()["last_error"] == "RuntimeError: bug"


# -- SendGrid -------------------------------------------------------------------------------


async def test_email_arrives_in_sendgrid_shape_and_returns_the_message_id(
    fake_sendgrid: FakeSendGrid, sendgrid: SendGridEmail
) -> None:
    message_id = await sendgrid.send(email("job-9"))

    assert message_id == "fake-sg-1"
    assert fake_sendgrid.accepted == [
        {
            "personalizations": [
                {"to": [{"email": "bob@example.com"}], "custom_args": {"job_id": "job-9"}}
            ],
            "from": {"email": "chat@example.com", "name": "Team Chat"},
            "subject": "Unread in #general",
            "content": [{"type": "text/plain", "value": "Alice: lunch?"}],
        }
    ]
    assert fake_sendgrid.by_job_id == {"job-9": 1}
    assert await asyncio.to_thread(fake_sendgrid.wait_for, 1) == fake_sendgrid.accepted


async def test_sendgrid_failures_map_like_fcm(
    fake_sendgrid: FakeSendGrid, sendgrid: SendGridEmail
) -> None:
    fake_sendgrid.behave("ratelimit", 12)
    with pytest.raises(RateLimited) as limited:
        await sendgrid.send(email())
    assert limited.value.retry_after == 12

    fake_sendgrid.behave("fail")
    with pytest.raises(ProviderUnavailable, match="sendgrid answered 500"):
        await sendgrid.send(email())

    fake_sendgrid.behave("refuse")
    with pytest.raises(ProviderUnavailable, match="unreachable"):
        await sendgrid.send(email())

    fake_sendgrid.behave("ok")
    with pytest.raises(Rejected, match=r"400: personalizations\[0\]\.to\[0\]\.email"):
        await sendgrid.send(email(to="not-an-address"))

    assert await sendgrid.send(email("ok")) == "fake-sg-1"
    assert fake_sendgrid.by_job_id == {"ok": 1}


async def test_sendgrid_with_a_wrong_api_key_is_unavailable(fake_sendgrid: FakeSendGrid) -> None:
    adapter = SendGridEmail(fake_sendgrid.email_settings(sendgrid_api_key=SecretStr("SG.wrong")))
    try:
        with pytest.raises(ProviderUnavailable, match="refused the API key: 401"):
            await adapter.send(email())
    finally:
        await adapter.close()
    assert fake_sendgrid.accepted == []


async def test_slow_sendgrid_is_unavailable_after_the_timeout(
    fake_sendgrid: FakeSendGrid,
) -> None:
    providers = build_providers(NotifySettings(email=fake_sendgrid.email_settings(timeout_s=0.3)))
    fake_sendgrid.behave("slow", 1.0)
    started = time.perf_counter()
    try:
        with pytest.raises(ProviderUnavailable, match="timed out"):
            await providers.email.send(email())
    finally:
        await providers.close()
    assert 0.25 <= time.perf_counter() - started < 0.8


# -- the factory and the log providers ------------------------------------------------------


async def test_default_providers_log_without_message_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="realtimechat.providers")
    providers = build_providers(NotifySettings())
    try:
        assert providers.push.name == providers.email.name == "log"
        assert set(providers.guards) == {"push", "email"}
        assert (await providers.push.send(push("job-p"))).startswith("log-push-")
        assert (await providers.email.send(email("job-e"))).startswith("log-email-")
    finally:
        await providers.close()

    lines = [r.getMessage() for r in caplog.records if r.name.startswith("realtimechat.providers")]
    assert len(lines) == 2
    assert "job-p" in lines[0]
    assert "device-t" in lines[0]
    assert "device-token-0123456789" not in lines[0]
    assert "job-e" in lines[1]
    assert "bob@example.com" in lines[1]
    for text in ("Alice", "lunch", "Unread"):
        assert all(text not in line for line in lines)
    assert providers.guards["push"].health()["calls"] == 1


async def test_missing_credentials_fail_at_start_up(tmp_path: Path, fake_fcm: FakeFcm) -> None:
    with pytest.raises(ValueError, match="FCM_CREDENTIALS_FILE"):
        build_providers(NotifySettings(push=PushSettings(provider="fcm")))

    account = fake_fcm.service_account()
    del account["project_id"]
    (tmp_path / "no-project.json").write_text(json.dumps(account))
    no_project = PushSettings(provider="fcm", fcm_credentials_file=tmp_path / "no-project.json")
    with pytest.raises(ValueError, match="FCM_PROJECT_ID"):
        build_providers(NotifySettings(push=no_project))
    with_project = no_project.model_copy(update={"fcm_project_id": "explicit"})
    assert FcmPush(with_project).project == "explicit"

    del account["private_key"]
    (tmp_path / "no-key.json").write_text(json.dumps(account))
    with pytest.raises(ValueError, match="lacks private_key"):
        FcmPush(PushSettings(provider="fcm", fcm_credentials_file=tmp_path / "no-key.json"))

    with pytest.raises(ValueError, match="SENDGRID_API_KEY"):
        build_providers(NotifySettings(email=EmailSettings(provider="sendgrid")))
