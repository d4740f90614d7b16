"""`overcloud dashboards export|push|check`: the Grafana dashboards generated in `dashboards/`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from devtower.cli.common import console, settings
from overcloud.errors import PermanentError, TemporaryError, UserError

app = typer.Typer(help="Grafana dashboards as code (UnderCloud, OverCloud, alerts).", no_args_is_help=True)


ADMIN_PASSWORD_ENV = "OVERCLOUD_INFLUX_PASSWORD"


@app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="Where to write provisioning/ and dashboards/.")],
    grafana_path: Annotated[str, typer.Option(
        help="Path of DIR/dashboards as Grafana sees it (default: DIR/dashboards, absolute).")] = "",
    rules: Annotated[Path | None, typer.Option(
        help="Alert rule file to export as Grafana alert rules (default: the built-in rules).")] = None,
    overcloud: Annotated[str, typer.Option(
        help="Export for one OverCloud's developer: its dashboard, and a data source signed in "
             "as its read-only DevLake user (password in the file: keep it private).")] = "",
) -> None:
    """Write Grafana provisioning: data source, dashboard provider, dashboards, alert rules."""
    import yaml

    import dashboards
    from dashboards import provisioning
    from devlake.alerts.grafana import provisioning as alert_provisioning
    from devlake.alerts.rules import builtin_rules, load_rule_file
    from overcloud import influxauth

    s = settings()
    directory = directory.resolve()
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory} exists and is not a directory")
    path = grafana_path or str(directory / "dashboards")
    if overcloud:
        from dashboards import overcloud as overcloud_dashboard
        from orchestrator.registry import Registry
        from overcloud.names import RULE, is_overcloud_name

        if not is_overcloud_name(overcloud):
            raise UserError(f"--overcloud must be {RULE}")
        rec = Registry(s).get(overcloud)
        if rec is None:
            raise UserError(f"no OverCloud named {overcloud}")
        reader = influxauth.reader(s.influx.credentials, overcloud, rec.request_id)
        if reader is None:
            raise UserError("InfluxDB runs without authentication here: no read-only user "
                            "to export")
        files = provisioning.plan(s.influx, [overcloud_dashboard.build()], path,
                                  login=(reader.username, reader.password),
                                  database=f"{s.influx.database_prefix}{overcloud}")
    else:
        alerting = alert_provisioning(load_rule_file(rules) if rules else builtin_rules(),
                                      datasource_uid=dashboards.DATASOURCE_UID,
                                      folder=provisioning.FOLDER)
        rules_file = provisioning.ProvisioningFile(
            Path("provisioning/alerting/overcloud.yaml"), yaml.safe_dump(alerting, sort_keys=False))
        admin = influxauth.account(s.influx.credentials, influxauth.ADMIN)
        # the admin password stays out of the file: Grafana expands the variable at start
        login = (admin.username, f"${ADMIN_PASSWORD_ENV}") if admin else None
        files = provisioning.plan(s.influx, dashboards.all_dashboards(), path,
                                  extra=[rules_file], login=login)
        if admin:
            console.print(f"the data source signs in as {admin.username}: start Grafana with "
                          f"{ADMIN_PASSWORD_ENV} set to admin_password of {s.influx.credentials}")
    written = provisioning.write(files, directory)
    if overcloud:
        (directory / "provisioning/datasources/overcloud.yaml").chmod(0o600)
    for f in files:
        mark = "wrote" if directory / f.path in written else "unchanged"
        console.print(f"{mark:9} {directory / f.path}")


@app.command()
def push(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. http://127.0.0.1:3000.")],
    token: Annotated[str, typer.Option(help="Service-account token (Editor).", envvar="GRAFANA_TOKEN")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds per API call.")] = 10.0,
) -> None:
    """Upsert the data source, the OverCloud folder and the dashboards into a running Grafana."""
    import dashboards
    from dashboards.push import push as do_push

    if not url.startswith(("http://", "https://")):
        raise UserError(f"--url must start with http:// or https://, got {url!r}")
    report = do_push(url.rstrip("/"), token, settings().influx, dashboards.all_dashboards(), timeout)
    console.print(f"data source {report.datasource}, folder {report.folder}")
    for u in report.dashboards:
        console.print(f"dashboard  {url.rstrip('/')}{u}")


@app.command()
def check(
    overcloud: Annotated[str, typer.Option(help="OverCloud whose DevLake the dashboards read.")],
    time_range: Annotated[str, typer.Option("--range", help="Look-back of $timeFilter.")] = "1h",
    show_all: Annotated[bool, typer.Option("--all", help="List the panels with data too.")] = False,
) -> None:
    """Run every panel's query against the DevLake like Grafana would; exit 1 if any is empty."""
    import dashboards
    from dashboards.check import check as run_check
    from devlake.sinks import InfluxQL

    s = settings().influx
    ql = InfluxQL(s)
    try:
        try:
            known = ql.databases()
        except (TemporaryError, PermanentError) as exc:
            raise UserError(f"{exc} (is it running? try: overcloud services status)") from None
        db = f"{s.database_prefix}{overcloud}"
        if db not in known:
            raise UserError(f"no DevLake for OverCloud {overcloud!r} (database {db} does not exist)")
        results = run_check(ql, dashboards.all_dashboards(), db, s.default_database, time_range=time_range)
    finally:
        ql.close()
    t = Table(title=f"dashboard panels against {s.base_url} ({db}, last {time_range})", title_justify="left")
    for c in ("dashboard", "panel", "rows", "problem"):
        t.add_column(c, justify="right" if c == "rows" else "left")
    bad = [r for r in results if not r.ok]
    for r in results if show_all else bad:
        t.add_row(r.dashboard, r.panel, str(r.rows), r.error or ("" if r.ok else "no data"))
    if show_all or bad:
        console.print(t)
    console.print(f"{len(results) - len(bad)}/{len(results)} panel queries returned data")
    if bad:
        raise typer.Exit(1)
