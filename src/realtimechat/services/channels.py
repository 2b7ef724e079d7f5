"""Teams, channels, memberships and DMs. Every channel change is an event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from realtimechat.domain.errors import (
    ChannelAdminRequired,
    Forbidden,
    NotAMember,
    NotFound,
    TooManyInvitations,
    ValidationFailed,
)
from realtimechat.domain.models import (
    Channel,
    ChannelKind,
    ChannelView,
    Event,
    Invitation,
    Member,
    Role,
    Team,
    normalise_email,
)
from realtimechat.ids import new_epoch, new_id, now_ms
from realtimechat.services.uow import Tx, UnitOfWork
from realtimechat.settings import LimitSettings

ADMIN_ROLES: frozenset[str] = frozenset({"owner", "admin"})


def _clean_name(name: str, what: str) -> str:
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationFailed(f"{what} name must be 1 to 100 characters", field="name")
    return name


def visible_channel(tx: Tx, channel_id: str, user_id: str) -> tuple[Channel, Role | None]:
    """The channel and the caller's role in it; NotFound unless the caller may see it.

    Private channels and DMs exist only for their members; public channels for
    members of their team.
    """
    access = tx.channels.access(channel_id, user_id)
    if access is None:
        raise NotFound("channel not found")
    channel, member_role, team_role = access
    if member_role is not None:
        return channel, member_role
    if channel.kind == "public" and team_role is not None:
        return channel, None
    raise NotFound("channel not found")


def member_channel(tx: Tx, channel_id: str, user_id: str) -> tuple[Channel, Role]:
    """The channel if the caller is a member; Forbidden for a visible public one."""
    channel, role = visible_channel(tx, channel_id, user_id)
    if role is None:
        raise NotAMember()
    return channel, role


class ChannelService:
    """Teams, channels, members and DMs."""

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        limits: LimitSettings | None = None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        """`clock` (UTC ms) dates invitations and decides when they expire."""
        self._uow = uow
        self._limits = limits or LimitSettings()
        self._clock = clock

    # ---- teams --------------------------------------------------------------
    async def create_team(self, user_id: str, name: str) -> Team:
        name = _clean_name(name, "team")
        team = Team(new_id(), name, user_id, now_ms(), "owner")

        def work(tx: Tx) -> None:
            tx.teams.add(team)
            tx.teams.add_member(team.id, user_id, "owner", team.created_at)

        await self._uow.write(work)
        return team

    async def list_teams(self, user_id: str) -> list[Team]:
        """The user's teams, after turning invitations to their address into memberships."""

        def work(tx: Tx) -> tuple[list[Team], bool]:
            invited = bool(tx.invitations.of_user(user_id, self._clock()))
            return tx.teams.of_user(user_id), invited

        teams, invited = await self._uow.read(work)
        if invited:
            await self._accept_invitations(user_id)
            teams = await self._uow.read(lambda tx: tx.teams.of_user(user_id))
        return teams

    async def get_team(self, user_id: str, team_id: str) -> Team:
        def work(tx: Tx) -> Team:
            role = tx.teams.role(team_id, user_id)
            team = tx.teams.get(team_id) if role else None
            if team is None:
                raise NotFound("team not found")
            return Team(team.id, team.name, team.created_by, team.created_at, role)

        return await self._uow.read(work)

    async def add_team_member(
        self, actor_id: str, team_id: str, *, user_id: str
    ) -> tuple[Member, bool]:
        """Add a user by id to a team; (member, created)."""

        def work(tx: Tx) -> tuple[Member, bool]:
            _require_team_admin(tx, team_id, actor_id)
            target = tx.users.get(user_id)
            if target is None:
                raise NotFound("user not found")
            existing = tx.teams.role(team_id, target.id)
            if existing is not None:
                return Member(target.id, target.display_name, existing, 0), False
            at = now_ms()
            if not _join_team(tx, team_id, target.id, at):
                return Member(target.id, target.display_name, "member", 0), False
            return Member(target.id, target.display_name, "member", at), True

        return await self._uow.write(work)

    async def invite_to_team(self, actor_id: str, team_id: str, email: str) -> Invitation:
        """Invite an e-mail address to a team, whether or not an account has it.

        Nothing here reads the users table: the answer, and the work behind it, is the
        same for an address with an account and one without, so it reveals neither.
        The invitation becomes a membership when that account next lists its teams.
        """
        address = normalise_email(email)
        if address is None:
            raise ValidationFailed("email is not a valid e-mail address", field="email")
        most = self._limits.team_invitations_max

        def work(tx: Tx) -> Invitation:
            _require_team_admin(tx, team_id, actor_id)
            now = self._clock()
            tx.invitations.prune(team_id, now)
            if tx.invitations.pending_besides(team_id, address, now) >= most:
                raise TooManyInvitations(
                    f"a team has at most {most} pending invitations", limit=most
                )
            invitation = Invitation(
                team_id, address, actor_id, now, now + self._limits.invitation_ttl_s * 1000
            )
            tx.invitations.put(invitation)
            return invitation

        return await self._uow.write(work)

    async def _accept_invitations(self, user_id: str) -> None:
        """Turn the unexpired invitations to the user's address into team memberships."""

        def work(tx: Tx) -> None:
            now = self._clock()
            for invitation in tx.invitations.of_user(user_id, now):
                _join_team(tx, invitation.team_id, user_id, now_ms())
                tx.invitations.delete(invitation.team_id, invitation.email)

        await self._uow.write(work)

    async def team_members(self, user_id: str, team_id: str) -> list[Member]:
        def work(tx: Tx) -> list[Member]:
            if tx.teams.role(team_id, user_id) is None:
                raise NotFound("team not found")
            return tx.teams.members(team_id)

        return await self._uow.read(work)

    # ---- channels -----------------------------------------------------------
    async def create_channel(self, user_id: str, team_id: str, name: str, private: bool) -> Channel:
        name = _clean_name(name, "channel")
        kind: ChannelKind = "private" if private else "public"

        def work(tx: Tx) -> Channel:
            if tx.teams.role(team_id, user_id) is None:
                raise NotFound("team not found")
            at = now_ms()
            channel = Channel(new_id(), team_id, kind, name, 0, new_epoch(), user_id, at)
            tx.channels.add(channel)
            tx.channels.add_member(channel.id, user_id, "admin", at)
            ev = tx.events.append(
                channel.id,
                "channel.created",
                {"channel": channel.to_json(), "member_ids": [user_id]},
                joined=(user_id,),
            )
            return replace(channel, last_seq=ev.seq)

        return await self._uow.write(work)

    async def rename_channel(self, user_id: str, channel_id: str, name: str) -> Channel:
        name = _clean_name(name, "channel")

        def work(tx: Tx) -> Channel:
            channel, role = member_channel(tx, channel_id, user_id)
            if channel.kind == "dm":
                raise Forbidden("direct message channels have no name to change")
            if role not in ADMIN_ROLES:
                raise Forbidden("only channel admins rename a channel")
            tx.channels.rename(channel_id, name)
            renamed = replace(channel, name=name)
            ev = tx.events.append(channel_id, "channel.renamed", {"channel": renamed.to_json()})
            return replace(renamed, last_seq=ev.seq)

        return await self._uow.write(work)

    async def get_channel(self, user_id: str, channel_id: str) -> ChannelView:
        def work(tx: Tx) -> ChannelView:
            channel, role = visible_channel(tx, channel_id, user_id)
            return _view(tx, channel, user_id, role)

        return await self._uow.read(work)

    async def team_channels(self, user_id: str, team_id: str) -> list[ChannelView]:
        def work(tx: Tx) -> list[ChannelView]:
            if tx.teams.role(team_id, user_id) is None:
                raise NotFound("team not found")
            unread = tx.channels.unread_counts(user_id)
            return [
                _view(tx, ch, user_id, role, read_seq, unread.get(ch.id, 0))
                for ch, role, read_seq in tx.channels.of_team_for(team_id, user_id)
            ]

        return await self._uow.read(work)

    async def my_channels(self, user_id: str) -> list[ChannelView]:
        def work(tx: Tx) -> list[ChannelView]:
            unread = tx.channels.unread_counts(user_id)
            return [
                _view(tx, ch, user_id, role, read_seq, unread.get(ch.id, 0))
                for ch, role, read_seq in tx.channels.of_user(user_id)
            ]

        return await self._uow.read(work)

    async def subscriptions(self, user_id: str) -> list[Channel]:
        """The channels whose events a live session of this user receives.

        A session starting is the user looking at their teams too: invitations to
        their address become memberships here, as in `list_teams`.
        """

        def work(tx: Tx) -> tuple[list[Channel], bool]:
            invited = bool(tx.invitations.of_user(user_id, self._clock()))
            return [ch for ch, _, _ in tx.channels.of_user(user_id)], invited

        channels, invited = await self._uow.read(work)
        if invited:
            await self._accept_invitations(user_id)
            channels = await self._uow.read(
                lambda tx: [ch for ch, _, _ in tx.channels.of_user(user_id)]
            )
        return channels

    async def last_seqs(self, channel_ids: list[str]) -> dict[str, int]:
        """The last seq of each channel, for a node catching up on what its bus missed."""
        return await self._uow.read(lambda tx: tx.channels.last_seqs(channel_ids))

    async def joins_since(self, user_ids: list[str], since: int) -> list[Event]:
        """Events that added these users to channels since `since` (ms), in seq order."""
        return await self._uow.read(lambda tx: tx.events.joins_since(user_ids, since))

    async def member_channels(self, user_id: str, channel_ids: list[str]) -> dict[str, Channel]:
        """Those of `channel_ids` the user is a member of."""

        def work(tx: Tx) -> dict[str, Channel]:
            found: dict[str, Channel] = {}
            for channel_id in channel_ids:
                access = tx.channels.access(channel_id, user_id)
                if access is not None and access[1] is not None:
                    found[channel_id] = access[0]
            return found

        return await self._uow.read(work)

    async def add_channel_member(
        self, actor_id: str, channel_id: str, user_id: str
    ) -> tuple[Member, bool]:
        """Add a team member to a channel (or join a public one yourself); (member, created)."""

        def work(tx: Tx) -> tuple[Member, bool]:
            channel, role = visible_channel(tx, channel_id, actor_id)
            if channel.kind == "dm":
                raise Forbidden("direct message channels have fixed members")
            if role is None and actor_id != user_id:
                raise Forbidden("join the channel before adding others")
            if channel.kind == "private" and actor_id != user_id:
                _require_channel_admin(tx, channel, actor_id, role)
            target = tx.users.get(user_id)
            if target is None or (
                channel.team_id and tx.teams.role(channel.team_id, user_id) is None
            ):
                raise NotFound("user is not a member of this team")
            existing = tx.channels.membership(channel_id, user_id)
            if existing is not None:
                return Member(user_id, target.display_name, existing[0], 0), False
            at = now_ms()
            tx.channels.add_member(channel_id, user_id, "member", at)
            member = Member(user_id, target.display_name, "member", at)
            tx.events.append(
                channel_id,
                "member.joined",
                {
                    "channel": channel.to_json() | {"last_seq": channel.last_seq + 1},
                    "user_id": user_id,
                    "display_name": target.display_name,
                    "added_by": actor_id,
                },
                joined=(user_id,),
            )
            return member, True

        return await self._uow.write(work)

    async def remove_channel_member(self, actor_id: str, channel_id: str, user_id: str) -> None:
        """Leave a channel, or (as a channel admin) remove someone from it."""

        def work(tx: Tx) -> None:
            channel, role = member_channel(tx, channel_id, actor_id)
            if channel.kind == "dm":
                raise Forbidden("direct message channels have fixed members")
            if actor_id != user_id and role not in ADMIN_ROLES:
                raise Forbidden("only channel admins remove other members")
            if tx.channels.membership(channel_id, user_id) is None:
                raise NotFound("user is not a member of this channel")
            tx.events.append(
                channel_id,
                "member.left",
                {"user_id": user_id, "removed_by": actor_id},
                left=(user_id,),
            )
            tx.channels.remove_member(channel_id, user_id)

        await self._uow.write(work)

    async def channel_members(self, user_id: str, channel_id: str) -> list[Member]:
        def work(tx: Tx) -> list[Member]:
            visible_channel(tx, channel_id, user_id)
            return tx.channels.members(channel_id)

        return await self._uow.read(work)

    async def open_dm(self, user_id: str, other_id: str) -> tuple[ChannelView, bool]:
        """The one DM channel of this pair, created on first use; (channel, created)."""
        if other_id == user_id:
            raise ValidationFailed("a direct message needs another user", field="user_id")
        pair = sorted((user_id, other_id))
        dm_key = f"{pair[0]}:{pair[1]}"

        def work(tx: Tx) -> tuple[ChannelView, bool]:
            existing = tx.channels.by_dm_key(dm_key)
            if existing is not None:
                return _view(tx, existing, user_id, "member"), False
            other = tx.users.get(other_id)
            if other is None or not tx.users.share_team(user_id, other_id):
                raise NotFound("user not found")
            at = now_ms()
            channel = Channel(new_id(), None, "dm", "", 0, new_epoch(), user_id, at)
            tx.channels.add(channel, dm_key=dm_key)
            for uid in pair:
                tx.channels.add_member(channel.id, uid, "member", at)
            ev = tx.events.append(
                channel.id,
                "channel.created",
                {"channel": channel.to_json(), "member_ids": pair},
                joined=tuple(pair),
            )
            created = replace(channel, last_seq=ev.seq)
            return ChannelView(created, True, "member", 0, 0, tuple(pair)), True

        return await self._uow.write(work)

    async def mark_read(self, user_id: str, channel_id: str, seq: int) -> int:
        """Move the caller's read marker forward to `seq` (capped at the channel's last seq)."""
        if seq < 0:
            raise ValidationFailed("seq must be zero or more", field="seq")

        def work(tx: Tx) -> int:
            channel, _ = member_channel(tx, channel_id, user_id)
            return tx.channels.set_read_seq(channel_id, user_id, min(seq, channel.last_seq))

        return await self._uow.write(work)


def _require_team_admin(tx: Tx, team_id: str, user_id: str) -> None:
    """NotFound to a non-member of the team, Forbidden to a member who is no admin."""
    role = tx.teams.role(team_id, user_id)
    if role is None:
        raise NotFound("team not found")
    if role not in ADMIN_ROLES:
        raise Forbidden("only team owners and admins add members")


def _require_channel_admin(tx: Tx, channel: Channel, user_id: str, role: Role | None) -> None:
    """ChannelAdminRequired unless the user administers the channel or its team."""
    if role in ADMIN_ROLES:
        return
    team_role = tx.teams.role(channel.team_id, user_id) if channel.team_id else None
    if team_role not in ADMIN_ROLES:
        raise ChannelAdminRequired("only the channel's admins and the team's admins add members")


def _join_team(tx: Tx, team_id: str, user_id: str, at: int) -> bool:
    """Make the user a plain member of the team; False if they already were.

    The one way in, for an add by user id and an accepted invitation alike. It
    writes no channel event: a new team member joins channels on their own (or is
    added to them), and that join is the `member.joined` event.
    """
    return tx.teams.add_member_if_absent(team_id, user_id, "member", at)


def _view(
    tx: Tx,
    channel: Channel,
    user_id: str,
    role: Role | None,
    read_seq: int | None = None,
    unread: int | None = None,
) -> ChannelView:
    if role is None:
        return ChannelView(channel, False, None, 0, 0)
    if read_seq is None:
        membership = tx.channels.membership(channel.id, user_id)
        read_seq = membership[1] if membership else 0
    if unread is None:
        unread = tx.channels.unread_count(channel.id, user_id, read_seq)
    members = tuple(tx.channels.member_ids(channel.id)) if channel.kind == "dm" else ()
    return ChannelView(channel, True, role, read_seq, unread, members)
