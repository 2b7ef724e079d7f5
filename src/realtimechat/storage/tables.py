"""The schema, as SQLAlchemy Core tables. Times are UTC milliseconds (BigInteger)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

ID = sa.String(36)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("created_by", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

team_members = sa.Table(
    "team_members",
    metadata,
    sa.Column("team_id", ID, sa.ForeignKey("teams.id"), primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("joined_at", sa.BigInteger, nullable=False),
    sa.Index("ix_team_members_user", "user_id"),
)

channels = sa.Table(
    "channels",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("team_id", ID, sa.ForeignKey("teams.id"), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("epoch", sa.String(32), nullable=False),
    sa.Column("created_by", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # "<user_id>:<user_id>" (sorted) for DMs, so one pair has one DM channel.
    sa.Column("dm_key", sa.String(80), nullable=True, unique=True),
    sa.Index("ix_channels_team", "team_id"),
)

channel_members = sa.Table(
    "channel_members",
    metadata,
    sa.Column("channel_id", ID, sa.ForeignKey("channels.id"), primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("read_seq", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("joined_at", sa.BigInteger, nullable=False),
    sa.Index("ix_channel_members_user", "user_id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("channel_id", ID, sa.ForeignKey("channels.id"), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("message_id", ID, nullable=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_events_message", "message_id"),
)

# Events whose publish to a cross-node bus is not yet confirmed (scale-out only). The
# row is written with the event; the publishing node deletes it once the bus has the
# event, and the worker's relay publishes what is left after a short delay.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("channel_id", ID, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # A relay's claim: others skip the row until then (a killed relay's claim expires).
    sa.Column("claimed_until", sa.BigInteger, nullable=False, server_default="0"),
    sa.Index("ix_outbox_created", "created_at"),
)

# Values every node must share, generated once by whichever node starts first
# (the JWT signing key when RTC_AUTH__SECRET is not set).
shared_secrets = sa.Table(
    "shared_secrets",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("channel_id", ID, sa.ForeignKey("channels.id"), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("sender_id", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("client_msg_id", sa.String(100), nullable=False),
    # Fingerprint of the first request under this client_msg_id, so a retry with
    # another body is refused even after the message was edited.
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("attachments", sa.Text, nullable=False, server_default="[]"),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("edited_at", sa.BigInteger, nullable=True),
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("sender_id", "client_msg_id", name="uq_messages_sender_client_msg"),
    sa.Index("ix_messages_channel_seq", "channel_id", "seq", unique=True),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("family_id", ID, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("used_at", sa.BigInteger, nullable=True),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
    sa.Index("ix_refresh_tokens_family", "family_id"),
)

# Logins signed out or revoked (a refresh-token family): their access tokens are
# refused until they would have expired anyway (expires_at).
revoked_sessions = sa.Table(
    "revoked_sessions",
    metadata,
    sa.Column("session_id", ID, primary_key=True),
    sa.Column("revoked_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Index("ix_revoked_sessions_revoked_at", "revoked_at"),
)

# Failed sign-ins per account key (sha256 of the normalised e-mail, so addresses with
# no account are tracked alike and not stored in the clear).
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("account_key", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("locked_until", sa.BigInteger, nullable=False),
    sa.Column("last_failed_at", sa.BigInteger, nullable=False),
)

# Push tokens; a token belongs to one user at a time (the last to register it).
devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("platform", sa.String(16), nullable=False),
    sa.Column("token", sa.String(4096), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Index("ix_devices_user", "user_id"),
)

# A user's switches; no row means both on.
notification_settings = sa.Table(
    "notification_settings",
    metadata,
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("push", sa.Boolean, nullable=False),
    sa.Column("email", sa.Boolean, nullable=False),
)

channel_notification_settings = sa.Table(
    "channel_notification_settings",
    metadata,
    sa.Column("user_id", ID, sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("channel_id", ID, sa.ForeignKey("channels.id"), primary_key=True),
    sa.Column("muted", sa.Boolean, nullable=False),
)

# Written in the transaction of the message they are about, so a crash can neither
# lose nor invent one. state: pending -> sending (claimed until claimed_until) ->
# sent | skipped | dead; a failed attempt goes back to pending with a later due_at.
notification_jobs = sa.Table(
    "notification_jobs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, nullable=False),
    sa.Column("channel_id", ID, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # push | email
    sa.Column("reason", sa.String(8), nullable=False),  # dm | mention | channel
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("due_at", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("claimed_until", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("ix_notification_jobs_due", "state", "due_at"),
    sa.Index("ix_notification_jobs_user", "user_id", "kind", "state"),
)

# Runtime switches (push, email, uploads); no row means on.
feature_flags = sa.Table(
    "feature_flags",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# Uploaded files. state: pending (size reserved, bytes on their way) -> ready
# (verified) | deleted (cancelled, abandoned, or failed verification; quota given back).
files = sa.Table(
    "files",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("team_id", ID, sa.ForeignKey("teams.id"), nullable=True),
    sa.Column("uploader_id", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("storage_key", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("ix_files_state_created", "state", "created_at"),
    sa.Index("ix_files_team", "team_id"),
)

# Bytes reserved or used per team (pending + ready files); a reservation is one
# conditional UPDATE, so concurrent uploads cannot overshoot the quota.
team_storage = sa.Table(
    "team_storage",
    metadata,
    sa.Column("team_id", ID, sa.ForeignKey("teams.id"), primary_key=True),
    sa.Column("used_bytes", sa.BigInteger, nullable=False),
)

# Where a file was shared: members of these channels may download it (while the
# message that shared it is not deleted).
file_shares = sa.Table(
    "file_shares",
    metadata,
    sa.Column("file_id", ID, sa.ForeignKey("files.id"), primary_key=True),
    sa.Column("message_id", ID, sa.ForeignKey("messages.id"), primary_key=True),
    sa.Column("channel_id", ID, nullable=False),
    sa.Index("ix_file_shares_message", "message_id"),
)

# Invitations to a team by e-mail address, whether or not an account has it: turned
# into a membership when the account with that address next lists its teams, so the
# inviter learns nothing about which addresses have accounts. One per team and address;
# inviting again refreshes it.
team_invitations = sa.Table(
    "team_invitations",
    metadata,
    sa.Column("team_id", ID, sa.ForeignKey("teams.id"), primary_key=True),
    sa.Column("email", sa.String(320), primary_key=True),
    sa.Column("invited_by", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Index("ix_team_invitations_email", "email"),
)
