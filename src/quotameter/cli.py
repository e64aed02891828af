"""The `quotameter` command."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from quotameter.settings import Settings

app = typer.Typer(help="Meter real-time media usage, enforce allowances live, bill it exactly.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
console = Console(soft_wrap=True)  # whole lines, also when piped
err_console = Console(stderr=True, soft_wrap=True)

DatabaseOpt = Annotated[Optional[str], typer.Option("--database-url", envvar="QUOTAMETER_DATABASE_URL",
                                                     help="sqlite:///path (default) or postgresql+psycopg://…")]


def _settings(database_url: str | None, **extra: object) -> Settings:
    values = {k: v for k, v in {"database_url": database_url, **extra}.items() if v is not None}
    return Settings(**values)  # type: ignore[arg-type]


@app.command()
def serve(
    database_url: DatabaseOpt = None,
    host: Annotated[Optional[str], typer.Option(envvar="QUOTAMETER_HOST")] = None,
    port: Annotated[Optional[int], typer.Option(envvar="QUOTAMETER_PORT")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes (use PostgreSQL past one)")] = 1,
) -> None:
    """Serve the HTTP API."""
    import uvicorn

    settings = _settings(database_url, host=host, port=port)
    from quotameter.server import create_app

    app_ = create_app(settings)
    made = app_.state.services.generated_admin_key
    if made:
        console.print(f"first admin key (shown this once, keep it): [bold]{made}[/bold]")
    console.print(f"quotameter listening on [bold]http://{settings.host}:{settings.port}[/bold] "
                  f"(database: {_redact(settings.database_url)}); API docs at /docs")
    uvicorn.run(app_, host=settings.host, port=settings.port, log_level=settings.log_level,
                workers=None if workers == 1 else workers)


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def apply(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
          database_url: DatabaseOpt = None) -> None:
    """Validate a catalog (YAML) and make it the one in force; nothing changes if any part is wrong."""
    from quotameter.catalog import service
    from quotameter.catalog.model import CatalogInvalid, load_yaml
    from quotameter.store.engine import make_engine, unit_of_work
    from quotameter.store.migrate import upgrade
    from quotameter.timeutil import to_us
    from quotameter.web import system_clock

    settings = _settings(database_url)
    engine = make_engine(settings.database_url)
    upgrade(engine)
    try:
        doc = load_yaml(file.read_text())
        with unit_of_work(engine) as conn:
            applied = service.apply(conn, doc, service.CatalogCache().current(conn), to_us(system_clock()))
    except CatalogInvalid as err:
        err_console.print(f"[red]{file}: the catalog was not applied; {len(err.errors)} error(s):[/red]")
        for line in err.errors:
            err_console.print(f"  {line}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    console.print(f"catalog version {applied.version} applied"
                  + (f"; rebuilt meters: {', '.join(applied.changed_meters)}" if applied.changed_meters else ""))


@app.command()
def balance(customer: str, feature: str,
            at: Annotated[Optional[str], typer.Option(help="RFC 3339 instant (default: now)")] = None,
            database_url: DatabaseOpt = None) -> None:
    """Show a customer's balance for one feature."""
    from quotameter.catalog.service import CatalogCache
    from quotameter.entitlements.service import balance as read_balance
    from quotameter.errors import QuotameterError
    from quotameter.store.engine import make_engine
    from quotameter.store.migrate import upgrade
    from quotameter.timeutil import rfc3339
    from quotameter.web import instant, system_clock

    engine = make_engine(_settings(database_url).database_url)
    upgrade(engine)
    try:
        when: datetime = instant(at, "at", system_clock())
        with engine.connect() as conn:
            b = read_balance(conn, CatalogCache().current(conn), customer, feature, when)
    except QuotameterError as err:
        err_console.print(f"[red]{err.message}[/red]", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"{b.customer} / {b.feature}: [bold]{b.usage}[/bold] {b.unit} "
                  f"in {rfc3339(b.period.start)} … {rfc3339(b.period.end)}", highlight=False)


if __name__ == "__main__":  # pragma: no cover
    app()
