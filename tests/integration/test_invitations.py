"""Adding by e-mail invites, and says nothing about whether the address has an account."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from realtimechat.domain.errors import TooManyInvitations
from realtimechat.domain.models import User
from realtimechat.services.channels import ChannelService
from realtimechat.settings import LimitSettings, Settings
from realtimechat.storage.database import Database
from realtimechat.storage.migrate import upgrade
from realtimechat.storage.uow import SqlTx, SqlUnitOfWork
from tests.integration.rest_support import assert_problem, missing_id, team_with
from tests.postgres import postgres_server
from tests.support import Api, ServerProcess, WsClient, new_user, running_server, unique

# Headers that differ between any two answers, whatever they are about.
VOLATILE = {"date", "x-request-id", "ratelimit-remaining", "ratelimit-reset"}


def members_path(team_id: str) -> str:
    return f"/api/v1/teams/{team_id}/members"


def address_like(email: str) -> str:
    """A fresh address no account has, as long as `email` (so the answers' lengths match)."""
    local, domain = email.split("@")
    prefix = local.rsplit("-", 1)[0]
    fresh = f"{prefix}-{uuid.uuid4().hex[: len(local) - len(prefix) - 1]}@{domain}"
    assert len(fresh) == len(email)
    return fresh


def comparable(resp: httpx.Response, email: str) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and headers of an answer, with the address and volatile headers left out."""
    headers = sorted((k, v) for k, v in resp.headers.items() if k.lower() not in VOLATILE)
    return resp.status_code, resp.content.replace(email.encode(), b"<email>"), headers


async def member_ids(api: Api, team_id: str) -> set[str]:
    return {m["user_id"] for m in (await api.ok("GET", members_path(team_id), 200))["members"]}


async def team_ids(api: Api) -> list[str]:
    return [t["id"] for t in (await api.ok("GET", "/api/v1/teams", 200))["teams"]]


async def register(server: ServerProcess, email: str, name: str = "newcomer") -> Api:
    """Open an account for `email` and log in."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as anon:
        reg = await anon.post(
            "/api/v1/auth/register",
            json={"email": email, "password": "correct horse", "display_name": name},
        )
        assert reg.status_code == 201, reg.text
        login = await anon.post(
            "/api/v1/auth/login", json={"email": email, "password": "correct horse"}
        )
        assert login.status_code == 200, login.text
    api = Api(server, login.json()["access_token"])
    api.user_id, api.email = reg.json()["id"], email
    return api


# ---- the answer --------------------------------------------------------------------------
async def test_known_and_unknown_addresses_get_the_same_answer(
    alice: Api, bob: Api, carol: Api
) -> None:
    team_id = await team_with(alice, carol)
    path = members_path(team_id)
    nobody = address_like(bob.email)

    known = await alice.request("POST", path, json={"email": f"  {bob.email.upper()} "})
    unknown = await alice.request("POST", path, json={"email": f"  {nobody.upper()} "})
    assert known.status_code == 202, known.text
    assert known.json() == {"invited": True, "email": bob.email}
    assert unknown.json() == {"invited": True, "email": nobody}
    assert comparable(known, bob.email) == comparable(unknown, nobody)
    # Nothing about Bob reached the inviter, and he is not in the team yet.
    assert bob.user_id not in known.text
    assert bob.user_id not in await member_ids(alice, team_id)

    # A member who is no admin may not invite; an outsider learns nothing about the team.
    assert_problem(await carol.request("POST", path, json={"email": nobody}), 403, "forbidden")
    hidden = assert_problem(
        await bob.request("POST", path, json={"email": nobody}), 404, "not_found"
    )
    absent = await bob.request("POST", members_path(missing_id()), json={"email": nobody})
    assert absent.json() == hidden
    # An address register would refuse is refused here too, and nothing is stored.
    for bad in ("not-an-address", "a@b", "two@at@example.com", "sp ace@example.com"):
        assert_problem(
            await alice.request("POST", path, json={"email": bad}), 422, "validation_error"
        )
    assert await member_ids(alice, team_id) == {alice.user_id, carol.user_id}


async def test_an_invited_account_joins_when_it_lists_its_teams(alice: Api, bob: Api) -> None:
    team_id = await team_with(alice)
    first = await alice.ok("POST", members_path(team_id), 202, json={"email": bob.email})
    again = await alice.ok("POST", members_path(team_id), 202, json={"email": bob.email})
    assert first == again  # a repeat refreshes the one invitation
    assert bob.user_id not in await member_ids(alice, team_id)

    teams = (await bob.ok("GET", "/api/v1/teams", 200))["teams"]
    assert [(t["id"], t["role"]) for t in teams] == [(team_id, "member")]
    assert await member_ids(alice, team_id) == {alice.user_id, bob.user_id}
    # Used up: listing again changes nothing, and Bob can do what members do.
    assert await team_ids(bob) == [team_id]
    channel = await bob.create_channel(team_id, "bobs")
    assert channel["team_id"] == team_id


async def test_an_address_that_registers_later_joins_too(server: ServerProcess, alice: Api) -> None:
    team_id = await team_with(alice)
    email = f"{unique('later')}@example.com"
    await alice.ok("POST", members_path(team_id), 202, json={"email": email.upper()})
    newcomer = await register(server, email)
    try:
        assert newcomer.user_id not in await member_ids(alice, team_id)
        assert await team_ids(newcomer) == [team_id]
        assert newcomer.user_id in await member_ids(alice, team_id)
    finally:
        await newcomer.aclose()


async def test_an_invited_account_joins_when_it_connects(
    server: ServerProcess, alice: Api, bob: Api
) -> None:
    team_id = await team_with(alice)
    general = await alice.create_channel(team_id, "general")
    await alice.ok("POST", members_path(team_id), 202, json={"email": bob.email})
    ws = await WsClient.connect(server, bob.token or "")
    try:
        assert bob.user_id in await member_ids(alice, team_id)
        # A team member now: Bob may join the team's public channel, and is told live.
        await bob.join(general["id"], bob)
        (joined,) = await ws.events(1, general["id"])
        assert joined["event"] == "member.joined"
        assert joined["data"]["user_id"] == bob.user_id
    finally:
        await ws.close()


async def test_an_invitation_to_a_member_changes_nothing(alice: Api, bob: Api) -> None:
    team_id = await team_with(alice, bob)
    await alice.ok("POST", members_path(team_id), 202, json={"email": bob.email})
    await alice.ok("POST", members_path(team_id), 202, json={"email": alice.email})
    assert await team_ids(bob) == [team_id]
    assert await team_ids(alice) == [team_id]
    members = (await alice.ok("GET", members_path(team_id), 200))["members"]
    assert {m["user_id"]: m["role"] for m in members} == {
        alice.user_id: "owner",
        bob.user_id: "member",
    }


# ---- the bound, over HTTP ---------------------------------------------------------------
@pytest.fixture(scope="module")
async def small(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """A server with room for three pending invitations per team."""
    tmp = tmp_path_factory.mktemp("invitations-3")
    async with running_server(tmp, RTC_LIMITS__TEAM_INVITATIONS_MAX="3") as srv:
        yield srv


async def test_a_team_has_a_bounded_number_of_pending_invitations(small: ServerProcess) -> None:
    alice = await new_user(small, "alice")
    try:
        team_id = await team_with(alice)
        path = members_path(team_id)
        invited = [f"{unique('inv')}@example.com" for _ in range(3)]
        for email in invited:
            await alice.ok("POST", path, 202, json={"email": email})
        # Refreshing one of them is not a new one.
        await alice.ok("POST", path, 202, json={"email": invited[0]})
        extra = f"{unique('inv')}@example.com"
        full = assert_problem(
            await alice.request("POST", path, json={"email": extra}), 409, "too_many_invitations"
        )
        assert full["limit"] == 3
        # An accepted invitation is no longer pending: there is room again.
        newcomer = await register(small, invited[1])
        try:
            assert await team_ids(newcomer) == [team_id]
        finally:
            await newcomer.aclose()
        await alice.ok("POST", path, 202, json={"email": extra})
    finally:
        await alice.aclose()


# ---- expiry, on a clock the test moves ---------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlUnitOfWork]:
    async with contextlib.AsyncExitStack() as stack:
        settings = Settings(data_dir=tmp_path)
        if request.param == "postgres":
            pg = await stack.enter_async_context(postgres_server())
            settings = Settings(data_dir=tmp_path, database_url=pg.url)
        await asyncio.to_thread(upgrade, settings)
        database = Database(settings)
        database.start()
        try:
            yield SqlUnitOfWork(database)
        finally:
            await database.close()


async def test_an_invitation_expires_and_an_expired_one_takes_no_room(db: SqlUnitOfWork) -> None:
    def users(tx: SqlTx) -> None:
        for uid in ("owner", "u2", "u3"):
            tx.users.add(User(uid, f"{uid}@example.com", uid, 0), "h")

    await db.write(users)
    now = [1_000_000]
    limits = LimitSettings(team_invitations_max=1, invitation_ttl_s=60)
    channels = ChannelService(uow=db, limits=limits, clock=lambda: now[0])
    team = await channels.create_team("owner", "Acme")

    invitation = await channels.invite_to_team("owner", team.id, "U2@example.com")
    assert (invitation.created_at, invitation.expires_at) == (now[0], now[0] + 60_000)
    with pytest.raises(TooManyInvitations):
        await channels.invite_to_team("owner", team.id, "u3@example.com")
    now[0] += 60_000  # the moment it expires
    assert await channels.list_teams("u2") == []
    await channels.invite_to_team("owner", team.id, "u3@example.com")  # the expired one left
    assert [t.id for t in await channels.list_teams("u3")] == [team.id]
    assert {m.user_id for m in await channels.team_members("owner", team.id)} == {"owner", "u3"}
    # Inviting again renews an invitation: u2 is let in while the new one lasts.
    await channels.invite_to_team("owner", team.id, "u2@example.com")
    now[0] += 59_999
    assert await channels.subscriptions("u2") == []  # connecting accepts it too
    assert "u2" in {m.user_id for m in await channels.team_members("owner", team.id)}
    assert [t.id for t in await channels.list_teams("u2")] == [team.id]


@contextlib.contextmanager
def recorded_statements() -> Iterator[list[str]]:
    """Every SQL statement any engine runs meanwhile (the database's threads included)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        sa.event.remove(Engine, "before_cursor_execute", record)


async def test_known_and_unknown_addresses_cost_the_same_statements(db: SqlUnitOfWork) -> None:
    def users(tx: SqlTx) -> None:
        for uid in ("owner", "known"):
            tx.users.add(User(uid, f"{uid}@example.com", uid, 0), "h")

    await db.write(users)
    channels = ChannelService(uow=db)
    team = await channels.create_team("owner", "Acme")
    with recorded_statements() as for_known:
        await channels.invite_to_team("owner", team.id, "known@example.com")
    with recorded_statements() as for_unknown:
        await channels.invite_to_team("owner", team.id, "nobody@example.com")
    assert for_known, "no statement was recorded"
    assert for_known == for_unknown
    assert not any("users" in sql for sql in for_known), for_known
