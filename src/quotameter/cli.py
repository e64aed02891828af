"""The `quotameter` command."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy.engine import make_url

from quotameter import logs
from quotameter.catalog import service as catalog_service
from quotameter.catalog.model import CatalogInvalid, load_yaml
from quotameter.catalog.service import CatalogCache, dropped_lines
from quotameter.context import Context
from quotameter.demo.load import STORY_DAYS, load_demo, story_clock
from quotameter.entitlements.service import balance as read_balance
from quotameter.errors import Invalid, QuotameterError
from quotameter.invoices import export
from quotameter.invoices import service as invoicing
from quotameter.jsontext import dumps
from quotameter.keys import service as keys
from quotameter.keys.service import bootstrap
from quotameter.money import amount_text
from quotameter.serving import uvicorn_options
from quotameter.settings import Settings
from quotameter.store.engine import make_engine, retry_transient, unit_of_work
from quotameter.timeutil import EPOCH, clock_from, instant, rfc3339, system_clock, to_us
from quotameter.usage.model import is_window
from quotameter.usage.service import UsageQuery, report
from quotameter.usecases import balances
from quotameter.usecases import catalog as use_catalog
from quotameter.usecases import simulate as simulation
from quotameter.usecases.record import ingest as store_events
from quotameter.wording import plural

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from quotameter.catalog.service import Applied
    from quotameter.entitlements.service import Balance

app = typer.Typer(
    help="Meter real-time media usage, enforce allowances live, bill it exactly.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console(soft_wrap=True)  # whole lines, also when piped
err_console = Console(stderr=True, soft_wrap=True)

DatabaseOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="QUOTAMETER_DATABASE_URL",
        help="sqlite:///path (default) or postgresql+psycopg://…",
    ),
]


def _settings(database_url: str | None, **extra: object) -> Settings:
    values = {k: v for k, v in {"database_url": database_url, **extra}.items() if v is not None}
    # why: the options arrive as plain objects; Settings validates each one (and says which).
    return Settings(**values)  # type: ignore[arg-type]


@app.command()
def serve(
    database_url: DatabaseOpt = None,
    host: Annotated[str | None, typer.Option(envvar="QUOTAMETER_HOST")] = None,
    port: Annotated[int | None, typer.Option(envvar="QUOTAMETER_PORT")] = None,
    log_level: Annotated[
        str | None,
        typer.Option(envvar="QUOTAMETER_LOG_LEVEL", help="critical, error, warning, info or debug"),
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(envvar="QUOTAMETER_LOG_FORMAT", help="json or text")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="worker processes on one port (use PostgreSQL past one)")
    ] = 1,
) -> None:
    """Serve the HTTP API (and the notice scheduler) until stopped."""
    settings = _settings(
        database_url, host=host, port=port, log_level=log_level, log_format=log_format
    )
    _serve(settings, workers)


def _serve(
    settings: Settings,
    workers: int = 1,
    banner: Callable[[], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    announce: bool = True,
) -> None:
    """Serve until stopped; `clock` (one worker only) is the app's, by default the system's;
    `announce` off: the caller has already said which database this is."""

    if clock is not None and workers != 1:
        raise ValueError("clock: worker processes read the system clock; serve one worker")
    clock = clock or system_clock
    engine = _engine(settings.database_url, announce=announce)
    with unit_of_work(engine) as conn:
        admin = settings.admin_key.get_secret_value() if settings.admin_key else None
        made = bootstrap(conn, admin, to_us(clock()))
    engine.dispose()
    if made:
        console.print(
            f"first admin key (shown this once, keep it): [bold]{made}[/bold]", highlight=False
        )
    if banner is not None:
        banner()
    console.print(
        f"quotameter listening on [bold]http://{settings.host}:{settings.port}[/bold] "
        f"(database: {_where(settings.database_url)}); API docs at /docs",
        highlight=False,
    )
    # The web stack (FastAPI, uvicorn, every router) takes about a second to import: only the
    # commands that serve pay for it.
    import uvicorn

    from quotameter.server import create_app

    log_config = logs.config(settings.log_level, settings.log_format)
    options = uvicorn_options(settings)
    if workers == 1:
        uvicorn.run(create_app(settings, clock=clock), **options, log_config=log_config)
        return
    # Worker processes build their app from the environment: hand them these settings.
    for name, value in settings.model_dump(exclude={"admin_key"}).items():
        os.environ[f"QUOTAMETER_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    uvicorn.run(
        "quotameter.server:app_from_environment",
        factory=True,
        **options,
        workers=workers,
        log_config=log_config,
    )


def _engine(database_url: str | None, *, announce: bool = True, made_here: bool = False) -> Engine:
    """An engine on the configured database, migrated to the newest schema.

    With `announce`, it says on stderr (so that what the command prints on stdout stays clean)
    which database it opened and, when that is a SQLite file that was not there before, that
    it was made empty and how to open another; `made_here` says the command makes that file on
    purpose (the demo), which needs no such word."""
    from quotameter.store.migrate import upgrade  # Alembic: imported by the commands that open one

    url = _settings(database_url).database_url
    file = _sqlite_file(url)
    new = file is not None and not file.exists()
    if announce:
        err_console.print(f"database: {_where(url)}", markup=False, highlight=False)
    engine = make_engine(url)
    upgrade(engine)
    if announce and new and not made_here:
        assert file is not None  # `new` says so
        err_console.print(_new_file_note(file), style="yellow", markup=False, highlight=False)
    return engine


def _redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL opens, as an absolute path; None for anything else (PostgreSQL,
    an in-memory database, a `file:` URI)."""
    parsed = make_url(url)
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:":
        return None
    if name.startswith("file:") or "uri" in parsed.query:
        return None
    return Path(name).resolve()


def _where(url: str) -> str:
    """The database URL as people need to see it: a SQLite file by its absolute path (a
    relative one depends on the directory the command ran from), a password hidden."""
    file = _sqlite_file(url)
    if file is not None:
        return make_url(url).set(database=str(file)).render_as_string(hide_password=True)
    return _redact(url)


DEMO_DATABASE = "quotameter-demo.sqlite3"


def _new_file_note(file: Path) -> str:
    """What to say when a command made a new, empty SQLite file, and where the data the user
    probably meant may be."""
    note = (
        f"database: {file} did not exist; a new, empty database was made there. "
        "To open another, pass --database-url or set QUOTAMETER_DATABASE_URL"
    )
    demo = file.parent / DEMO_DATABASE
    if file.name != DEMO_DATABASE and demo.exists():
        return f"{note} (the demo's is --database-url sqlite:///{demo})."
    return f"{note}."


@app.command()
def apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="drop customers the file leaves out even if they have "
            "records (events, keys, invoices, …)",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="validate and print what would change; apply "
            "nothing (exit 1 if it would be refused)",
        ),
    ] = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Validate a catalog (YAML) and make it the one in force; nothing changes if any part is
    wrong, or if it leaves out customers with records and --prune is not given."""

    engine = _engine(database_url)
    try:
        doc = load_yaml(file.read_text())
        with unit_of_work(engine) as conn:
            applied = use_catalog.apply(
                conn,
                doc,
                catalog_service.CatalogCache().current(conn),
                to_us(system_clock()),
                prune=prune,
                dry_run=dry_run,
            )
    except CatalogInvalid as err:
        err_console.print(
            f"[red]{file}: the catalog was not applied; {_count(len(err.errors), 'error')}:[/red]"
        )
        for line in err.errors:
            err_console.print(f"  {line}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    except catalog_service.DropsRecordedCustomers as err:
        err_console.print(
            f"[red]{file}: the catalog was not applied: it leaves out "
            f"{_count(len(err.dropped), 'customer')} with records (--prune drops them; their "
            "records are kept):[/red]"
        )
        for line in err.errors or []:
            err_console.print(f"  {line}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    if dry_run:
        _print_changes(file, applied)
        if applied.refused:
            raise typer.Exit(1)
        return
    console.print(
        f"catalog version {applied.version} applied"
        + (
            f"; rebuilt meters: {', '.join(applied.changed_meters)}"
            if applied.changed_meters
            else ""
        )
        + (
            f"; dropped with their records kept: {', '.join(sorted(applied.dropped))}"
            if applied.dropped
            else ""
        ),
        highlight=False,
    )


def _print_changes(file: Path, applied: Applied) -> None:
    """What a dry run found: each section's additions, removals and changes."""

    verdict = (
        "would be refused without --prune"
        if applied.refused
        else f"would become version {applied.version}"
    )
    console.print(f"{file}: valid; {verdict} (dry run: nothing applied)", highlight=False)
    for section, changes in applied.diff.as_dict().items():
        words = [
            f"{sign} {name}"
            for key, sign in (("added", "+"), ("removed", "-"), ("changed", "~"))
            for name in changes[key]
        ]
        console.print(
            f"  {section}: {', '.join(words) if words else 'unchanged'}",
            markup=False,
            highlight=False,
        )
    if applied.changed_meters:
        console.print(
            f"  meters rebuilt from the events: {', '.join(applied.changed_meters)}",
            highlight=False,
        )
    if applied.dropped:
        console.print(
            "  left out with records (--prune drops them, keeping their records):", highlight=False
        )
        for line in dropped_lines(applied.dropped):
            console.print(f"    {line}", markup=False, highlight=False)


@app.command()
def ingest(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="one CloudEvent per line (JSON Lines)"
        ),
    ],
    batch: Annotated[int, typer.Option(min=1, max=10_000, help="events per transaction")] = 1000,
    database_url: DatabaseOpt = None,
) -> None:
    """Load events from a JSON Lines file, in batches, as POST /v1/events would take them."""

    engine = _engine(database_url)
    catalogs = CatalogCache()
    accepted = duplicates = 0
    rejected: list[tuple[int, str]] = []  # (line number, reason)

    @retry_transient
    def flush(lines: list[int], items: list[object]) -> None:
        nonlocal accepted, duplicates
        with unit_of_work(engine) as conn:
            result = store_events(
                Context(conn, catalogs.current(conn)), items, to_us(system_clock())
            )
        accepted += result.accepted
        duplicates += result.duplicates
        rejected.extend((lines[r["index"]], r["error"]) for r in result.rejected)

    total = file.stat().st_size
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with (
        file.open("rb") as handle,
        # A bar only for a terminal: piped, it would leave nothing but an empty line.
        Progress(
            *columns, console=err_console, transient=True, disable=not err_console.is_terminal
        ) as progress,
    ):
        task = progress.add_task(f"ingesting {file.name} (bytes)", total=total)
        lines: list[int] = []
        items: list[object] = []
        for number, raw in enumerate(handle, start=1):
            progress.advance(task, len(raw))
            if not raw.strip():
                continue
            try:
                items.append(orjson.loads(raw))
                lines.append(number)
            except orjson.JSONDecodeError as err:
                rejected.append((number, f"line: not valid JSON ({err})"))
                continue
            if len(items) >= batch:
                flush(lines, items)
                lines, items = [], []
        if items:
            flush(lines, items)
    rejected.sort()
    console.print(
        f"{file}: [green]{_number(accepted)} accepted[/green], "
        f"{_count(duplicates, 'duplicate')}, "
        f"[{'red' if rejected else 'green'}]{_number(len(rejected))} rejected[/]",
        highlight=False,
    )
    for number, reason in rejected[:50]:
        console.print(f"  line {number}: {reason}", markup=False, highlight=False)
    if len(rejected) > 50:
        console.print(f"  … and {_number(len(rejected) - 50)} more", highlight=False)
    if rejected:
        raise typer.Exit(1)


keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Argument(help="admin, ingest or customer")],
    customer: Annotated[
        str | None, typer.Option(help="the customer a 'customer' key reads")
    ] = None,
    label: Annotated[str | None, typer.Option(help="a note on what the key is for")] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Make a key. It is printed this once; only its digest is stored."""

    engine = _engine(database_url)
    with _domain_errors(), unit_of_work(engine) as conn:
        known = CatalogCache().current(conn).spec.customers
        view, secret = keys.create(conn, role, customer, label, to_us(system_clock()), known)
    console.print(
        f"{view['id']} ({view['role']}{', ' + view['customer'] if view['customer'] else ''})",
        highlight=False,
    )
    console.print(secret, style="bold", highlight=False)


@keys_app.command("list")
def keys_list(database_url: DatabaseOpt = None) -> None:
    """Every key, revoked ones included (never the key itself)."""

    with _engine(database_url).connect() as conn:
        rows = keys.listing(conn)
    table = Table(box=None)
    table.add_column("id", no_wrap=True)
    for name in ("role", "customer", "label", "created", "revoked"):
        table.add_column(name, overflow="fold")
    for k in rows:
        table.add_row(
            k["id"],
            k["role"],
            k["customer"] or "",
            k["label"] or "",
            rfc3339(k["created_at"]),
            rfc3339(k["revoked_at"]) if k["revoked_at"] else "",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (see `keys list`)")],
    database_url: DatabaseOpt = None,
) -> None:
    """Revoke a key: refused from now on (by other running servers within a few seconds)."""

    with _domain_errors(), unit_of_work(_engine(database_url)) as conn:
        keys.revoke(conn, key_id, to_us(system_clock()))
    console.print(f"{key_id} revoked", highlight=False)


@contextmanager
def _domain_errors() -> Iterator[None]:
    """A domain error ends the command with its message and exit status 1."""

    try:
        yield
    except QuotameterError as err:
        err_console.print(f"[red]{err.message}[/red]", highlight=False)
        raise typer.Exit(1) from None


def _settle(engine: Engine, catalogs: CatalogCache, customer: str) -> None:
    """As the API does before it reads a customer's balance, usage or invoice: an evaluation
    the customer owes (usage since its last one may have moved it up a plan) is made first, a
    short write; one lookup when nothing is owed."""
    balances.settle(engine, catalogs, customer, system_clock)


@app.command()
def balance(
    customer: str,
    feature: str,
    at: Annotated[str | None, typer.Option(help="RFC 3339 instant (default: now)")] = None,
    output: Annotated[
        str, typer.Option("--format", help="text, or json as GET …/entitlements/{feature} answers")
    ] = "text",
    database_url: DatabaseOpt = None,
) -> None:
    """Show a customer's balance for one feature (GET /v1/customers/{customer}/entitlements/
    {feature})."""

    engine = _engine(database_url)
    with _domain_errors():
        if output not in ("text", "json"):
            raise Invalid(f"format: must be text or json (got {output!r})")
        when: datetime = instant(at, "at", system_clock())
        catalogs = CatalogCache()
        _settle(engine, catalogs, customer)
        with engine.connect() as conn:
            b = read_balance(Context(conn, catalogs.current(conn)), customer, feature, when)
    if output == "json":
        console.print(dumps(b.as_dict()).decode(), highlight=False, markup=False)
        return
    for line in _balance_lines(b):
        console.print(line, markup=False, highlight=False)


def _balance_lines(b: Balance) -> list[str]:
    """The whole balance for people: each figure with its unit, and what a missing one means
    (no allowance, never blocked)."""
    s = b.standing

    def amount(value: Decimal | None, missing: str) -> str:
        return missing if value is None else _count(value, b.unit)

    rows = [
        ("plan", b.plan),
        ("meter", b.meter),
        ("period", f"{rfc3339(b.period.start)} … {rfc3339(b.period.end)}"),
        ("usage", _count(s.usage, b.unit) + (" (the period's highest level)" if s.gauge else "")),
    ]
    if s.level is not None:
        rows.append(("level", f"{_count(s.level, b.unit)} now"))
    rows += [
        ("included", amount(s.included, "unlimited")),
        ("granted", _count(s.granted, b.unit)),
        ("limit", amount(s.limit, "none")),
        ("remaining", amount(s.remaining, "unlimited")),
        ("overage", _count(s.overage, b.unit)),
        ("hard limit", amount(s.hard_limit, "none (never blocked)")),
        ("has access", "yes" if s.has_access else "no (blocked)"),
    ]
    width = max(len(name) for name, _ in rows)
    return [
        f"{b.customer} / {b.feature} at {rfc3339(b.at)}",
        *(f"  {name.ljust(width)}  {value}" for name, value in rows),
    ]


@app.command()
def usage(
    customer: str,
    feature: Annotated[str, typer.Argument(help="a feature of the customer's plan")],
    group_by: Annotated[
        str | None, typer.Option("--group-by", help="a data property, e.g. user")
    ] = None,
    window: Annotated[str | None, typer.Option(help="hour, day or month")] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="RFC 3339 (default: start of the period)")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="RFC 3339, exclusive (default: now)")
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """Who used how much of a feature, and when (GET /v1/customers/{customer}/usage)."""

    engine = _engine(database_url)
    with _domain_errors():
        if window is not None and not is_window(window):
            raise Invalid(f"window: must be day, hour or month (got {window!r})")
        query = UsageQuery(
            feature,
            group_by,
            window,
            instant(start, "from", EPOCH) if start else None,
            instant(end, "to", EPOCH) if end else None,
        )
        catalogs = CatalogCache()
        _settle(engine, catalogs, customer)
        with engine.connect() as conn:
            result = report(Context(conn, catalogs.current(conn)), customer, query, system_clock())
    table = Table(
        box=None,
        title=f"{customer} / {feature}: {_count(result.total, result.unit)} "
        f"from {rfc3339(result.start)} to {rfc3339(result.end)}",
        title_justify="left",
    )
    if group_by:
        table.add_column(group_by, overflow="fold")
    if window:
        table.add_column(window, no_wrap=True)
    table.add_column(plural(result.unit), justify="right")
    for row in result.rows:
        cells = ([row.group or "(none)"] if group_by else []) + (
            [rfc3339(row.start)] if window else []
        )
        table.add_row(*cells, _number(row.usage))
    console.print(table)


def _number(value: Decimal | int | str) -> str:
    """A number as people read it: 4526 -> "4,526", 30.250 -> "30.25"; exact, never a float."""
    d = Decimal(str(value)).normalize()
    return f"{int(d):,}" if d == d.to_integral_value() else f"{d:,f}"


def _count(value: Decimal | int | str, unit: str) -> str:
    """A count with its unit: "1 duplicate", "2 duplicates", "4,533 minutes", "30.25 hours"."""
    return f"{_number(value)} {plural(unit, value)}"


@app.command()
def demo(
    database: Annotated[Path, typer.Option(help="the SQLite file to (re)create")] = Path(
        DEMO_DATABASE
    ),
    host: Annotated[str | None, typer.Option(envvar="QUOTAMETER_HOST")] = None,
    port: Annotated[int | None, typer.Option(envvar="QUOTAMETER_PORT")] = None,
    serve: Annotated[bool, typer.Option(help="serve the API once loaded")] = True,
    now: Annotated[
        str | None,
        typer.Option(
            "--now",
            help="RFC 3339: the demo's clock; the month is loaded up to it and the server's clock "
            "runs on "
            "from it (default: now, or whole days earlier while a month is too young for the "
            "story)",
        ),
    ] = None,
) -> None:
    """Load a month of usage of eight organizations under the four reference policies into a
    fresh SQLite database, then serve it and print what to try."""

    today = system_clock()
    with _domain_errors():
        pinned = instant(now, "now", today) if now else None
    start = pinned or story_clock(today)
    for suffix in ("", "-wal", "-shm"):  # a fresh month every time
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    settings = _settings(f"sqlite:///{database}", host=host, port=port, log_format="text")
    engine = _engine(settings.database_url, made_here=True)
    with console.status("loading a month of usage of eight organizations…"):
        summary = load_demo(engine, start)
    with unit_of_work(engine) as conn:
        shown = {o.customer: o.state for o in summary.organizations}
        known = set(shown)
        if settings.admin_key:
            keys.bootstrap(conn, settings.admin_key.get_secret_value(), to_us(start))
            admin = "$QUOTAMETER_ADMIN_KEY"
        else:
            admin = keys.create(conn, "admin", None, "demo admin", to_us(start), known)[1]
        acme = keys.create(conn, "customer", "acme", "demo: acme's app", to_us(start), known)[1]
    engine.dispose()

    url = f"http://{settings.host}:{settings.port}"
    console.print(_console_line(url, None if serve else database, settings), highlight=False)
    console.print(f"admin key: {admin}", highlight=False)
    console.print(f"acme's customer key: {acme}", highlight=False)
    if pinned is None and start < today:
        days = round((today - start) / timedelta(days=1))
        console.print(
            f"The demo's clock is {_count(days, 'day')} back: the story needs "
            f"{_count(STORY_DAYS, 'day')} of every organization's period behind it; --now T "
            "picks another instant.",
            highlight=False,
        )
    table = Table(
        title=f"{_count(summary.events, 'event')}, {_count(summary.notices, 'notice')}, "
        f"up to {start:%d %b %Y %H:%M} UTC",
        title_justify="left",
        box=None,
    )
    for name in ("customer", "plan", "feature", "state"):
        table.add_column(name, overflow="fold", no_wrap=name != "state")
    for row in summary.table():
        table.add_row(*row)
    console.print(table)
    if not serve:
        return

    def banner() -> None:
        console.print("\n[bold]Try[/bold] (in another shell):", highlight=False)
        for line in _demo_tries(url, admin, acme, shown):
            console.print(f"  {line}", markup=False, highlight=False)
        console.print(
            f"  open {url}/ for the console, {url}/docs for every endpoint; "
            "Ctrl+C stops the demo\n",
            highlight=False,
        )

    # The server's clock runs on from the demo's: acme's meeting still crosses its next threshold
    # live.
    _serve(settings, banner=banner, clock=clock_from(start), announce=False)


def _console_line(url: str, unserved: Path | None, settings: Settings) -> str:
    """The demo's first line: where its console is and which key signs in as whom. With
    --no-serve (`unserved`: the database loaded) nothing is served: it says so, and which
    command would serve that database at that URL."""
    who = "sign in with the admin key, or with acme's key to see acme as its admin"
    if unserved is None:
        return f"Console: {url}/ — {who}"
    serve = f"quotameter serve --database-url sqlite:///{unserved}"
    if settings.host != Settings.model_fields["host"].default:
        serve += f" --host {settings.host}"
    if settings.port != Settings.model_fields["port"].default:
        serve += f" --port {settings.port}"
    return f"Console: not served (--no-serve); `{serve}` would serve it at {url}/ — {who}"


def _demo_tries(url: str, admin: str, acme: str, states: dict[str, str]) -> list[str]:
    """The requests to try, each only where the organization's state (as printed) bears it out."""
    a = f'-H "Authorization: Bearer {admin}"'
    c = f'-H "Authorization: Bearer {acme}"'
    lines = [
        "# acme's media minutes, as its own app sees them (and what it may not see):",
        f"curl -s {c} {url}/v1/customers/acme/entitlements/media",
        f"curl -s {c} {url}/v1/customers/studio/entitlements/managed_media   # 403",
        "# who in acme used how much, day by day:",
        f"curl -s {c} '{url}/v1/customers/acme/usage?feature=media&group_by=user&window=day'",
        "# acme's in-app stream: blocks and restores the moment they happen (Ctrl+C to leave):",
        f"curl -sN {c} {url}/v1/customers/acme/notifications/stream",
    ]
    if states.get("docs", "").startswith("auto-upgraded"):
        lines += [
            "# docs' running invoice: its auto-upgrade is prorated on a line of its own (also "
            "?format=csv):",
            f"curl -s {a} {url}/v1/customers/docs/invoices/upcoming",
        ]
    if "bought" in states.get("kestrel", ""):
        lines += [
            "# kestrel's notices: 85, 90 and 95 % used, then the top-up it bought the next working "
            "morning:",
            f"curl -s {a} {url}/v1/customers/kestrel/notifications",
        ]
    if states.get("northwind", "").startswith("blocked"):
        lines += [
            "# northwind is blocked; its notices, then a 1,000-minute block that lifts it:",
            f"curl -s {a} {url}/v1/customers/northwind/notifications",
            f"curl -s {a} -X POST {url}/v1/customers/northwind/topups -H 'content-type: "
            "application/json' "
            '-d \'{"feature":"media","blocks":1,"id":"try-1"}\'',
            f"curl -s {a} -X POST {url}/v1/customers/northwind/entitlements/media/check "
            "-H 'content-type: application/json' -d '{\"amount\":30}'",
        ]
    return lines


@app.command()
def invoices(
    customer: str,
    at: Annotated[str | None, typer.Option(help="RFC 3339 instant (default: now)")] = None,
    output: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    finalize_due: Annotated[
        bool,
        typer.Option(
            "--finalize-due",
            help="first finalize every invoice whose period ended more than the grace window ago",
        ),
    ] = False,
    plan: Annotated[
        str | None,
        typer.Option(
            "--plan",
            help="what if: price the period so far on this plan instead (same events, seats, "
            "grants); nothing is stored",
        ),
    ] = None,
    database_url: DatabaseOpt = None,
) -> None:
    """A customer's running invoice at AT (GET /v1/customers/{customer}/invoices/upcoming)."""

    engine = _engine(database_url)
    catalogs = CatalogCache()
    with _domain_errors():
        if output not in ("table", "json", "csv"):
            raise Invalid(f"format: must be table, json or csv (got {output!r})")
        now = system_clock()
        when: datetime = instant(at, "at", now)
        failed: dict[str, datetime | None] = {}
        if finalize_due:
            grace = timedelta(seconds=_settings(database_url).invoice_grace_seconds)
            state = invoicing.FinalizerState()
            made = invoicing.finalize_due(engine, catalogs, now, grace, state)
            failed = state.failing
            err_console.print(f"{_count(made, 'invoice')} finalized", highlight=False)
            for name in sorted(failed):  # each logged above with its reason
                err_console.print(
                    f"[red]customer {name!r}: not finalized (see the error above)[/red]",
                    highlight=False,
                )
        _settle(engine, catalogs, customer)
        with engine.connect() as conn:
            ctx = Context(conn, catalogs.current(conn))
            if plan:
                inv = invoicing.what_if(ctx, customer, plan, when)
            else:
                inv = invoicing.upcoming(ctx, customer, when)
    if output == "json":
        console.print(dumps(inv.as_dict()).decode(), highlight=False, markup=False)
    elif output == "csv":
        console.print(export.to_csv([inv]), end="", highlight=False, markup=False)
    else:
        table = Table(
            box=None,
            title=f"{inv.number} ({'what if' if inv.hypothetical else inv.status}) for "
            f"{inv.customer}, plan {inv.plan}: "
            f"{rfc3339(inv.period.start)} … {rfc3339(inv.period.end)}",
            title_justify="left",
        )
        table.add_column("item", overflow="fold")
        table.add_column("quantity", justify="right")
        table.add_column("unit price", justify="right")
        table.add_column(f"amount ({inv.currency})", justify="right")
        for line in inv.lines:
            money = line.as_dict(inv.currency)
            table.add_row(
                line.description,
                _number(line.quantity),
                str(money["unit_price"] or ""),
                str(money["amount"]),
            )
        table.add_row(
            "[bold]total[/bold]", "", "", f"[bold]{amount_text(inv.total, inv.currency)}[/bold]"
        )
        console.print(table)
    if failed:  # what could be shown is shown; the status says not everything was finalized
        raise typer.Exit(1)


@app.command()
def simulate(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    start: Annotated[
        str | None,
        typer.Option(
            "--from", help="RFC 3339 (default: the start of each customer's current period)"
        ),
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="RFC 3339 (default: now)")] = None,
    output: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
    database_url: DatabaseOpt = None,
) -> None:
    """What a candidate catalog (YAML) would have done with the recorded events, next to the
    catalog in force: usage, overage, blocks and invoices per customer, and the change in
    revenue. Nothing is applied or stored."""
    engine = _engine(database_url)
    try:
        with _domain_errors():
            if output not in ("table", "json", "csv"):
                raise Invalid(f"format: must be table, json or csv (got {output!r})")
            now = system_clock()
            lo = instant(start, "from", now) if start else None
            hi = instant(end, "to", now) if end else None
            doc = load_yaml(file.read_text())
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                console=err_console,
                transient=True,
                disable=not err_console.is_terminal,
            ) as bar:
                task = bar.add_task("pricing customers under both catalogs", total=None)
                found = simulation.simulate(
                    engine,
                    doc,
                    now,
                    lo,
                    hi,
                    lambda done, of: bar.update(task, completed=done, total=of),
                )
    except CatalogInvalid as err:
        err_console.print(f"[red]{file}: not a valid catalog[/red]", highlight=False)
        for line in err.errors:
            err_console.print(f"  {line}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    if output == "json":
        console.print(dumps(found.as_dict()).decode(), highlight=False, markup=False)
    elif output == "csv":
        console.print(found.to_csv(), end="", highlight=False, markup=False)
    else:
        _simulation_table(found)


def _simulation_table(found: simulation.Simulation) -> None:
    span = f"{rfc3339(found.start)} … " if found.start else "each customer's current period to "
    table = Table(
        box=None,
        title=f"old catalog → candidate, {span}{rfc3339(found.end)}",
        title_justify="left",
    )
    for column in ("customer", "plan", "feature", "usage", "overage", "blocked"):
        table.add_column(column, overflow="fold")
    for column in ("invoices", "change"):
        table.add_column(column, justify="right")
    for result in found.customers:
        old, new = result.old, result.new
        for k, (feature, a, b) in enumerate(result.features() or [("", None, None)]):
            first = k == 0
            table.add_row(
                result.customer if first else "",
                _pair(old.plan if old else None, new.plan if new else None) if first else "",
                feature,
                _pair(
                    _count(a.usage, a.unit) if a else None, _count(b.usage, b.unit) if b else None
                ),
                _pair(_number(a.overage) if a else None, _number(b.overage) if b else None),
                _pair(_when(a), _when(b)),
                _pair(
                    _money(old.total, old.currency) if old else None,
                    _money(new.total, new.currency) if new else None,
                )
                if first
                else "",
                _signed(result.change, result.currency) if first else "",
            )
    console.print(table)
    for currency, (before, after) in sorted(found.totals().items()):
        console.print(
            f"revenue: {_money(before, currency)} → {_money(after, currency)} "
            f"({_signed(after - before, currency)})",
            highlight=False,
        )


def _pair(old: str | None, new: str | None) -> str:
    old, new = old or "—", new or "—"
    return old if old == new else f"{old} → {new}"


def _when(outcome: simulation.FeatureOutcome | None) -> str | None:
    if outcome is None:
        return None
    return "no" if outcome.blocked_at is None else rfc3339(outcome.blocked_at)


def _money(value: Decimal, currency: str) -> str:
    return f"{amount_text(value, currency)} {currency}"


def _signed(value: Decimal, currency: str) -> str:
    return ("+" if value > 0 else "") + _money(value, currency)


if __name__ == "__main__":  # pragma: no cover
    app()
