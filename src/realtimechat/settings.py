"""The one typed settings object, built once at start-up and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class DatabaseSettings(BaseModel):
    """Where the data lives and how the storage layer talks to it."""

    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL"] = "FULL"
    timeout_s: float = 5.0
    read_threads: int = 2
    max_batch: int = 256  # group commit: jobs sharing one SQLite transaction
    max_queue: int = 10_000  # jobs waiting for the writer before we shed load
    max_read_queue: int = 1_000  # reads waiting for a reader thread before we shed load
    health_timeout_s: float = 1.0


MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash


class AuthSettings(BaseModel):
    """Token lifetimes and the signing secret (generated into data_dir when unset)."""

    secret: str | None = None
    access_ttl_s: int = 15 * 60
    refresh_ttl_s: int = 30 * 24 * 3600
    issuer: str = "realtimechat"
    # argon2id cost; the defaults are the library's recommendation (RFC 9106 low-memory).
    hash_time_cost: int = 3
    hash_memory_kib: int = 65536
    # Failed sign-ins per e-mail address: this many are free, then each locks the
    # address for twice as long as the last (from lockout_base_s, capped).
    lockout_free_attempts: int = 5
    lockout_base_s: float = 1.0
    lockout_max_s: float = 15 * 60.0
    lockout_reset_s: float = 3600.0  # quiet this long, and the count starts again
    # How often a node reads logins revoked on other nodes (its own apply at once).
    revocation_poll_s: float = 1.0

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, secret: str | None) -> str | None:
        """A short HS256 key can be brute-forced offline from any one token."""
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"RTC_AUTH__SECRET must be at least {MIN_SECRET_BYTES} bytes "
                f"(it is {len(secret.encode())}); e.g. python -c "
                "'import secrets; print(secrets.token_urlsafe(48))', or unset it to have "
                "one generated and kept for you"
            )
        return secret


class LimitSettings(BaseModel):
    """Rate limits, sizes and load shedding."""

    user_requests_per_minute: int = 1000
    anonymous_requests_per_minute: int = 120
    ws_frames_per_minute: int = 6000
    max_body_chars: int = 16 * 1024
    # Room for a message of max_body_chars even when every character is JSON-escaped.
    max_request_bytes: int = 256 * 1024
    max_in_flight: int = 512
    retry_after_s: int = 1
    page_max: int = 500
    # Pending invitations by e-mail per team (each at most 320 bytes), and how long one lasts.
    team_invitations_max: int = 1000
    invitation_ttl_s: int = 7 * 24 * 3600


class WebSocketSettings(BaseModel):
    """Gateway timings and bounds."""

    auth_timeout_s: float = 10.0
    heartbeat_ms: int = 20_000
    send_queue: int = 2048
    replay_limit: int = 1000
    max_inflight_sends: int = 64
    reconnect_after_ms: int = 1000
    # How long a close waits for the client's closing handshake (a drain waits this long
    # at most for a client that stopped reading).
    close_timeout_s: float = 5.0
    # Bytes a connection may have queued (besides send_queue frames); beyond either bound
    # the client is too slow and is closed 1013 to resume from its cursors.
    send_queue_bytes: int = 4 * 1024 * 1024
    # An access token that expires ends its socket this long after, unless an `auth` frame
    # with a fresh token came first.
    reauth_grace_s: float = 30.0


class RedisSettings(BaseModel):
    """The Redis Streams bus and shared rate limits, when RTC_REDIS_URL is set."""

    timeout_s: float = 1.0  # every Redis call; an outage costs at most this much
    stream: str = "rtc:events"
    stream_maxlen: int = 100_000  # approximate MAXLEN: the bus is fan-out, not history
    block_ms: int = 1000  # XREAD BLOCK
    publish_queue: int = 10_000  # events waiting for XADD; beyond it they are dropped
    # How often a node compares its channels with the database: while Redis is down,
    # and (for a publish lost with its node) while it is up.
    catchup_fast_s: float = 0.25
    catchup_slow_s: float = 2.0
    retry_s: float = 0.5  # first retry after a Redis error; doubles on each failure, capped
    # How long a node holds an event that overtook an earlier one still on its way
    # through Redis from another node, before its listeners fill the gap themselves.
    reorder_ms: float = 100.0


class ProviderSettings(BaseModel):
    """How one external provider is called: timeout, bulkhead and breaker."""

    timeout_s: float = 3.0  # every call, connect to last byte
    concurrency: int = 8  # bulkhead: calls in flight at once
    breaker_failures: int = 5  # consecutive failures that open the breaker
    breaker_reset_s: float = 30.0  # open this long, then one trial call


class PushSettings(ProviderSettings):
    """Push notifications: `log` (embedded default) or FCM HTTP v1."""

    provider: Literal["log", "fcm"] = "log"
    fcm_url: str = "https://fcm.googleapis.com"
    fcm_project_id: str | None = None
    # A Google service-account JSON file (its token_uri is where tokens come from).
    fcm_credentials_file: Path | None = None


class EmailSettings(ProviderSettings):
    """E-mail notifications: `log` (embedded default) or SendGrid v3."""

    provider: Literal["log", "sendgrid"] = "log"
    sendgrid_url: str = "https://api.sendgrid.com"
    sendgrid_api_key: SecretStr | None = None
    from_address: str = "RealTimeChat <chat@localhost>"


class NotifySettings(BaseModel):
    """Who is told about a message, when, and how hard the worker tries."""

    # Members of channels this small (sender excluded) are told of every message;
    # 0 tells only DM recipients and those @-mentioned.
    small_channel_max: int = 10
    # A push to a small channel's member waits this long and is skipped if they
    # read the message meanwhile (they were online).
    small_channel_push_delay_s: float = 60.0
    email_delay_s: float = 300.0  # an e-mail is for what stays unread this long
    max_attempts: int = 8
    backoff_base_s: float = 2.0
    backoff_max_s: float = 600.0
    lease_s: float = 30.0  # a claimed job not finished by then is claimed again
    batch: int = 100
    poll_s: float = 1.0
    push: PushSettings = Field(default_factory=PushSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)


class FileSettings(BaseModel):
    """Uploads: limits, quotas, and where the bytes live (local disk or S3-compatible)."""

    max_file_bytes: int = 100 * 1024 * 1024
    team_quota_bytes: int = 10 * 1024 * 1024 * 1024
    # An upload URL must be used (its PUT started) within this long. Short, because an
    # S3 presigned URL cannot be revoked: a cancelled upload's URL lives until then.
    url_ttl_s: int = 300
    # A download URL lives this long: someone who loses access keeps at most this much.
    download_url_ttl_s: int = 60
    # A reservation not completed this long after its declaration no longer counts
    # against the quota and its URL refuses bytes (the upload URL's lifetime plus time
    # to finish sending and complete); the worker then removes it.
    pending_timeout_s: int = 900
    # What one user may hold reserved in uploads still waiting for their bytes.
    max_pending_per_user: int = 10
    max_pending_bytes_per_user: int = 1024 * 1024 * 1024
    reconcile_s: float = 600.0  # how often the worker reconciles storage with the database
    backend: Literal["local", "s3"] = "local"
    local_dir: Path | None = None  # default: <data_dir>/files
    # The node's own address as clients reach it, for local-disk upload/download URLs;
    # default: the address of the request that asked for the URL, if its Host header is
    # one of RTC_ALLOWED_HOSTS (else the request is refused: 400 host_not_allowed).
    public_url: str | None = None
    s3_endpoint_url: str | None = None  # None: AWS; else e.g. http://minio:9000
    s3_bucket: str = "realtimechat"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    timeout_s: float = 5.0


class Settings(BaseSettings):
    """Everything configurable, read from RTC_* environment variables (nested with __)."""

    # An error never echoes the value given: it may be a secret (RTC_AUTH__SECRET).
    model_config = SettingsConfigDict(
        env_prefix="RTC_", env_nested_delimiter="__", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./data")
    # None: the embedded default, SQLite in data_dir. Else e.g. postgresql://user@host/db.
    database_url: str | None = None
    # None: the in-process bus and local rate limits. Else e.g. redis://host:6379/0.
    redis_url: str | None = None
    drain_s: float = 30.0
    # Peers (addresses or CIDR networks, comma-separated) whose X-Forwarded-For and
    # X-Forwarded-Proto are believed; empty, the client address is the TCP peer's.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # `serve` also runs the worker's jobs (outbox relay, housekeeping). Several are
    # safe; a cluster may leave them to `realtimechat worker` processes instead.
    run_worker: bool = True
    log_level: str = "info"
    # auto: readable text on a terminal, JSON lines otherwise (under a process manager).
    log_format: Literal["auto", "json", "console"] = "auto"
    # An OTLP/HTTP collector (e.g. http://otel-collector:4318); unset, tracing is off.
    otel_endpoint: str | None = None
    # `realtimechat worker` serves its Prometheus metrics here (0: a free port; the
    # worker prints it). A node serves its own at /metrics.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 9464
    db: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    ws: WebSocketSettings = Field(default_factory=WebSocketSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    files: FileSettings = Field(default_factory=FileSettings)
    # Bearer token for /api/v1/admin (feature flags); unset, the admin API answers 404.
    admin_token: SecretStr | None = None
    # Bearer token for /metrics and the details of /readyz (its statuses stay open);
    # unset, /metrics answers 404 and /readyz shows each check's status only.
    metrics_token: SecretStr | None = None
    # Swagger UI at /docs, loaded from a CDN (so the CSP of /docs allows that CDN).
    # /openapi.json is always served.
    api_docs: bool = False
    # Host header values the node builds URLs from when RTC_FILES__PUBLIC_URL is unset,
    # comma-separated; `name` allows any port, `name:port` only that one. localhost,
    # 127.0.0.1, [::1] and RTC_HOST (unless a wildcard) are always allowed.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("allowed_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    def allowed_host_names(self) -> frozenset[str]:
        """The Host header values (lower case) that file URLs may be built from."""
        names = {"localhost", "127.0.0.1", "[::1]", *(h.lower() for h in self.allowed_hosts)}
        if self.host not in ("", "0.0.0.0", "::"):
            names.add(f"[{self.host}]" if ":" in self.host else self.host.lower())
        return frozenset(names)

    def files_dir(self) -> Path:
        """Where local-disk files live: RTC_FILES__LOCAL_DIR, else data_dir/files."""
        return self.files.local_dir or self.data_dir / "files"

    def db_url(self) -> str:
        """The SQLAlchemy URL: RTC_DATABASE_URL, else a SQLite file in data_dir.

        Any PostgreSQL URL (postgresql://, +asyncpg, +psycopg) runs on psycopg:
        units of work run whole on database threads, so the driver is a sync one.
        """
        url = self.database_url
        if not url:
            return f"sqlite:///{(self.data_dir / 'realtimechat.db').resolve()}"
        scheme, sep, rest = url.partition("://")
        if sep and scheme in ("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg"):
            return f"postgresql+psycopg://{rest}"
        return url
