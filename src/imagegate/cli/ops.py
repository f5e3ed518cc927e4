"""`imagegate usage export | ledger` (CSV straight from the database) and
`imagegate healthcheck` (what the container image's HEALTHCHECK runs)."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from imagegate.cli.tokens import DatabaseUrl, DataDir, err, fail, settings_of
from imagegate.core.errors import ApiError

if TYPE_CHECKING:
    from imagegate.db.engine import Sessions

usage_app = typer.Typer(no_args_is_help=True, help="Usage and ledger reports as CSV.")
T = TypeVar("T")

From = Annotated[str | None, typer.Option("--from", help="First UTC day, e.g. 2026-01-01")]
To = Annotated[str | None, typer.Option("--to", help="Last UTC day (included)")]
CredentialOpt = Annotated[str | None, typer.Option(
    "--credential", help="Only this credential (id or the token prefix `tokens list` shows)")]
Model = Annotated[str | None, typer.Option(help="Only this model")]
Kind = Annotated[str | None, typer.Option("--type", help="images_generations or images_edits")]
Out = Annotated[Path | None, typer.Option(help="Write to this file instead of stdout")]


def _database(data_dir: Path | None, database_url: str | None,
              work: Callable[[Sessions], Awaitable[T]]) -> T:
    from imagegate.cli.startup import StartupError, open_database

    settings = settings_of(data_dir=data_dir, database_url=database_url)

    async def go() -> T:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        sessions = await open_database(settings, migrate=settings.migrate)
        try:
            return await work(sessions)
        finally:
            await sessions.dispose()

    try:
        return asyncio.run(go())
    except ApiError as e:
        raise fail(f"{e.code}: {e.message}") from None
    except StartupError as e:
        raise fail(str(e)) from None


async def _filter(sessions: Sessions, start: str | None, end: str | None,
                  credential: str | None, model: str | None, kind: str | None) -> Any:
    from imagegate.core import usage
    from imagegate.core.accounts import manage as accounts

    f = usage.usage_filter({"from": start, "to": end, "model": model, "type": kind})
    if credential:
        async with sessions() as session:
            cred = await accounts.find(session, credential, include_deleted=True)
        f = usage.UsageFilter(f.start, f.end, cred.id, f.model, f.type)
    return f


def _write(out: Path | None, chunks: list[str]) -> None:
    if out is None:
        sys.stdout.write("".join(chunks))
        return
    try:
        out.write_text("".join(chunks), encoding="utf-8")
    except OSError as e:
        raise fail(f"cannot write {out}: {e.strerror}") from None
    rows = sum(chunk.count("\n") for chunk in chunks) - 1
    err.print(f"wrote {rows} rows to {out}")


@usage_app.command("export")
def export(
    start: From = None, end: To = None,
    by: Annotated[str, typer.Option(
        help="Columns to group by, any of day, credential, model, type")] = "day,credential,"
    "model,type",
    credential: CredentialOpt = None, model: Model = None, kind: Kind = None, out: Out = None,
    data_dir: DataDir = None, database_url: DatabaseUrl = None,
) -> None:
    """Tasks, images and credits by the chosen columns, as CSV (what GET /admin/usage.csv
    answers). Images and credits count succeeded tasks; days are UTC."""
    from imagegate.core import usage

    try:
        columns = usage.parse_by(by)
    except ApiError as e:
        raise fail(f"{e.code}: {e.message}") from None

    async def work(sessions: Sessions) -> str:
        f = await _filter(sessions, start, end, credential, model, kind)
        async with sessions() as session:
            return usage.usage_csv(await usage.usage(session, f, columns), columns)

    _write(out, [_database(data_dir, database_url, work)])


@usage_app.command("ledger")
def ledger(
    start: From = None, end: To = None, credential: CredentialOpt = None, model: Model = None,
    kind: Kind = None, out: Out = None, data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Every credit movement (grants, top-ups, holds, releases, settlements), oldest first,
    as CSV (what GET /admin/ledger.csv answers)."""
    from imagegate.core import usage

    async def work(sessions: Sessions) -> list[str]:
        f = await _filter(sessions, start, end, credential, model, kind)
        chunks: AsyncIterator[str] = usage.ledger_csv(sessions, f)
        return [chunk async for chunk in chunks]

    _write(out, _database(data_dir, database_url, work))


def healthcheck(
    url: Annotated[str | None, typer.Option(
        help="What to check [default http://127.0.0.1:$IMAGEGATE_PORT/healthz]")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait")] = 5.0,
) -> None:
    """Exit 0 when the gateway on this machine answers /healthz (for container health)."""
    target = url or f"http://127.0.0.1:{os.environ.get('IMAGEGATE_PORT', '8000')}/healthz"
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except (urllib.error.URLError, OSError, ValueError) as e:
        err.print(f"unhealthy: {target}: {getattr(e, 'reason', e)}")
        raise typer.Exit(1) from None
    if status != 200:
        err.print(f"unhealthy: {target} answered {status}")
        raise typer.Exit(1)
