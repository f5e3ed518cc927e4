"""The running gateway: every long-lived piece, built once from settings and closed on shutdown."""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select, update

from imagegate.core.accounts.credential_cache import CredentialCache
from imagegate.core.accounts.credentials import check_usable, hash_token, parse_bearer
from imagegate.core.accounts.ratelimit import Limits, RateLimiter, limits_for
from imagegate.core.edits.service import EditService
from imagegate.core.edits.sources import Reader
from imagegate.core.errors import InvalidToken
from imagegate.core.generation import GenerationService
from imagegate.core.hosting import ImageHost
from imagegate.core.node_memory import NodeMemory
from imagegate.core.routing.channels import ChannelRouter, build_provider
from imagegate.core.routing.registry import Registry, load_registry
from imagegate.core.ssrf import CallbackPolicy
from imagegate.core.streaming import StreamService
from imagegate.core.tasks.callbacks import CallbackDispatcher
from imagegate.core.tasks.notify import QueueNotifier
from imagegate.core.tasks.store import TaskStore
from imagegate.db import engine as db
from imagegate.db.models import Credential
from imagegate.providers.base import Provider
from imagegate.settings import Settings
from imagegate.storage.store import ImageStore

log = structlog.get_logger("imagegate")
LAST_USED_EVERY = 60.0  # seconds between last_used_at writes for one credential


def new_node_id() -> str:
    """Names this process as a lease owner; unique even for two processes on one host."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Gateway:
    settings: Settings
    registry: Registry
    sessions: db.Sessions
    store: ImageStore
    providers: dict[str, Provider]
    generation: GenerationService
    edits: EditService
    tasks: TaskStore
    callbacks: CallbackDispatcher
    node_id: str
    credentials: CredentialCache
    limiter: RateLimiter
    streams: StreamService
    unavailable: dict[str, list[str]] = field(default_factory=dict)
    started: int = field(default_factory=lambda: int(time.time()))
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    async def start(cls, settings: Settings, environ: Mapping[str, str] | None = None,
                    *, node_id: str | None = None, memory: NodeMemory | None = None
                    ) -> Gateway:
        """``memory``: shared with the other processes of this node, if it runs several."""
        env = os.environ if environ is None else environ
        registry = load_registry(settings.config)
        if settings.sandbox:
            registry = registry.sandboxed()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        sessions = db.Sessions(settings.resolved_database_url(),
                               pool_size=settings.db_pool_size,
                               max_overflow=settings.db_max_overflow)
        if settings.migrate:
            await sessions.upgrade()
        store = ImageStore(settings.resolved_storage_url(), **settings.storage_options)
        providers = {
            name: build_provider(name, up, sandbox_latency=settings.sandbox_latency, environ=env)
            for name, up in registry.upstreams.items()
        }
        unavailable = {
            name: missing for name, model in registry.models.items()
            if (missing := registry.missing_credentials(model, env))
        }
        for name, missing in unavailable.items():
            log.warning("model_unavailable", model=name,
                        reason=f"no usable upstream credentials: set {' or '.join(missing)}")
        router = ChannelRouter(
            registry, providers, backoff_base=settings.retry_backoff_base,
            backoff_cap=settings.retry_backoff_cap, failure_threshold=settings.breaker_threshold,
            cooldown=settings.breaker_cooldown)
        host = ImageHost(store, settings.resolved_files_base_url())
        tasks = TaskStore(sessions, lease=settings.lease_seconds,
                          max_attempts=settings.max_attempts)
        policy = CallbackPolicy(settings.callback_allow)
        notifier = QueueNotifier(settings.redis_url, prefix=settings.rate_limit_prefix)
        await notifier.start(listen=settings.workers > 0)
        node = node_id or new_node_id()
        generation = GenerationService(
            registry=registry, router=router, host=host, tasks=tasks, policy=policy,
            notifier=notifier, node_id=node, sync_wait=settings.sync_wait, unavailable=unavailable,
            default_concurrency=settings.default_concurrency, max_queued=settings.max_queued,
            slot_wait=settings.slot_wait,
        )
        files_base = settings.resolved_files_base_url()
        reader = Reader(store, policy, [f"{files_base}/",
                                        f"{settings.resolved_public_base_url()}/files/",
                                        "/files/"],
                        max_bytes=settings.edit_max_image_bytes,
                        timeout=settings.edit_fetch_timeout)
        edits = EditService(generation, store, reader,
                            max_request_bytes=settings.edit_max_request_bytes,
                            max_pixels=settings.edit_max_pixels,
                            keep_inputs=settings.keep_edit_inputs)
        callbacks = CallbackDispatcher(
            sessions, host, policy, timeout=settings.callback_timeout,
            base_delay=settings.callback_base_delay, max_delay=settings.callback_max_delay,
            max_attempts=settings.callback_max_attempts,
        )
        credentials = CredentialCache(settings.credential_cache_seconds, settings.redis_url,
                                      sessions=sessions, prefix=settings.rate_limit_prefix,
                                      memory=memory)
        await credentials.start()
        limiter = RateLimiter(settings.redis_url, settings.rate_limit_prefix, memory=memory)
        return cls(settings=settings, registry=registry, sessions=sessions, credentials=credentials,
                   limiter=limiter, streams=StreamService(generation),
                   store=store, providers=providers, generation=generation, edits=edits,
                   tasks=tasks,
                   callbacks=callbacks, node_id=node, unavailable=unavailable)

    async def authenticate(self, header: str | None, scope: str) -> Credential:
        token = parse_bearer(header)
        digest = hash_token(token)

        async def load() -> Credential | None:
            async with self.sessions() as session:
                return (await session.execute(
                    select(Credential).where(Credential.token_hash == digest)
                )).scalar_one_or_none()

        cred = await self.credentials.get(digest, load)
        if cred is None or not hmac.compare_digest(cred.token_hash, digest):
            raise InvalidToken("invalid token")
        check_usable(cred, scope)
        now = time.time()
        if cred.last_used_at is None or cred.last_used_at < now - LAST_USED_EVERY:
            cred.last_used_at = now  # the cached copy too: one write a minute at most
            self._touch(cred.id, now)
        return cred

    def limits(self, cred: Credential) -> Limits:
        s = self.settings
        return limits_for(cred, rps=s.default_rps, poll_rps=s.default_poll_rps,
                          concurrency=s.default_concurrency)

    def _touch(self, credential_id: str, now: float) -> None:
        async def write() -> None:
            try:
                async with self.sessions.begin() as session:
                    await session.execute(update(Credential).where(
                        Credential.id == credential_id).values(last_used_at=now))
            except Exception as e:  # noqa: BLE001 - bookkeeping must not fail a request
                log.warning("touch_failed", error=type(e).__name__)

        task = asyncio.get_running_loop().create_task(write())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def ready(self) -> dict[str, str]:
        """What readiness checks found; raises nothing, an entry not 'ok' means not ready."""
        checks: dict[str, str] = {}
        try:
            await self.sessions.ping()
            checks["database"] = "ok"
        except Exception as e:  # noqa: BLE001 - readiness reports, never raises
            checks["database"] = f"error: {type(e).__name__}"
        try:
            await self.store.ping()
            checks["storage"] = "ok"
        except Exception as e:  # noqa: BLE001
            checks["storage"] = f"error: {type(e).__name__}"
        return checks

    async def has_credentials(self) -> bool:
        async with self.sessions() as session:
            return (await session.execute(select(Credential.id).limit(1))).first() is not None

    async def close(self) -> None:
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.generation.drain()
        await self.edits.aclose()
        await self.generation.notifier.aclose()
        await self.credentials.aclose()
        await self.callbacks.aclose()
        for provider in self.providers.values():
            await provider.aclose()
        await self.sessions.dispose()
