"""The contract of devices and notification settings (both backends)."""

from __future__ import annotations

from tests.integration.rest_support import assert_problem, missing_id
from tests.support import Api, team_channel, unique


async def test_a_device_is_registered_once_listed_and_deleted(alice: Api, bob: Api) -> None:
    token = unique("fcm-token")
    first = await alice.ok(
        "POST", "/api/v1/devices", 201, json={"platform": "android", "token": token}
    )
    again = await alice.ok(
        "POST", "/api/v1/devices", 200, json={"platform": "android", "token": token}
    )
    assert again["id"] == first["id"]
    listed = await alice.ok("GET", "/api/v1/devices", 200)
    assert [d["id"] for d in listed["devices"]] == [first["id"]]
    # Another user cannot see or delete it.
    assert (await bob.ok("GET", "/api/v1/devices", 200))["devices"] == []
    assert_problem(await bob.request("DELETE", f"/api/v1/devices/{first['id']}"), 404, "not_found")
    await alice.ok("DELETE", f"/api/v1/devices/{first['id']}", 204)
    assert (await alice.ok("GET", "/api/v1/devices", 200))["devices"] == []
    assert_problem(
        await alice.request("DELETE", f"/api/v1/devices/{missing_id()}"), 404, "not_found"
    )


async def test_a_token_registered_by_another_user_moves_to_them(alice: Api, bob: Api) -> None:
    token = unique("shared-phone")
    await alice.ok("POST", "/api/v1/devices", 201, json={"platform": "ios", "token": token})
    await bob.ok("POST", "/api/v1/devices", 201, json={"platform": "ios", "token": token})
    assert (await alice.ok("GET", "/api/v1/devices", 200))["devices"] == []
    assert [d["token"] for d in (await bob.ok("GET", "/api/v1/devices", 200))["devices"]] == [token]


async def test_bad_devices_are_refused_and_change_nothing(alice: Api) -> None:
    bad = [
        {"platform": "pager", "token": "t"},
        {"platform": "android", "token": ""},
        {"platform": "android", "token": "x" * 5000},
        {"platform": "android"},
        {"platform": "android", "token": "t", "extra": 1},
    ]
    for body in bad:
        assert_problem(
            await alice.request("POST", "/api/v1/devices", json=body), 422, "validation_error"
        )
    assert (await alice.ok("GET", "/api/v1/devices", 200))["devices"] == []


async def test_settings_default_on_and_change_one_at_a_time(alice: Api) -> None:
    assert await alice.ok("GET", "/api/v1/notification-settings", 200) == {
        "push": True,
        "email": True,
    }
    assert await alice.ok("PUT", "/api/v1/notification-settings", 200, json={"email": False}) == {
        "push": True,
        "email": False,
    }
    assert await alice.ok("PUT", "/api/v1/notification-settings", 200, json={"push": False}) == {
        "push": False,
        "email": False,
    }
    resp = await alice.request("PUT", "/api/v1/notification-settings", json={"push": "maybe"})
    assert_problem(resp, 422, "validation_error")


async def test_a_member_mutes_a_channel_and_outsiders_learn_nothing(
    alice: Api, bob: Api, carol: Api
) -> None:
    channel = await team_channel(alice, bob, private=True)
    path = f"/api/v1/channels/{channel['id']}/notification-settings"
    assert (await bob.ok("GET", path, 200))["muted"] is False
    assert (await bob.ok("PUT", path, 200, json={"muted": True}))["muted"] is True
    assert (await bob.ok("GET", path, 200))["muted"] is True
    # A private channel is as unknown to carol as a channel that does not exist.
    assert_problem(await carol.request("PUT", path, json={"muted": True}), 404, "not_found")
    missing = f"/api/v1/channels/{missing_id()}/notification-settings"
    assert_problem(await carol.request("GET", missing), 404, "not_found")


async def test_the_admin_api_is_absent_without_an_admin_token(alice: Api) -> None:
    resp = await alice.request("PUT", "/api/v1/admin/flags/push", json={"enabled": False})
    assert_problem(resp, 404, "not_found")
