"""An InfluxQL query target for the Grafana foundation SDK, which ships none for InfluxDB.

The SDK models every data source's query as a `Dataquery` variant and decodes panel targets
through a registry keyed by the data source type. It has no `influxdb` variant, so a
dashboard read back from JSON would turn our targets into opaque `UnknownDataquery` bags and
nothing could check them. This module adds the variant (raw InfluxQL, the only mode that is
portable across InfluxDB 1.x, 2.x and 3.x) and registers it, so a round-trip through the
SDK's models yields typed `InfluxQLQuery` objects again.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

#: the provisioned data source every panel uses (see `dashboards.provisioning`)
DATASOURCE_UID = "overcloud-devlake"
DATASOURCE_TYPE = "influxdb"
DATASOURCE = DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)

ResultFormat = Literal["time_series", "table"]


class InfluxQLQuery(cogvariants.Dataquery):
    """One raw InfluxQL target of a panel (Grafana's InfluxDB plugin, InfluxQL mode)."""

    def __init__(self, ref_id: str = "A", query: str = "", result_format: ResultFormat = "time_series",
                 alias: str | None = None, datasource: DataSourceRef | None = None) -> None:
        self.ref_id = ref_id
        self.query = query
        self.result_format = result_format
        self.alias = alias
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        if self.datasource is not None:
            payload["datasource"] = self.datasource.to_json()
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        if not data.get("rawQuery", False) or not isinstance(data.get("query"), str):
            raise ValueError(f"target {data.get('refId')!r} is not a raw InfluxQL query")
        fmt = data.get("resultFormat", "time_series")
        if fmt not in ("time_series", "table"):
            raise ValueError(f"target {data.get('refId')!r}: unknown resultFormat {fmt!r}")
        ds = data.get("datasource")
        return cls(
            ref_id=str(data.get("refId", "A")),
            query=data["query"],
            result_format=fmt,
            alias=data.get("alias"),
            datasource=DataSourceRef.from_json(ds) if isinstance(ds, dict) else None,
        )


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder in the SDK's style: `InfluxQL("SELECT …").ref_id("B").table()`."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=query, datasource=DATASOURCE)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def table(self) -> Self:
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> Self:
        self._internal.alias = alias
        return self


def register() -> None:
    """Teach the SDK's decoder our variant (idempotent: the registry is keyed by type)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=DATASOURCE_TYPE, from_json_hook=InfluxQLQuery.from_json)
    )


register()
