"""The running gateway: every long-lived piece, built once from settings and closed on shutdown."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from imagegate.core.channels import ChannelRouter, build_provider
from imagegate.core.credentials import authenticate
from imagegate.core.generation import GenerationService
from imagegate.core.registry import Registry, load_registry
from imagegate.db import engine as db
from imagegate.db.models import Credential
from imagegate.providers.base import Provider
from imagegate.settings import Settings
from imagegate.storage.images import ImageStore

log = structlog.get_logger("imagegate")


@dataclass
class Gateway:
    settings: Settings
    registry: Registry
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    store: ImageStore
    providers: dict[str, Provider]
    generation: GenerationService
    unavailable: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    async def start(cls, settings: Settings, environ: Mapping[str, str] | None = None
                    ) -> Gateway:
        env = os.environ if environ is None else environ
        registry = load_registry(settings.config)
        if settings.sandbox:
            registry = registry.sandboxed()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = db.make_engine(settings.resolved_database_url())
        await db.upgrade(engine)
        sessions = db.sessionmaker_for(engine)
        store = ImageStore(settings.resolved_storage_url())
        providers = {
            name: build_provider(name, up, sandbox_latency=settings.sandbox_latency, environ=env)
            for name, up in registry.upstreams.items()
        }
        unavailable = {
            name: missing for name, model in registry.models.items()
            if (missing := registry.missing_credentials(model, env))
        }
        router = ChannelRouter(registry, providers)
        generation = GenerationService(
            registry=registry, router=router, store=store, sessions=sessions,
            public_base_url=settings.resolved_public_base_url(), sync_wait=settings.sync_wait,
            unavailable=unavailable,
        )
        return cls(settings=settings, registry=registry, engine=engine, sessions=sessions,
                   store=store, providers=providers, generation=generation,
                   unavailable=unavailable)

    async def authenticate(self, header: str | None, scope: str) -> Credential:
        async with self.sessions() as session:
            return await authenticate(session, header, scope)

    async def ready(self) -> dict[str, str]:
        """What readiness checks found; raises nothing, an entry not 'ok' means not ready."""
        checks: dict[str, str] = {}
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
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
        for provider in self.providers.values():
            await provider.aclose()
        await self.engine.dispose()
