"""A message in a private channel is as unknown to outsiders as one that does not exist."""

from __future__ import annotations

import uuid

from tests.support import Api


async def test_message_in_private_channel_answers_like_a_missing_one(alice: Api, bob: Api) -> None:
    team = await alice.create_team()
    await alice.add_to_team(team["id"], bob)
    secret = await alice.create_channel(team["id"], "secret", private=True)
    msg = await alice.send(secret["id"], "for alice only")
    missing = str(uuid.uuid4())
    for method, extra in (("GET", {}), ("PUT", {"json": {"body": "x"}}), ("DELETE", {})):
        headers = {"If-Match": '"1"'}
        real = await bob.request(method, f"/api/v1/messages/{msg['id']}", headers=headers, **extra)
        fake = await bob.request(method, f"/api/v1/messages/{missing}", headers=headers, **extra)
        assert real.status_code == fake.status_code == 404
        assert real.json() == fake.json()
