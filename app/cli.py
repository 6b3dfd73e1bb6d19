"""The `telaten` command: serve, migrate, config."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from app.core.config import Settings, SettingsError, get_settings

cli = typer.Typer(
    name="telaten",
    help="Telaten Backend: run and manage the service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _settings() -> Settings:
    """Load settings or exit 2 with the one-line reason (which names the setting)."""
    try:
        return get_settings()
    except SettingsError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default: HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: WORKERS).")
    ] = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development).")] = False,
) -> None:
    """Run the API server with uvicorn."""
    import uvicorn

    from app.core.logging import configure_logging

    settings = _settings()
    configure_logging(settings)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        # An import string, so that the processes of --workers and --reload load it too.
        http="app.core.http_limits:LimitedHttpToolsProtocol",
        host=host or settings.HOST,
        port=port or settings.PORT,
        workers=None if reload else (workers or settings.WORKERS),
        reload=reload,
        log_config=None,  # our structlog setup owns logging
        proxy_headers=True,
        forwarded_allow_ips=settings.FORWARDED_ALLOW_IPS,
        server_header=False,
        timeout_graceful_shutdown=30,
    )


@cli.command()
def migrate() -> None:
    """Bring the database schema to the newest migration."""
    from app.core.logging import configure_logging
    from app.db.session import Database, init_db

    settings = _settings()
    configure_logging(settings)

    async def run() -> None:
        db = Database(settings)
        try:
            await init_db(db)
        finally:
            await db.dispose()

    asyncio.run(run())


@cli.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(prompt=True, help="The new admin's email.")],
    name: Annotated[str, typer.Option(prompt=True, help="The new admin's name.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="TELATEN_ADMIN_PASSWORD",
            show_envvar=True,
            help="Prompted for (hidden) unless TELATEN_ADMIN_PASSWORD is set; never an argument.",
            show_default=False,
            parser=str,
        ),
    ],
) -> None:
    """Create another admin account (the first one is created on first start)."""
    from pydantic import ValidationError

    from app.core.errors import ConflictError
    from app.core.logging import configure_logging
    from app.core.security import PasswordHasher
    from app.db.session import Database, init_db
    from app.modules.users.models import UserRole
    from app.modules.users.schemas import UserRegister
    from app.modules.users.service import UserService

    settings = _settings()
    configure_logging(settings)
    try:
        data = UserRegister(email=email, name=name, password=password)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        err.print(f"[bold red]error:[/] {problems}", highlight=False)
        raise typer.Exit(code=2) from None

    async def run() -> None:
        db = Database(settings)
        try:
            await init_db(db)
            async with db.sessionmaker() as session:
                service = UserService(session, PasswordHasher(settings.BCRYPT_ROUNDS))
                user = await service.register(data, role=UserRole.ADMIN)
            typer.echo(f"Created admin {user.email} ({user.id})")
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except ConflictError as exc:
        err.print(f"[bold red]error:[/] {exc.detail}", highlight=False)
        raise typer.Exit(code=1) from None


mcp_cli = typer.Typer(
    help="MCP: the external tool servers (mcp.json), and serving Telaten's own tools.",
    no_args_is_help=True,
)
cli.add_typer(mcp_cli, name="mcp")


@mcp_cli.command("list")
def mcp_list() -> None:
    """Connect to every server in mcp.json and print its state and tools."""
    from app.core.logging import configure_logging
    from app.core.mcp import MCPManager

    settings = _settings()
    configure_logging(settings.model_copy(update={"LOG_LEVEL": "ERROR"}))
    manager = MCPManager.from_settings(settings)

    async def run() -> tuple[list[dict[str, Any]], list[str], dict[str, str]]:
        await manager.start()
        try:
            names: dict[str, str] = {}
            for tool in manager.tools():
                names[tool.metadata.get_name()] = tool.metadata.description.split("\n")[0]
            return manager.status(), manager.config_errors, names
        finally:
            await manager.stop()

    servers, errors, tools = asyncio.run(run())
    out = Console()
    if not servers and not errors:
        out.print(f"No MCP servers configured ({settings.MCP_CONFIG_PATH} not found or empty).")
        return
    table = Table(
        "server", "transport", "state", "tools", "last error", title=str(settings.MCP_CONFIG_PATH)
    )
    for server in servers:
        table.add_row(
            str(server["name"]),
            str(server["transport"]),
            str(server["state"]),
            ", ".join(server["tools"]) or "-",
            str(server["last_error"] or ""),
        )
    out.print(table)
    if tools:
        listing = Table("tool name the advisor sees", "description", title="Tools")
        for name, description in tools.items():
            listing.add_row(name, description[:100])
        out.print(listing)
    for error in errors:
        err.print(f"[bold red]config error:[/] {error}", highlight=False)
    if errors or any(s["state"] != "up" for s in servers):
        raise typer.Exit(code=1)


@mcp_cli.command("serve")
def mcp_serve(
    stdio: Annotated[
        bool, typer.Option("--stdio", help="Serve over stdin/stdout (for desktop MCP clients).")
    ] = False,
) -> None:
    """Serve Telaten's own tools over stdio, as the account whose access token is in
    TELATEN_ACCESS_TOKEN. (Over HTTP they are served by `telaten serve` at /mcp.)"""
    import os

    from app.core.errors import UnauthorizedError
    from app.core.logging import configure_logging
    from app.mcp_server import STDIO_TOKEN_ENV, serve_stdio

    if not stdio:
        err.print("Over HTTP the tools are at /mcp of `telaten serve`; use --stdio here.")
        raise typer.Exit(code=2)
    token = os.environ.get(STDIO_TOKEN_ENV, "").strip()
    if not token:
        err.print(f"[bold red]error:[/] set {STDIO_TOKEN_ENV} to an access token of the account")
        raise typer.Exit(code=2)
    settings = _settings()
    configure_logging(settings)  # to stderr: stdout is the protocol channel
    try:
        asyncio.run(serve_stdio(settings, token))
    except UnauthorizedError as exc:
        err.print(f"[bold red]error:[/] {STDIO_TOKEN_ENV}: {exc.detail}")
        raise typer.Exit(code=2) from None


@cli.command()
def config(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the effective settings, secrets masked."""
    values = _settings().masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2, default=str))
        return
    table = Table("setting", "value", title="Effective settings")
    for key, value in values.items():
        table.add_row(key, str(value))
    Console().print(table)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
