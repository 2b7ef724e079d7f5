"""Push and e-mail notifications end to end: a server process, its in-process worker,
and fake FCM and SendGrid servers on real sockets that can be slowed, failed or
rate limited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fake_providers import FakeFcm, FakeSendGrid
from tests.integration.rest_support import assert_problem
from tests.support import OPERATOR, Api, ServerProcess, eventually, new_user, running_server, unique

ADMIN = "admin-secret-for-tests"
# Short delays so a test sees retries, e-mails and breakers within seconds.
FAST = {
    "RTC_NOTIFY__POLL_S": "0.05",
    "RTC_NOTIFY__EMAIL_DELAY_S": "1",
    "RTC_NOTIFY__BACKOFF_BASE_S": "0.2",
    "RTC_NOTIFY__BACKOFF_MAX_S": "0.5",
    "RTC_NOTIFY__PUSH__TIMEOUT_S": "0.5",
    "RTC_NOTIFY__PUSH__BREAKER_FAILURES": "3",
    "RTC_NOTIFY__PUSH__BREAKER_RESET_S": "1",
    "RTC_ADMIN_TOKEN": ADMIN,
    "RTC_LIMITS__USER_REQUESTS_PER_MINUTE": "100000",
    "RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE": "100000",
}


@pytest.fixture(scope="module")
def fcm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFcm]:
    with FakeFcm() as fake:
        fake.write_credentials(tmp_path_factory.mktemp("fcm") / "service-account.json")
        yield fake


@pytest.fixture(scope="module")
def sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture(scope="module")
async def node(
    tmp_path_factory: pytest.TempPathFactory, fcm: FakeFcm, sendgrid: FakeSendGrid
) -> AsyncIterator[ServerProcess]:
    env = {**FAST, **fcm.env(), **sendgrid.env()}
    async with running_server(tmp_path_factory.mktemp("notify"), **env) as server:
        yield server


@pytest.fixture(autouse=True)
async def providers_ok(
    node: ServerProcess, fcm: FakeFcm, sendgrid: FakeSendGrid
) -> AsyncIterator[None]:
    """Each test starts with providers up and nothing left over from the one before."""
    fcm.behave("ok")
    sendgrid.behave("ok")
    anonymous = Api(node)
    await until_settled(node, anonymous)
    await anonymous.aclose()
    fcm.clear()
    sendgrid.clear()
    yield
    fcm.behave("ok")
    sendgrid.behave("ok")


async def readyz(server: ServerProcess, api: Api) -> dict[str, Any]:
    resp = await api.request("GET", "/readyz", headers=OPERATOR)
    body: dict[str, Any] = resp.json()
    return body


async def jobs(server: ServerProcess, api: Api) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = (await readyz(server, api))["checks"]["notifications"][
        "jobs"
    ]
    return counts


async def until_settled(server: ServerProcess, api: Api) -> dict[str, dict[str, int]]:
    """Wait until no job is pending or being sent; the counts then."""

    async def settled() -> dict[str, dict[str, int]] | None:
        counts = await jobs(server, api)
        busy = any(c.get("pending", 0) or c.get("sending", 0) for c in counts.values())
        return None if busy else counts

    result: dict[str, dict[str, int]] = await eventually(settled)
    return result


async def pair(node: ServerProcess) -> tuple[Api, Api, str, str]:
    """Alice and Bob, Bob with a phone, and their DM channel; (alice, bob, channel, token)."""
    alice = await new_user(node, "alice")
    bob = await new_user(node, "bob")
    token = unique("bob-phone")
    await bob.ok("POST", "/api/v1/devices", 201, json={"platform": "android", "token": token})
    team = await alice.create_team()
    await alice.add_to_team(team["id"], bob)  # a DM is between people who share a team
    dm = await alice.ok("POST", "/api/v1/dms", (200, 201), json={"user_id": bob.user_id})
    return alice, bob, dm["id"], token


def delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {
        kind: {s: n - before.get(kind, {}).get(s, 0) for s, n in states.items()}
        for kind, states in after.items()
    }


async def test_a_dm_gives_one_push_and_if_unread_one_email(
    node: ServerProcess, fcm: FakeFcm, sendgrid: FakeSendGrid
) -> None:
    alice, bob, dm, token = await pair(node)
    before = await until_settled(node, alice)
    await alice.send(dm, "lunch at noon?")
    [push] = await asyncio.to_thread(fcm.wait_for, 1)
    message = push["message"]
    assert message["token"] == token
    assert message["notification"] == {"title": "alice", "body": "lunch at noon?"}
    assert message["data"]["channel_id"] == dm
    [mail] = await asyncio.to_thread(sendgrid.wait_for, 1)
    assert mail["personalizations"][0]["to"] == [{"email": bob.email}]
    assert "lunch at noon?" in mail["content"][0]["value"]
    after = await until_settled(node, alice)
    assert delta(after, before)["push"].get("sent") == 1
    assert delta(after, before)["email"].get("sent") == 1
    # Settled: nothing more can be sent for this message.
    assert len(fcm.accepted) == 1
    assert len(sendgrid.accepted) == 1
    assert set(fcm.by_job_id.values()) == {1}
    await alice.aclose()
    await bob.aclose()


async def test_what_was_read_in_time_is_not_emailed_and_unread_items_share_one_email(
    node: ServerProcess, fcm: FakeFcm, sendgrid: FakeSendGrid
) -> None:
    alice, bob, dm, _ = await pair(node)
    before = await until_settled(node, alice)
    first = await alice.send(dm, "first")
    await bob.ok("POST", f"/api/v1/channels/{dm}/read", 200, json={"seq": first["seq"]})
    await alice.send(dm, "second")
    await alice.send(dm, "third")
    await until_settled(node, alice)
    after = await jobs(node, alice)
    assert delta(after, before)["email"] == {
        **delta(after, before)["email"],
        "sent": 2,
        "skipped": 1,
    }
    [mail] = sendgrid.accepted
    text = mail["content"][0]["value"]
    assert "second" in text
    assert "third" in text
    assert "first" not in text
    assert mail["subject"].startswith("2 unread messages")
    await alice.aclose()
    await bob.aclose()


async def test_mentions_and_small_channels_decide_who_is_told(
    node: ServerProcess, fcm: FakeFcm
) -> None:
    owner = await new_user(node, "owner")
    carol = await new_user(node, "carol")
    team = await owner.create_team()
    # More members than a small channel has: only a mention tells anyone.
    crowd = [await new_user(node, f"member{i}") for i in range(11)]
    for user in (carol, *crowd):
        await owner.add_to_team(team["id"], user)
    channel = await owner.create_channel(team["id"], "crowd")
    for user in (carol, *crowd):
        await owner.join(channel["id"], user)
    token = unique("carol-phone")
    await carol.ok("POST", "/api/v1/devices", 201, json={"platform": "ios", "token": token})
    await owner.send(channel["id"], "nobody in particular")
    await owner.send(channel["id"], "@carol have a look")
    [push] = await asyncio.to_thread(fcm.wait_for, 1)
    assert push["message"]["token"] == token
    assert push["message"]["notification"]["body"] == "@carol have a look"
    await until_settled(node, owner)
    assert len(fcm.accepted) == 1
    for user in (owner, carol, *crowd):
        await user.aclose()


async def test_a_provider_that_hangs_does_not_slow_sends_and_catches_up_after(
    node: ServerProcess, fcm: FakeFcm
) -> None:
    alice, bob, dm, _ = await pair(node)

    async def send_latencies(n: int) -> list[float]:
        out = []
        for i in range(n):
            started = time.perf_counter()
            await alice.send(dm, f"message {i}")
            out.append(time.perf_counter() - started)
        return sorted(out)

    up = await send_latencies(40)
    await asyncio.to_thread(fcm.wait_for, 40, 30)
    fcm.behave("slow", 30)  # every push hangs until the adapter's 0.5 s timeout
    down = await send_latencies(40)
    # Generous: a send must not wait for the provider (0.5 s timeouts, breaker opening).
    assert down[-1] < max(5 * up[-1], up[-1] + 0.25), (up[-1], down[-1])
    fcm.behave("ok")
    await asyncio.to_thread(fcm.wait_for, 80, 60)
    await until_settled(node, alice)
    await alice.aclose()
    await bob.aclose()


async def test_the_breaker_opens_after_failures_and_closes_after_recovery(
    node: ServerProcess, fcm: FakeFcm
) -> None:
    alice, bob, dm, _ = await pair(node)
    fcm.behave("fail")
    for i in range(5):
        await alice.send(dm, f"while FCM fails {i}")

    async def breaker(state: str) -> dict[str, Any] | None:
        ready = await readyz(node, alice)
        push = ready["checks"]["notifications"]["push"]
        return ready if push["state"] == state else None

    ready = await eventually(lambda: breaker("open"))
    assert ready["status"] == "degraded"
    assert ready["checks"]["notifications"]["status"] == "degraded"
    fcm.behave("ok")
    await asyncio.to_thread(fcm.wait_for, 5, 30)
    ready = await eventually(lambda: breaker("closed"))
    assert ready["checks"]["notifications"]["status"] == "ok"
    await until_settled(node, alice)
    assert set(fcm.by_job_id.values()) == {1}
    await alice.aclose()
    await bob.aclose()


async def test_retry_after_of_a_429_is_honoured(node: ServerProcess, fcm: FakeFcm) -> None:
    alice, bob, dm, _ = await pair(node)
    fcm.behave("ratelimit", 2)
    await alice.send(dm, "rate limited")
    await asyncio.to_thread(fcm.wait_for_received, 1)
    refused_at = time.monotonic()
    fcm.behave("ok")
    await asyncio.to_thread(fcm.wait_for, 1, 30)
    assert time.monotonic() - refused_at >= 1.8
    await alice.aclose()
    await bob.aclose()


async def test_an_unregistered_token_forgets_the_device(node: ServerProcess, fcm: FakeFcm) -> None:
    alice, bob, dm, token = await pair(node)
    fcm.unregister(token)
    await alice.send(dm, "are you there?")

    async def forgotten() -> bool:
        devices: list[Any] = (await bob.ok("GET", "/api/v1/devices", 200))["devices"]
        return devices == []

    await eventually(forgotten)
    assert fcm.accepted == []
    await alice.aclose()
    await bob.aclose()


async def test_the_kill_switch_holds_jobs_and_lets_them_go(
    node: ServerProcess, fcm: FakeFcm, sendgrid: FakeSendGrid
) -> None:
    alice, bob, dm, _ = await pair(node)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    wrong = await alice.request("PUT", "/api/v1/admin/flags/push", json={"enabled": False})
    assert_problem(wrong, 401, "unauthorized")
    unknown = await alice.request(
        "PUT", "/api/v1/admin/flags/teleport", json={"enabled": False}, headers=admin
    )
    assert_problem(unknown, 404, "not_found")
    await alice.ok("PUT", "/api/v1/admin/flags/push", 200, json={"enabled": False}, headers=admin)
    try:
        await alice.send(dm, "held back")
        # The e-mail (still on) goes out a second later: the dispatcher has run past
        # the push's due time, and held it.
        await asyncio.to_thread(sendgrid.wait_for, 1)
        assert fcm.received == 0
        assert (await jobs(node, alice))["push"].get("pending", 0) >= 1
    finally:
        await alice.ok(
            "PUT", "/api/v1/admin/flags/push", 200, json={"enabled": True}, headers=admin
        )
    [push] = await asyncio.to_thread(fcm.wait_for, 1)
    assert push["message"]["notification"]["body"] == "held back"
    flags = await alice.ok("GET", "/api/v1/admin/flags", 200, headers=admin)
    assert {"name": "push", "enabled": True} in [
        {k: f[k] for k in ("name", "enabled")} for f in flags["flags"]
    ]
    await alice.aclose()
    await bob.aclose()


def test_flags_command_switches_a_flag(tmp_path: Path) -> None:
    import subprocess
    import sys

    def rtc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "realtimechat", *args, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def flags(*args: str) -> subprocess.CompletedProcess[str]:
        return rtc("flags", *args)

    # Pointed at a directory with no server's data, it says so instead of creating some.
    nowhere = flags("email", "off")
    assert nowhere.returncode == 2
    assert "no database at" in nowhere.stderr
    assert not any(tmp_path.iterdir())
    assert rtc("migrate").returncode == 0
    off = flags("email", "off")
    assert off.returncode == 0, off.stderr
    assert any(line.split()[:2] == ["email", "off"] for line in off.stdout.splitlines())
    listed = flags()
    assert any(line.split()[:2] == ["email", "off"] for line in listed.stdout.splitlines())
    assert any(line.split()[:2] == ["push", "on"] for line in listed.stdout.splitlines())
    bad = flags("teleport", "on")
    assert bad.returncode == 2
    assert "known flags" in bad.stderr


async def scrape(api: Api) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    resp = await api.request("GET", "/metrics", headers=OPERATOR)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


async def test_metrics_show_breakers_jobs_attempts_and_latency(
    node: ServerProcess, fcm: FakeFcm
) -> None:
    alice, bob, dm, _ = await pair(node)
    before = await scrape(alice)
    ok = ("rtc_provider_calls_total", (("outcome", "ok"), ("provider", "push:fcm")))
    await alice.send(dm, "counted")
    await asyncio.to_thread(fcm.wait_for, 1)
    await until_settled(node, alice)
    after = await scrape(alice)
    assert after[ok] == before.get(ok, 0) + 1
    latency = ("rtc_provider_call_seconds_count", (("provider", "push:fcm"),))
    assert after[latency] == before.get(latency, 0) + 1
    assert after[("rtc_provider_breaker_state", (("provider", "push:fcm"),))] == 0
    sent = ("rtc_notification_jobs", (("kind", "push"), ("state", "sent")))
    assert after[sent] >= 1
    assert after[("rtc_notification_jobs", (("kind", "push"), ("state", "pending")))] == 0
    result = ("rtc_notification_results_total", (("kind", "push"), ("result", "sent")))
    assert after[result] == before.get(result, 0) + 1
    await alice.aclose()
    await bob.aclose()
