"""Upsert the data source, the folder and the dashboards into a running Grafana.

Uses `grafana-client`, an optional extra (`pip install 'overcloud[grafana]'`), pinned below 4:
versions 4 and 5 pull `urllib3-future`, which replaces `urllib3` in the environment and makes
`influxdb-client` fail at interpreter exit (checked in a fresh venv; see docs/RUNTIME notes).
Idempotent: the data source and folder are looked up by uid and updated or created, the
dashboards are saved with `overwrite`, so pushing twice leaves Grafana as pushing once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.models import dashboard as dm

from dashboards.provisioning import FOLDER, datasource
from overcloud.errors import UserError
from overcloud.settings import InfluxSettings

FOLDER_UID = "overcloud"


@dataclass
class PushReport:
    datasource: str = ""
    """'created' or 'updated'."""
    folder: str = ""
    dashboards: list[str] = field(default_factory=list)
    """URLs Grafana answered for each dashboard."""


def _client(url: str, token: str, timeout: float) -> Any:
    try:
        from grafana_client import GrafanaApi
    except ImportError:
        raise UserError("dashboards push needs grafana-client: pip install 'overcloud[grafana]'") from None
    return GrafanaApi.from_url(url, credential=token or None, timeout=timeout)


def push(url: str, token: str, influx: InfluxSettings, dashboards: Sequence[dm.Dashboard],
         timeout: float = 10.0) -> PushReport:
    from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError
    from requests import RequestException

    from dashboards import to_json

    api = _client(url, token, timeout)
    report = PushReport()
    from overcloud import influxauth

    admin = influxauth.account(influx.credentials, influxauth.ADMIN)
    # the API takes the secret itself and stores it encrypted (files only name a variable)
    ds = datasource(influx, (admin.username, admin.password) if admin else None)
    if influx.token:
        # the API takes the secret itself (provisioning files only name the variable)
        ds["secureJsonData"] = {"httpHeaderValue1": f"Token {influx.token}"}
    try:
        try:
            api.datasource.get_datasource_by_uid(ds["uid"])
            api.datasource.update_datasource_by_uid(ds["uid"], ds)
            report.datasource = "updated"
        except GrafanaClientError as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
            api.datasource.create_datasource(ds)
            report.datasource = "created"
        try:
            api.folder.get_folder(FOLDER_UID)
            report.folder = "exists"
        except GrafanaClientError as exc:
            if getattr(exc, "status_code", None) != 404:
                raise
            api.folder.create_folder(FOLDER, uid=FOLDER_UID)
            report.folder = "created"
        for d in dashboards:
            body = {**to_json(d), "id": None}
            answer = api.dashboard.update_dashboard(
                {"dashboard": body, "folderUid": FOLDER_UID, "overwrite": True,
                 "message": "overcloud dashboards push"})
            report.dashboards.append(str((answer or {}).get("url", d.uid)))
    except GrafanaUnauthorizedError:
        raise UserError(f"Grafana at {url} refused the token (401): pass a service-account token "
                        "with Editor rights via --token") from None
    except GrafanaException as exc:
        raise UserError(f"Grafana at {url}: {exc}") from None
    except RequestException as exc:
        raise UserError(f"Grafana at {url} unreachable: {type(exc).__name__}") from None
    return report
