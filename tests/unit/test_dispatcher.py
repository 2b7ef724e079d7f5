"""NotificationDispatcher on the fake unit of work, scripted providers and a manual
clock: retries with backoff (never before the provider's Retry-After), gives up
after the last attempt, skips what no longer should go out."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from realtimechat.domain.models import Channel, Message
from realtimechat.providers.base import (
    EmailMessage,
    ProviderError,
    PushMessage,
    Refused,
    Rejected,
    TokenUnregistered,
)
from realtimechat.providers.factory import Providers
from realtimechat.providers.guard import ProviderGuard
from realtimechat.services.dispatcher import NotificationDispatcher
from realtimechat.settings import NotifySettings, ProviderSettings
from tests.support.clock import ManualMsClock
from tests.support.fake_uow import FakeUnitOfWork, JobRow, MemberRow, seed_users

_guards = iter(range(1_000_000))


@dataclass
class ScriptedPush:
    """Answers each send with the next scripted outcome (an exception or a message id)."""

    name: str = "scripted"
    script: list[Exception | str] = field(default_factory=list)
    sent: list[PushMessage] = field(default_factory=list)

    async def send(self, msg: PushMessage) -> str:
        outcome = self.script.pop(0) if self.script else "ok"
        if isinstance(outcome, Exception):
            raise outcome
        self.sent.append(msg)
        return outcome

    async def close(self) -> None:
        return None


@dataclass
class ScriptedEmail:
    name: str = "scripted"
    sent: list[EmailMessage] = field(default_factory=list)

    async def send(self, msg: EmailMessage) -> str:
        self.sent.append(msg)
        return "ok"

    async def close(self) -> None:
        return None


@dataclass
class World:
    uow: FakeUnitOfWork
    clock: ManualMsClock
    push: ScriptedPush
    email: ScriptedEmail
    dispatcher: NotificationDispatcher

    def job(self) -> JobRow:
        return self.uow.state.jobs["j1"]


def guard(kind: str) -> ProviderGuard:
    # Each a metrics name of its own: the guard registers gauges under it.
    return ProviderGuard(f"test-{kind}-{next(_guards)}", ProviderSettings())


@pytest.fixture
def world() -> World:
    clock = ManualMsClock()
    uow = FakeUnitOfWork(clock=clock)
    seed_users(uow, "ada", "bob")
    s = uow.state
    s.channels["dm"] = Channel("dm", None, "dm", "", 1, "e", "ada", 0)
    s.members[("dm", "ada")] = MemberRow("member", 1, 0)
    s.members[("dm", "bob")] = MemberRow("member", 0, 0)
    s.messages["m1"] = (Message("m1", "dm", 1, "ada", "c1", "hi bob", [], 1, 0, None, None), "h")
    s.jobs["j1"] = JobRow("j1", "bob", "dm", 1, "push", "dm", "pending", clock())
    push, email = ScriptedPush(), ScriptedEmail()
    providers = Providers(push, email, {"push": guard("push"), "email": guard("email")})
    settings = NotifySettings(max_attempts=3, backoff_base_s=1, backoff_max_s=1)
    dispatcher = NotificationDispatcher(
        uow=uow, providers=providers, settings=settings, clock=clock
    )
    return World(uow, clock, push, email, dispatcher)


async def register_device(w: World) -> None:
    await w.uow.write(lambda tx: tx.notifications.register_device("bob", "android", "tok", 0))


async def test_a_failed_push_is_retried_no_sooner_than_retry_after(world: World) -> None:
    await register_device(world)
    world.push.script = [ProviderError("503 from the provider", retry_after=5)]
    assert await world.dispatcher.run_once() == 1
    job = world.job()
    assert (job.state, job.attempts, job.due_at) == ("pending", 1, world.clock() + 5000)
    assert job.last_error == "ProviderError: 503 from the provider"
    world.clock.advance(4.999)
    assert await world.dispatcher.run_once() == 0  # not due yet
    world.clock.advance(0.001)
    assert await world.dispatcher.run_once() == 1
    assert (world.job().state, world.job().attempts) == ("sent", 2)
    assert [m.body for m in world.push.sent] == ["hi bob"]
    assert world.dispatcher.sent == 1


async def test_a_job_is_dead_after_the_last_attempt(world: World) -> None:
    await register_device(world)
    world.push.script = [ProviderError("down", retry_after=1) for _ in range(3)]
    for _ in range(3):
        assert await world.dispatcher.run_once() == 1
        world.clock.advance(1)
    assert (world.job().state, world.job().attempts) == ("dead", 3)
    assert await world.dispatcher.run_once() == 0


async def test_a_rejected_push_is_dead_at_once_and_a_refused_one_keeps_its_attempt(
    world: World,
) -> None:
    await register_device(world)
    world.push.script = [Refused("breaker open", retry_after=2)]
    await world.dispatcher.run_once()
    job = world.job()
    assert (job.state, job.attempts, job.due_at) == ("pending", 0, world.clock() + 2000)
    world.clock.advance(2)
    world.push.script = [Rejected("400 bad payload")]
    await world.dispatcher.run_once()
    assert (world.job().state, world.job().attempts) == ("dead", 1)


async def test_what_should_no_longer_go_out_is_skipped(world: World) -> None:
    await world.dispatcher.run_once()  # no device
    assert (world.job().state, world.job().last_error) == ("skipped", "no device registered")
    world.uow.state.jobs["j1"] = JobRow("j1", "bob", "dm", 1, "push", "dm", "pending", 0)
    await register_device(world)
    world.push.script = [TokenUnregistered("gone")]
    await world.dispatcher.run_once()
    assert world.job().state == "skipped"
    assert world.uow.state.devices == {}  # the dead token is forgotten


async def test_a_switched_off_kind_waits_and_claims_nothing(world: World) -> None:
    await register_device(world)
    world.uow.state.flags["push"] = False
    assert await world.dispatcher.run_once() == 0
    assert (world.job().state, world.job().attempts) == ("pending", 0)
    world.uow.state.flags["push"] = True
    assert await world.dispatcher.run_once() == 1
    assert world.job().state == "sent"
