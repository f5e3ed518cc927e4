"""Runtime settings: CLI flags override IMAGEGATE_* environment variables override defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
ADMIN_KEY_MIN = 24  # characters; failed attempts are throttled too (admin_login_limit)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMAGEGATE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    data_dir: Path = Path("imagegate-data")
    config: Path | None = None  # model registry YAML; None = the packaged one
    database_url: str | None = None  # default: SQLite in data_dir
    storage_url: str | None = None  # default: file:// under data_dir/files
    public_base_url: str | None = None  # default: http://host:port
    files_base_url: str | None = None  # image URLs; default <public_base_url>/files (a CDN?)
    storage_options: dict[str, Any] = Field(default_factory=dict)  # obstore config, e.g. endpoint
    redis_url: str | None = None  # shared rate limits and prompt worker wake-ups
    db_pool_size: int = Field(default=10, ge=1)  # PostgreSQL connections kept per process
    db_max_overflow: int = Field(default=20, ge=0)  # extra connections under load
    forwarded_allow_ips: str = "127.0.0.1"  # proxies whose X-Forwarded-For is believed
    migrate: bool = True  # apply database migrations on start
    sandbox: bool = False
    sandbox_latency: float = 0.0
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=2, le=200)  # nesting of a JSON request body
    header_timeout: float = Field(default=10.0, gt=0)  # seconds for a request's head to arrive
    body_timeout: float = Field(default=60.0, gt=0)  # seconds for a body, +1 per 64 KB of it
    keep_alive_timeout: float = Field(default=5.0, gt=0)  # an idle kept-alive connection's
    # client connections one process holds before new ones get 429: default, 3/4 of its
    # open-file limit (api/connections.py)
    max_client_connections: int | None = Field(default=None, ge=1)
    task_query_max_bytes: int = Field(default=4 * 1024 * 1024, ge=65536)  # one batch answer
    sync_wait: float = Field(default=300.0, gt=0)  # seconds a sync request waits for its task
    # seconds of upstream silence in a started stream before a comment line keeps it open
    stream_keepalive: float = Field(default=15.0, gt=0)
    # image edits: what one request may bring (SPEC section 7)
    edit_max_image_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)  # each input image
    edit_max_request_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)  # all of it: 413
    edit_max_pixels: int = Field(default=50_000_000, ge=1)  # decoded width x height, per image
    keep_edit_inputs: bool = False  # else an edit's stored inputs go once its task has ended
    edit_fetch_timeout: float = Field(default=30.0, gt=0)  # seconds to fetch one image URL
    free_credits: float = Field(default=0.0, ge=0, le=1e9)
    demo_credits: float = Field(default=1000.0, ge=0, le=1e9)
    # processes, tasks and workers
    processes: int = Field(default=1, ge=1, le=1024)  # `serve`/`worker` processes on this node
    workers: int = Field(default=4, ge=0)  # task runners per process; 0 = API only
    poll_interval: float = Field(default=1.0, gt=0)  # seconds between queue polls when idle
    lease_seconds: float = Field(default=30.0, gt=0)  # a task's runner renews this lease
    max_attempts: int = Field(default=3, ge=1)  # runs of one task before it fails
    shutdown_grace: float = Field(default=20.0, ge=0)  # seconds to finish work on SIGTERM
    callback_allow: list[str] = Field(default_factory=list)  # CIDRs/hosts exempt from SSRF
    callback_timeout: float = Field(default=10.0, gt=0)
    callback_base_delay: float = Field(default=1.0, gt=0)
    callback_max_delay: float = Field(default=3600.0, gt=0)
    # 1 s doubling reaches the 1 h cap after 12 retries; three more at the cap: ~4 h in all
    callback_max_attempts: int = Field(default=16, ge=1)
    default_concurrency: int = Field(default=10, ge=1)  # in-flight generations per credential
    max_queued: int = Field(default=1000, ge=1)  # queued async tasks per credential
    # seconds a sync request over its credential's concurrency waits for a slot; 0: 429 now
    slot_wait: float = Field(default=0.0, ge=0, le=3600)
    retry_backoff_base: float = Field(default=0.5, gt=0)  # upstream retries: base of doubling
    retry_backoff_cap: float = Field(default=30.0, gt=0)
    breaker_threshold: int = Field(default=5, ge=1)  # consecutive failures that cool a channel
    breaker_cooldown: float = Field(default=30.0, gt=0)  # seconds a cooled channel is skipped
    admin_key: str | None = None  # enables /admin/ when set
    admin_login_limit: str = "5/minute"  # failed admin-key attempts per client address
    self_service: bool = False  # POST /api/credentials issues tokens with free_credits
    self_service_limit: str = "5/hour"  # per client address
    default_rps: int = Field(default=60, ge=1)  # requests per second per credential
    default_poll_rps: int = Field(default=60, ge=1)  # task queries per second per credential
    rate_limit_prefix: str = "imagegate"  # Redis key prefix for the shared counters
    credential_cache_seconds: float = Field(default=10.0, ge=0)  # 0 turns the cache off
    metrics_token: str | None = None  # when set, /metrics needs this bearer token
    opentelemetry: bool = False  # FastAPI's built-in OpenTelemetry (needs configured providers)
    log_level: str = "info"
    log_json: bool | None = None  # None: JSON when stderr is not a terminal

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value.lower()

    @field_validator("admin_key")
    @classmethod
    def _long_admin_key(cls, value: str | None) -> str | None:
        if not value:
            return None  # empty: the admin API and console stay off
        if len(value) < ADMIN_KEY_MIN or value != value.strip():
            raise ValueError(
                f"must be at least {ADMIN_KEY_MIN} characters without surrounding spaces "
                f"(it opens /admin/); make one with: openssl rand -hex 32")
        return value

    @field_validator("admin_login_limit", "self_service_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate like 5/minute or 100/hour") from None
        return value

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'imagegate.db').resolve()}"

    def resolved_storage_url(self) -> str:
        if self.storage_url:
            return self.storage_url
        return (self.data_dir / "files").resolve().as_uri()

    def resolved_files_base_url(self) -> str:
        if self.files_base_url:
            return self.files_base_url.rstrip("/")
        return self.resolved_public_base_url() + "/files"

    def resolved_public_base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"
