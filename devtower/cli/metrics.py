"""`overcloud metrics query|latest`: read an OverCloud's DevLake back as tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from devtower.cli.common import console, settings, tower
from overcloud import influxql
from overcloud.errors import PermanentError, TemporaryError, UserError
from overcloud.influxql import QL, compose
from overcloud.names import devlake_database

app = typer.Typer(help="Query the DevLake (InfluxQL).", no_args_is_help=True)

Overcloud = Annotated[str, typer.Option(help="OverCloud whose DevLake to read (default: the UnderCloud's).")]


def _database(overcloud: str) -> str:
    s = settings().influx
    if tower() is not None and not overcloud:
        raise UserError("through --tower you read your own OverCloud's DevLake: --overcloud NAME")
    if not overcloud:
        return s.default_database
    try:
        return devlake_database(s.database_prefix, overcloud)
    except ValueError as exc:
        raise UserError(f"--overcloud: {exc}") from None


def latest_query(measurement: str = "") -> QL:
    """The newest sample of every series of `measurement` (all measurements when empty)."""
    source = influxql.ident(measurement) if measurement else QL("/.*/")
    return compose("SELECT * FROM {} GROUP BY * ORDER BY time DESC LIMIT 1", source)


def _run(q: str, database: str) -> list[dict[str, Any]]:
    from devlake.sinks import InfluxQL

    ql = InfluxQL(settings().influx)
    try:
        return ql.query(q, database)
    except PermanentError as exc:
        raise UserError(f"query failed: {exc}") from None
    except TemporaryError as exc:
        raise UserError(f"{exc} (is it running? try: overcloud services status)") from None
    finally:
        ql.close()


def _fmt(col: str, v: Any) -> str:
    if col == "time" and isinstance(v, int):
        return datetime.fromtimestamp(v / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) < 1e6 else f"{v:.4e}"
    return "" if v is None else str(v)


def _print_series(series: list[dict[str, Any]], database: str) -> None:
    for s in series:
        tags = s.get("tags") or {}
        title = s.get("name", "") + (
            " " + ",".join(f"{k}={v}" for k, v in sorted(tags.items()) if v) if tags else ""
        )
        t = Table(title=Text.assemble(title, "  ", (f"({database})", "dim")), title_justify="left")
        columns = s.get("columns", [])
        for c in columns:
            t.add_column(c, justify="right" if c != "time" else "left")
        for row in s.get("values", []):
            t.add_row(*(_fmt(c, v) for c, v in zip(columns, row, strict=False)))
        console.print(t)


@app.command()
def query(
    statement: Annotated[str, typer.Argument(help="An InfluxQL statement.")],
    overcloud: Overcloud = "",
    database: Annotated[str, typer.Option(help="Database to use instead of an OverCloud's.")] = "",
) -> None:
    """Run an InfluxQL statement against an OverCloud's DevLake and print the result."""
    remote = tower()
    if remote is not None and database:
        raise UserError("--database: through --tower only your OverCloud's DevLake (--overcloud)")
    db = database or _database(overcloud)
    # through the DevTower: one read-only SELECT/SHOW, run as the OverCloud's own InfluxDB user
    series = remote.query(overcloud, statement) if remote is not None else _run(statement, db)
    if not series:
        console.print(f"(no rows in {db})")
        return
    _print_series(series, db)


#: the fields `latest` shows per measurement (others: the first few); --all shows every field
SUMMARY_FIELDS = {
    "resource_host": ["cpu_percent", "load1", "mem_used_percent", "swap_used_percent", "ncpu"],
    "resource_host_cpu": ["cpu_percent", "user", "system", "iowait"],
    "resource_host_disk": ["used_percent", "free", "total"],
    "resource_host_diskio": ["read_bytes_per_s", "write_bytes_per_s", "read_count_per_s",
                             "write_count_per_s"],
    "resource_host_net": ["bytes_recv_per_s", "bytes_sent_per_s", "errin", "errout", "dropin",
                          "dropout"],
    "resource_instance": ["running", "cpu_percent", "mem_usage", "disk_usage",
                          "net_bytes_received_per_s", "net_bytes_sent_per_s"],
    "agent_spool": ["queued_messages", "dropped_samples_total", "sent_messages_total", "connected"],
}
#: tags that only repeat the scope the user asked for; shown once in the title instead
SCOPE_TAGS = ("overcloud", "layer")


@app.command()
def latest(
    overcloud: Overcloud = "",
    measurement: Annotated[str, typer.Option(help="Only this measurement.")] = "",
    all_fields: Annotated[bool, typer.Option("--all", help="Show every field.")] = False,
) -> None:
    """The newest sample of every series, one table per measurement."""
    db = _database(overcloud)
    if measurement and not measurement.replace("_", "").isalnum():
        raise UserError(f"bad measurement name {measurement!r}")
    remote = tower()
    if remote is not None:
        series = [x for x in remote.latest(overcloud)
                  if not measurement or x.get("name") == measurement]
    else:
        series = _run(latest_query(measurement), db)
    if not series:
        raise UserError(
            f"no samples in {db} yet (is `overcloud devlake run` running and an agent sending?)"
        )
    by_measurement: dict[str, list[dict[str, Any]]] = {}
    for s in series:
        by_measurement.setdefault(s["name"], []).append(s)
    now = datetime.now(UTC).timestamp()
    for name in sorted(by_measurement):
        group = by_measurement[name]
        tag_cols = sorted({k for s in group for k, v in (s.get("tags") or {}).items()
                           if v and k not in SCOPE_TAGS})
        # one query over all measurements returns the union of their columns: keep this one's
        columns = [c for i, c in enumerate(group[0]["columns"]) if c != "time"
                   and any(s["values"][0][i] is not None for s in group)]
        fields = columns if all_fields else [
            c for c in SUMMARY_FIELDS.get(name, columns[:6]) if c in columns
        ]
        t = Table(title=Text.assemble(name, "  ", (f"({db})", "dim")), title_justify="left")
        for c in [*tag_cols, *fields, "age"]:
            t.add_column(c, justify="left" if c in tag_cols else "right")
        rows = []
        for s in group:
            tags = s.get("tags") or {}
            values = dict(zip(s["columns"], s["values"][0], strict=False))
            age = now - values["time"] / 1e9
            rows.append([*(tags.get(k, "") for k in tag_cols),
                         *(_fmt(f, values.get(f)) for f in fields), f"{age:.0f}s"])
        for row in sorted(rows):
            t.add_row(*row)
        console.print(t)
