"""What `serve`, `worker` and `db upgrade` check before they start, so an operator's typo
is one clear line on the terminal, not a traceback after "listening on"."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from imagegate.core.routing.registry import ConfigError, load_registry
from imagegate.settings import Settings


class StartupError(Exception):
    """Something in the configuration or environment stops the gateway from starting."""


def settings_from(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in e.errors())
        raise StartupError(f"invalid setting: {problems}") from None


def _describe(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


async def open_database(settings: Settings, *, migrate: bool) -> Any:
    """Sessions on the configured database, migrated when asked; the caller disposes."""
    from imagegate.db import engine as db

    url = settings.resolved_database_url()
    try:
        sessions = db.Sessions(url, pool_size=settings.db_pool_size,
                               max_overflow=settings.db_max_overflow)
    except Exception as e:  # noqa: BLE001 - a bad URL or a driver that is not installed
        raise StartupError(f"unusable database URL {_redacted(url)}: {_describe(e)}") from None
    try:
        if migrate:
            await sessions.upgrade()
        else:
            await sessions.ping()
    except Exception as e:  # noqa: BLE001 - unreachable, refused, wrong password...
        await sessions.dispose()
        raise StartupError(f"cannot use the database {_redacted(url)}: {_describe(e)}") from None
    return sessions


def check_storage(settings: Settings) -> None:
    from imagegate.storage.store import ImageStore

    url = settings.resolved_storage_url()
    try:
        ImageStore(url, **settings.storage_options)
    except Exception as e:  # noqa: BLE001 - unknown scheme, missing bucket name, bad option
        raise StartupError(f"unusable storage URL {url}: {_describe(e)}") from None


def check_config(settings: Settings) -> None:
    try:
        load_registry(settings.config)
    except ConfigError as e:
        raise StartupError(f"config error: {e}") from None


def _redacted(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<unparseable URL>"
