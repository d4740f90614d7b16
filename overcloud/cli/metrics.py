"""`overcloud metrics query|latest`: read an OverCloud's DevLake back as tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from overcloud.cli.common import console, settings
from overcloud.errors import PermanentError, TemporaryError, UserError

app = typer.Typer(help="Query the DevLake (InfluxQL).", no_args_is_help=True)

Overcloud = Annotated[str, typer.Option(help="OverCloud whose DevLake to read (default: the UnderCloud's).")]


def _database(overcloud: str) -> str:
    s = settings().influx
    return f"{s.database_prefix}{overcloud}" if overcloud else s.default_database


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
        t = Table(title=f"{title}  [dim]({database})[/]", title_justify="left")
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
    db = database or _database(overcloud)
    series = _run(statement, db)
    if not series:
        console.print(f"(no rows in {db})")
        return
    _print_series(series, db)


@app.command()
def latest(
    overcloud: Overcloud = "",
    measurement: Annotated[str, typer.Option(help="Only this measurement.")] = "",
) -> None:
    """The newest sample of every series, one table per measurement."""
    db = _database(overcloud)
    if measurement and not measurement.replace("_", "").isalnum():
        raise UserError(f"bad measurement name {measurement!r}")
    source = f'"{measurement}"' if measurement else "/.*/"
    series = _run(f"SELECT * FROM {source} GROUP BY * ORDER BY time DESC LIMIT 1", db)
    if not series:
        raise UserError(
            f"no samples in {db} yet (is `overcloud devlake run` running and an agent sending?)"
        )
    # one table per measurement: tags as columns next to the fields
    merged: dict[str, dict[str, Any]] = {}
    for s in series:
        tags = s.get("tags") or {}
        tag_cols = sorted(k for k in tags)
        m = merged.setdefault(
            s["name"], {"name": s["name"], "columns": tag_cols + s["columns"], "values": []}
        )
        if len(m["columns"]) != len(tag_cols) + len(s["columns"]):
            continue
        for row in s.get("values", []):
            m["values"].append([tags.get(k, "") for k in tag_cols] + row)
    for m in merged.values():
        _trim_columns(m)
    _print_series(list(merged.values()), db)


def _trim_columns(series: dict[str, Any]) -> None:
    """Drop columns that are empty in every row (tags of other series, absent fields)."""
    cols = series["columns"]
    keep = [i for i, _ in enumerate(cols) if any(r[i] not in (None, "") for r in series["values"])]
    series["columns"] = [cols[i] for i in keep]
    series["values"] = [[r[i] for i in keep] for r in series["values"]]
