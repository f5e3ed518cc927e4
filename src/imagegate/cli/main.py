"""`imagegate serve | worker | db | tokens | generate | edit | tasks | fake-upstream`"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from imagegate.cli.fake import fake_upstream
from imagegate.cli.ops import healthcheck, usage_app
from imagegate.cli.requests import edit, generate, tasks_app
from imagegate.cli.tokens import DatabaseUrl, DataDir, tokens

if TYPE_CHECKING:  # the server's imports wait until a server command runs: --help is quick
    from imagegate.cli.processes import Listener
    from imagegate.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="imagegate: an OpenAI-compatible image generation gateway.")
app.add_typer(tokens, name="tokens")
app.add_typer(tasks_app, name="tasks")
app.command()(generate)
app.command()(edit)
app.command("fake-upstream")(fake_upstream)
app.add_typer(usage_app, name="usage")
app.command()(healthcheck)
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")
err = Console(stderr=True)

LogLevel = Annotated[str | None, typer.Option(
    help="debug, info, warning, error [env IMAGEGATE_LOG_LEVEL; default info]")]


def _fail(message: str) -> typer.Exit:
    err.print(message, markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [default 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default 8000]")] = None,
    data_dir: DataDir = None,
    config: Annotated[Path | None, typer.Option(
        help="Model registry YAML [env IMAGEGATE_CONFIG; default: the packaged one]")] = None,
    sandbox: Annotated[bool, typer.Option(
        "--sandbox", help="Serve every model from the local sandbox provider (no keys needed)"
    )] = False,
    database_url: DatabaseUrl = None,
    storage_url: Annotated[str | None, typer.Option(help="Image storage URL [default file://"
                                                    "<data-dir>/files]")] = None,
    public_base_url: Annotated[str | None, typer.Option(
        help="This server's public URL [default http://HOST:PORT]")] = None,
    files_base_url: Annotated[str | None, typer.Option(
        help="Base of image URLs, e.g. a CDN [default <public-base-url>/files]")] = None,
    redis_url: Annotated[str | None, typer.Option(
        help="Redis for shared rate limits and worker wake-ups [env IMAGEGATE_REDIS_URL]")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Task runners in each process; 0 runs the API only [default 4]")] = None,
    processes: Annotated[int | None, typer.Option(
        help="Processes serving on this machine, sharing its port, limits and database "
             "[env IMAGEGATE_PROCESSES; default 1]")] = None,
    migrate: Annotated[bool, typer.Option(
        help="Apply database migrations on start")] = True,
    log_level: LogLevel = None,
) -> None:
    """Run the gateway."""
    from imagegate import logging as logs
    from imagegate.api.app import create_app, run
    from imagegate.cli.startup import StartupError, settings_from

    try:
        settings = settings_from(
            host=host, port=port, data_dir=data_dir, config=config, sandbox=sandbox or None,
            database_url=database_url, storage_url=storage_url, public_base_url=public_base_url,
            files_base_url=files_base_url, redis_url=redis_url, workers=workers,
            processes=processes, migrate=None if migrate else False, log_level=log_level)
        logs.configure(settings.log_level, settings.log_json)
        listener = _listen(settings) if settings.processes > 1 else None
    except StartupError as e:
        raise _fail(str(e)) from None
    try:
        demo = asyncio.run(_prepare(settings))  # once, whatever the number of processes
    except StartupError as e:
        if listener is not None:
            listener.close()
        raise _fail(str(e)) from None
    base = settings.resolved_public_base_url()
    print(f"imagegate listening on http://{settings.host}:{settings.port}"
          + (f" ({settings.processes} processes)" if listener else ""), flush=True)
    if settings.sandbox:
        print(f"sandbox mode: every model is served by the local sandbox provider\n"
              f"try: curl {base}/v1/images/generations -H 'authorization: Bearer {demo}' "
              "-H 'content-type: application/json' "
              "-d '{\"model\": \"nano-banana\", \"prompt\": \"a red apple\"}'", flush=True)
        if demo:
            print(f"demo token: {demo}", flush=True)
    if listener is not None:
        from imagegate.cli import processes as node

        raise typer.Exit(node.serve(settings, listener))
    run(create_app(settings), settings, backlog=4096)


def _listen(settings: Settings) -> Listener:
    from imagegate.cli.processes import Listener
    from imagegate.cli.startup import StartupError

    try:
        return Listener.open(settings.host, settings.port, backlog=4096)
    except OSError as e:
        raise StartupError(f"cannot listen on {settings.host}:{settings.port}: "
                           f"{e.strerror or e}") from None


async def _prepare(settings: Settings) -> str | None:
    """Check the config, storage and database, migrate, and in sandbox mode make sure a
    working demo token exists."""
    from imagegate.cli.startup import check_config, check_storage, open_database

    check_config(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    check_storage(settings)
    sessions = await open_database(settings, migrate=settings.migrate)
    try:
        return await _demo_token(settings, sessions) if settings.sandbox else None
    finally:
        await sessions.dispose()


async def _demo_token(settings: Settings, sessions: Any) -> str:
    """The saved demo token if it still works here (the database may be new), else a new one."""
    from sqlalchemy import select

    from imagegate.api.deps import IMAGES_SCOPE
    from imagegate.core.accounts import credentials
    from imagegate.core.accounts.money import to_micro
    from imagegate.core.errors import ApiError
    from imagegate.db.models import Credential

    demo_file = settings.data_dir / "demo-token"
    if demo_file.exists():
        token = demo_file.read_text().strip()
        async with sessions() as session:
            cred = (await session.execute(select(Credential).where(
                Credential.token_hash == credentials.hash_token(token)))).scalar_one_or_none()
        try:
            if cred is not None:
                credentials.check_usable(cred, IMAGES_SCOPE)
                return token
        except ApiError:
            pass
    async with sessions.begin() as session:
        issued = await credentials.create_credential(
            session, name="demo", credits_micro=to_micro(settings.demo_credits))
    demo_file.write_text(issued.token + "\n")
    demo_file.chmod(0o600)
    return issued.token


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Apply database migrations (safe to run from several nodes at once)."""
    from imagegate.cli.startup import StartupError, settings_from

    try:
        settings = settings_from(data_dir=data_dir, database_url=database_url)
        asyncio.run(_check_database(settings, migrate=True))
    except StartupError as e:
        raise _fail(str(e)) from None
    print("database is at the latest schema")


@app.command()
def worker(
    data_dir: DataDir = None,
    config: Annotated[Path | None, typer.Option(help="Model registry YAML")] = None,
    database_url: DatabaseUrl = None,
    storage_url: Annotated[str | None, typer.Option(help="Image storage URL")] = None,
    public_base_url: Annotated[str | None, typer.Option(
        help="The API's public URL, the base of image URLs [env IMAGEGATE_PUBLIC_BASE_URL]")
    ] = None,
    files_base_url: Annotated[str | None, typer.Option(
        help="Base of image URLs, e.g. a CDN [env IMAGEGATE_FILES_BASE_URL]")] = None,
    redis_url: Annotated[str | None, typer.Option(
        help="Redis for prompt wake-ups [env IMAGEGATE_REDIS_URL]")] = None,
    concurrency: Annotated[int | None, typer.Option(
        help="Tasks run at once by each process [default 4]")] = None,
    processes: Annotated[int | None, typer.Option(
        help="Worker processes on this machine [env IMAGEGATE_PROCESSES; default 1]")] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Use the sandbox provider")] = False,
    log_level: LogLevel = None,
) -> None:
    """Run task workers only (no API), sharing the database with `imagegate serve` nodes."""
    from imagegate import logging as logs
    from imagegate.cli.startup import StartupError, check_config, check_storage, settings_from
    from imagegate.worker.service import run_worker

    try:
        settings = settings_from(
            data_dir=data_dir, config=config, database_url=database_url,
            storage_url=storage_url, public_base_url=public_base_url,
            files_base_url=files_base_url, redis_url=redis_url, workers=concurrency,
            processes=processes, sandbox=sandbox or None, log_level=log_level)
        if not (settings.public_base_url or settings.files_base_url):
            # a worker has no address of its own: image URLs and callbacks would be wrong
            raise StartupError(
                "a worker needs the API's public URL for the image URLs it writes: pass "
                "--public-base-url (or --files-base-url), or set IMAGEGATE_PUBLIC_BASE_URL")
        logs.configure(settings.log_level, settings.log_json)
        check_config(settings)
        check_storage(settings)
        asyncio.run(_check_database(settings, migrate=settings.migrate))
    except StartupError as e:
        raise _fail(str(e)) from None
    if settings.processes > 1:
        from imagegate.cli import processes as node

        raise typer.Exit(node.work(settings))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker(settings))


async def _check_database(settings: Settings, *, migrate: bool) -> None:
    """The database answers (and is migrated, when asked); nothing is kept open."""
    from imagegate.cli.startup import open_database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    sessions = await open_database(settings, migrate=migrate)
    await sessions.dispose()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
