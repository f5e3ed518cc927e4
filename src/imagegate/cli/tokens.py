"""`imagegate tokens ...`: credentials managed straight in the database."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from imagegate.core.errors import ApiError

if TYPE_CHECKING:  # the database layer loads when a command runs: --help stays quick
    from sqlalchemy.ext.asyncio import AsyncSession

    from imagegate.settings import Settings

tokens = typer.Typer(no_args_is_help=True, help="Manage credentials (API tokens).")
err = Console(stderr=True, soft_wrap=True)  # an error stays on one line
T = TypeVar("T")

DataDir = Annotated[Path | None, typer.Option(help="Data directory [env IMAGEGATE_DATA_DIR; "
                                              "default ./imagegate-data]")]
DatabaseUrl = Annotated[str | None, typer.Option(help="Database URL [env IMAGEGATE_DATABASE_URL; "
                                                 "default SQLite in the data directory]")]
Ident = Annotated[str, typer.Argument(help="Credential id, or the token prefix `list` shows")]


def settings_of(**overrides: Any) -> Settings:
    from imagegate.cli.startup import StartupError, settings_from

    try:
        return settings_from(**overrides)
    except StartupError as e:
        raise fail(str(e)) from None


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[AsyncSession]:
    from imagegate.cli.startup import open_database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    sessions = await open_database(settings, migrate=settings.migrate)
    try:
        async with sessions.begin() as session:
            yield session
    finally:
        await sessions.dispose()


def run(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run ``work`` in one transaction; API errors become a message and exit code 2."""

    async def go() -> T:
        async with opened(settings) as session:
            return await work(session)

    from imagegate.cli.startup import StartupError

    try:
        return asyncio.run(go())
    except ApiError as e:
        raise fail(f"{e.code}: {e.message}") from None
    except StartupError as e:
        raise fail(str(e)) from None


def fail(message: str) -> typer.Exit:
    err.print(f"error: {message}")
    return typer.Exit(2)


def checked(value: T, check: Callable[[T], Any]) -> T:
    """Refuse a bad argument before touching the database, in the API's words."""
    try:
        check(value)
    except ApiError as e:
        raise fail(f"{e.code}: {e.message}") from None
    return value


async def _announce(redis_url: str, prefix: str, credential_id: str) -> None:
    """Running gateways drop their cached copy now; without this (or without Redis) they
    notice the revision the change bumped within about a second."""
    import redis.asyncio as redis

    from imagegate.core.accounts.credential_cache import channel_name

    client = redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        await client.publish(channel_name(prefix), credential_id)
    except Exception:  # noqa: BLE001 - the revision check still reaches every gateway
        err.print("warning: could not reach Redis; running gateways see this within ~1 s")
    finally:
        await client.aclose()


@tokens.command("create")
def create(
    name: Annotated[str, typer.Option(help="A name to recognise the credential")] = "default",
    credits: Annotated[float, typer.Option(help="Starting credits")] = 0.0,
    application: Annotated[str, typer.Option(help="The application it belongs to")] = "default",
    scope: Annotated[list[str] | None, typer.Option(help="APIs it may call (repeat)")] = None,
    expires_in: Annotated[float | None, typer.Option(help="Expire after this many days")] = None,
    rps: Annotated[int | None, typer.Option(help="Requests per second")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Generations in flight")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a credential; the token is printed alone on the last line (shown once)."""
    from imagegate.core.accounts import manage as accounts
    from imagegate.core.accounts.money import parse_credits

    checked(credits, parse_credits)
    limits = {k: v for k, v in (("rps", rps), ("concurrency", concurrency)) if v is not None}
    checked(limits, accounts.check_limits)
    if expires_in is not None and not 0 < expires_in <= 36_500:
        raise fail("bad_request: --expires-in must be from 0 to 36500 days")
    expires_at = time.time() + expires_in * 86400 if expires_in else None
    issued = run(settings_of(data_dir=data_dir, database_url=database_url),
                 lambda s: accounts.create(s, name=name, credits=credits,
                                           application=application, scopes=scope,
                                           expires_at=expires_at, rate_limits=limits or None))
    print(f"credential {issued.credential.id} ({name}), credits {credits:g}")
    print(f"webhook secret: {issued.credential.webhook_secret}")
    print(issued.token)


@tokens.command("list")
def listing(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """List credentials (never their tokens)."""
    from imagegate.core.accounts import manage as accounts
    from imagegate.core.accounts.money import format_credits

    creds = run(settings_of(data_dir=data_dir, database_url=database_url), accounts.listing)
    table = Table("id", "name", "prefix", "created", "credits", "disabled", "scopes")
    for c in creds:
        created = dt.datetime.fromtimestamp(c.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(c.id, c.name, c.token_prefix + "…", created, format_credits(c.balance),
                      "yes" if c.disabled else "no", ",".join(c.scopes))
    Console(width=160).print(table)


def _apply(ident: str, change: Callable[[AsyncSession, str], Awaitable[Any]], done: str,
           data_dir: Path | None, database_url: str | None) -> None:
    """Find the credential, change it, and tell running gateways to drop their copy."""
    from imagegate.core.accounts import manage as accounts

    async def work(session: AsyncSession) -> str:
        cred_id = (await accounts.find(session, ident)).id
        await change(session, cred_id)
        return cred_id

    settings = settings_of(data_dir=data_dir, database_url=database_url)
    cred_id = run(settings, work)
    if settings.redis_url:
        asyncio.run(_announce(settings.redis_url, settings.rate_limit_prefix, cred_id))
    print(f"credential {cred_id} {done}")


def _set_disabled(ident: str, disabled: bool, data_dir: Path | None, database_url: str | None
                  ) -> None:
    from imagegate.core.accounts import manage as accounts

    _apply(ident, lambda s, cid: accounts.update_fields(s, cid, disabled=disabled),
           "disabled" if disabled else "enabled", data_dir, database_url)


@tokens.command("disable")
def disable(ident: Ident, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Refuse the credential's requests (403 disabled) until it is enabled again."""
    _set_disabled(ident, True, data_dir, database_url)


@tokens.command("enable")
def enable(ident: Ident, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Accept the credential's requests again."""
    _set_disabled(ident, False, data_dir, database_url)


@tokens.command("topup")
def topup(ident: Ident, credits: Annotated[float, typer.Argument(help="Credits to add")],
          data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Add credits (a ledger row records it)."""
    from imagegate.core.accounts import manage as accounts
    from imagegate.core.accounts.money import format_credits, parse_credits

    checked(credits, parse_credits)
    async def work(session: AsyncSession) -> tuple[str, int]:
        cred = await accounts.find(session, ident)
        cred = await accounts.top_up(session, cred.id, credits)
        return cred.id, cred.balance

    cred_id, balance = run(settings_of(data_dir=data_dir, database_url=database_url), work)
    print(f"credential {cred_id}: balance {format_credits(balance)}")


@tokens.command("usage")
def usage(ident: Ident, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Balance, totals by model and recent tasks, as JSON (deleted credentials too)."""
    from imagegate.core.accounts import manage as accounts

    async def work(session: AsyncSession) -> dict[str, Any]:
        cred = await accounts.find(session, ident, include_deleted=True)
        return await accounts.usage(session, cred.id)

    print(json.dumps(run(settings_of(data_dir=data_dir, database_url=database_url), work),
                     indent=2))


@tokens.command("delete")
def delete(ident: Ident, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Revoke a credential for good: its token stops working (401) and it leaves `list`;
    its ledger and tasks are kept, and `usage` still shows them."""
    from imagegate.core.accounts import manage as accounts

    _apply(ident, accounts.remove, "deleted", data_dir, database_url)
