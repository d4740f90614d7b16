"""The DevTower's HTTP API (`/v1`): each developer's own door to their OverClouds.

Built on FastAPI/Starlette, served by uvicorn (`devtower.server`). Every route takes the
caller's identity from `Authorization: Bearer <token>`; what a route may reveal or change is
decided in `devtower.ops`, the same functions the CLI uses. Errors are JSON
`{"error": {"status", "message"}}` (plus `problems` for a request document), never a
traceback: user mistakes are answered, not logged as failures.

Limits at the door: bodies over `MAX_BODY` bytes are refused while they stream in (413,
before the whole body is read), only YAML and JSON request bodies are read (415), and
tokens are never accepted in a URL (they would end up in access logs).
"""


import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dashboards.terminal import duration_seconds, window_step
from devtower import ops, streams, web
from devtower.journal import Journal
from devtower.ops import Conflict, Forbidden, NotFound, Tower
from devtower.streams import Incarnations
from devtower.tokens import Identity, TokenStore
from devtower.web import SESSION_COOKIE
from orchestrator.registry import OverCloudRecord
from orchestrator.request import RequestInvalid
from overcloud.errors import OverCloudError, TemporaryError, UserError

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml",
              "application/json", "text/plain"}


class DevLakeReader(Protocol):
    """Reads an OverCloud's DevLake as that OverCloud's read-only InfluxDB user."""

    def query(self, overcloud: str, q: str) -> list[dict[str, Any]]: ...
    def latest(self, overcloud: str) -> list[dict[str, Any]]: ...
    def top(self, overcloud: str) -> dict[str, Any]: ...
    def charts(self, overcloud: str, window: str, step: str) -> dict[str, Any]: ...
    def credentials(self, overcloud: str) -> dict[str, str]: ...


class Operator(Protocol):
    """What only operators reach: the UnderCloud inventory and its changes."""

    def undercloud(self) -> dict[str, Any]: ...
    def hosts(self) -> tuple[set[str], set[str], set[str]]:
        """(host names, site names, draining host names)"""
        ...
    def drain(self, host: str, evacuate: bool) -> dict[str, Any]: ...
    def undrain(self, host: str) -> dict[str, Any]: ...


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def error_response(status: int, message: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": {"status": status, "message": message}, **extra},
                        status_code=status, headers=headers)


class BodyLimit:
    """Refuse request bodies over `limit` bytes as they arrive (413), announced or not."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await error_response(413, f"request body over {self.limit} bytes")(scope, receive, send)
            return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooBig
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited, tracking_send)
        except _TooBig:
            if not started:
                await error_response(413, f"request body over {self.limit} bytes")(
                    scope, receive, send)


class _TooBig(Exception):
    pass


def make_app(tower: Tower, tokens: TokenStore, journal: Journal, devlake: DevLakeReader,
             operator: Operator, *, title: str = "OverCloud DevTower") -> FastAPI:
    app = FastAPI(title=title, version="1", openapi_url="/v1/openapi.json", docs_url="/v1/docs",
                  redoc_url=None)

    # --- errors ---------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"path": ".".join(str(p) for p in e.get("loc", ())), "line": None,
                     "message": str(e.get("msg", ""))[:200]} for e in exc.errors()]
        return error_response(422, "invalid request parameters", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(OverCloudError)
    async def _domain(_: Request, exc: OverCloudError) -> JSONResponse:
        if isinstance(exc, RequestInvalid):
            return error_response(422, f"{len(exc.problems)} problem(s) in the request document",
                                  problems=[{"path": p.path, "line": p.line, "message": p.message}
                                            for p in exc.problems])
        status = (404 if isinstance(exc, NotFound) else 403 if isinstance(exc, Forbidden)
                  else 409 if isinstance(exc, Conflict) else 503 if isinstance(exc, TemporaryError)
                  else 400 if isinstance(exc, UserError) else 500)
        if status == 500:
            log.error("devtower: %s: %s", type(exc).__name__, exc)
        return error_response(status, str(exc)[:500])

    # --- who is calling -------------------------------------------------------------------

    async def identity(request: Request,
                       authorization: Annotated[str | None, Header()] = None) -> Identity:
        # on the event loop, not in a thread: one indexed read of a WAL database (~10 µs)
        # costs less than the hop to a worker thread, which every request would pay
        if not authorization and request.cookies.get(SESSION_COOKIE):
            return web.session_identity(request, tokens)
        if not authorization:
            raise ApiError(401, "missing token: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        ident = tokens.verify(token.strip()) if scheme.lower() == "bearer" else None
        if ident is None:
            raise ApiError(401, "invalid, expired or revoked token")
        return ident

    Caller = Annotated[Identity, Depends(identity)]

    def run(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """Blocking work (SQLite, Kafka, InfluxDB) off the event loop."""
        return asyncio.to_thread(fn, *args)

    async def cached(fn: Callable[..., Any], *args: Any, subject: str | None = None) -> Any:
        """A read of records (and `subject`'s workflows): answered here when the snapshot
        has them (~50 µs), in a thread when it must re-read SQLite first."""
        if tower.reads.ready(subject):
            return fn(*args)
        return await run(fn, *args)

    # --- routes ---------------------------------------------------------------------------

    @app.get("/v1/whoami")
    async def whoami(request: Request, me: Caller) -> dict[str, Any]:
        out = {"owner": me.owner, "role": me.role.value, "token_id": me.token_id}
        session = request.scope.get("oc.session")
        if session is not None:  # the page's scripts send it back on every change
            out["csrf"] = session.csrf
            out["session_expires"] = session.expires
        grafana = web.grafana_url(tower.settings.devtower.grafana_url)
        if grafana:
            out["grafana"] = grafana
        return out

    @app.get("/v1/events")
    async def all_events(request: Request, me: Caller,
                         last_event_id: Annotated[str | None, Header()] = None,
                         after: Annotated[int | None, Query(ge=0)] = None) -> StreamingResponse:
        """Every change of the caller's OverClouds (an operator's: all), as one stream; what
        the page's list follows. Each OverCloud's entries start at its own incarnation."""
        follow = Incarnations(journal)
        # from where the caller says (`after`, or the last id it saw), else from now on
        resume = after is not None or bool(last_event_id)
        last = (after if after is not None else _event_id(last_event_id)) if resume \
            else journal.last_id()
        stream = streams.entries(
            journal=journal, follow=follow, run=run, disconnected=request.is_disconnected,
            records=lambda: cached(ops.visible_records, tower, me), after=last,
            # unnamed: a browser's EventSource hands every type to one handler
            render=lambda e: streams.frame(e, named=False, with_overcloud=True),
            hello=f"retry: 1000\nevent: hello\ndata: {json.dumps({'last': last})}\n\n".encode(),
            interval=0.25)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/v1/overclouds")
    async def list_overclouds(me: Caller) -> dict[str, Any]:
        return {"overclouds": await cached(ops.list_overclouds, tower, me)}

    async def document(request: Request, content_type: str | None) -> str:
        ctype = (content_type or "").split(";")[0].strip().lower()
        if ctype not in YAML_TYPES:
            raise ApiError(415, "send the request document as application/yaml or "
                                "application/json")
        raw = await request.body()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ApiError(400, "the body is not UTF-8 text") from None
        if "\0" in text:
            raise ApiError(400, "the body is binary, not a YAML or JSON document")
        return text

    @app.post("/v1/validate")
    async def validate(request: Request, me: Caller,
                       content_type: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        """Check a request document as POST /v1/overclouds would; creates nothing."""
        req = await run(ops.validate, me, await document(request, content_type), "request")
        return {"valid": True, "name": req.name, "summary": ops.summary_lines(req),
                "spec": req.to_spec()}

    @app.post("/v1/overclouds", status_code=202)
    async def create(request: Request, me: Caller, dry_run: bool = False,
                     content_type: Annotated[str | None, Header()] = None) -> JSONResponse:
        """Create an OverCloud, or change one of yours that exists (the same document with
        changes: the answer lists the plan). `dry_run`: only the plan, nothing published."""
        text = await document(request, content_type)
        sub = await run(ops.submit, tower, me, text, "request", dry_run)
        name = sub.request.name
        body: dict[str, Any] = {"name": name, "events": f"/v1/overclouds/{name}/events"}
        if sub.plan is not None:
            body["update"] = True
            body["changes"] = sub.plan.lines()
        if sub.event is None:
            if sub.plan is None:
                body["summary"] = ops.summary_lines(sub.request)
            body["state"] = "planned" if dry_run else "unchanged"
            return JSONResponse(body, status_code=200)
        body["id"] = sub.event.id
        body["state"] = "update requested" if sub.plan is not None else "requested"
        if sub.webhook_secret:
            body["webhook_secret"] = sub.webhook_secret
            body["note"] = "the webhook secret is shown once; keep it to verify signatures"
        return JSONResponse(body, status_code=202)

    @app.get("/v1/overclouds/{name}")
    async def show(name: str, me: Caller) -> dict[str, Any]:
        return dict(await cached(ops.detail, tower, me, name, subject=name))

    @app.delete("/v1/overclouds/{name}", status_code=202)
    async def delete(name: str, me: Caller, keep_data: bool = False) -> dict[str, Any]:
        event = await run(ops.delete, tower, me, name, keep_data)
        return {"id": event.id, "name": name, "state": "delete requested", "keep_data": keep_data}

    @app.get("/v1/overclouds/{name}/events")
    async def events(name: str, request: Request, me: Caller,
                     last_event_id: Annotated[str | None, Header()] = None,
                     after: Annotated[int | None, Query(ge=0)] = None) -> StreamingResponse:
        rec = await cached(ops.find, tower, me, name)
        start = after if after is not None else _event_id(last_event_id)
        follow = Incarnations(journal)
        await run(follow.follow, [rec])

        async def this_one() -> list[OverCloudRecord]:
            return [rec]

        # it ends after this OverCloud's deletion: a reconnect then gets 404, or the next one
        # of that name if it is the caller's
        stream = streams.entries(
            journal=journal, follow=follow, run=run, disconnected=request.is_disconnected,
            records=this_one, after=max(start, follow.floor(name)),
            render=lambda e: streams.frame(e, named=True, with_overcloud=False),
            hello=b"retry: 1000\n\n", interval=0.2, until_ended=True)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/v1/overclouds/{name}/latest")
    async def latest(name: str, me: Caller) -> dict[str, Any]:
        await cached(ops.find, tower, me, name)
        return {"overcloud": name, "series": await run(devlake.latest, name)}

    @app.get("/v1/overclouds/{name}/query")
    async def query(name: str, me: Caller, q: Annotated[str, Query(max_length=8192)]
                    ) -> dict[str, Any]:
        await cached(ops.find, tower, me, name)
        return {"overcloud": name, "series": await run(devlake.query, name, q)}

    @app.get("/v1/overclouds/{name}/top")
    async def top(name: str, me: Caller, window: str = "10m") -> dict[str, Any]:
        """What `overcloud top --overcloud NAME` shows, as JSON (`window`: 90s, 10m, 1h…)."""
        await cached(ops.find, tower, me, name)
        try:
            step = window_step(window)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return dict(await run(devlake.top, name, window, step))

    @app.get("/v1/overclouds/{name}/charts")
    async def charts(name: str, me: Caller, window: str = "15m") -> dict[str, Any]:
        """The page's charts: each layer's series over `window`, and the alerts and
        migrations of that time as markers ("why did my node move?")."""
        rec = await cached(ops.find, tower, me, name)
        try:
            step = window_step(window, 90)
            span = duration_seconds(window)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        out = dict(await run(devlake.charts, name, window, step))
        first = await run(journal.first_of, name, rec.request_id)
        since = time.time() - span
        if not first:  # its request is not journaled (yet): a predecessor's entries are older
            since = max(since, rec.created)
        marks = await run(journal.of_types, name, MARKERS, max(first - 1, 0), since)
        out["markers"] = [{"time": e.time, "type": e.type, "data": e.data} for e in marks]
        return out

    @app.get("/v1/overclouds/{name}/devlake")
    async def devlake_credentials(name: str, me: Caller) -> dict[str, Any]:
        """The OverCloud's read-only InfluxDB account, for the developer's own Grafana."""
        await cached(ops.writable, tower, me, name)
        return dict(await run(devlake.credentials, name))

    @app.get("/v1/overclouds/{name}/webhooks")
    async def webhooks(name: str, me: Caller) -> dict[str, Any]:
        await cached(ops.find, tower, me, name)
        urls = await run(tower.hooks.urls, name)
        rows = await run(tower.hooks.deliveries, name, 50)
        return {"urls": urls, "deliveries": [
            {"url": d.url, "event": d.event, "state": d.state, "attempts": d.attempts,
             "status": d.status, "error": d.error, "created": d.created, "finished": d.finished}
            for d in rows]}

    @app.post("/v1/overclouds/{name}/webhooks/secret")
    async def rotate_secret(name: str, me: Caller) -> dict[str, Any]:
        await cached(ops.writable, tower, me, name)
        secret = await run(tower.hooks.rotate, name)
        if secret is None:
            raise ApiError(409, f"{name} has no webhooks (devtower.notify is empty)")
        return {"webhook_secret": secret, "note": "shown once; the old secret no longer signs"}

    @app.get("/v1/overclouds/{name}/backups")
    async def backups(name: str, me: Caller) -> dict[str, Any]:
        return {"backups": await run(ops.backups, tower, me, name)}

    @app.post("/v1/overclouds/{name}/backups", status_code=202)
    async def backup(name: str, me: Caller, keep: int = 7) -> dict[str, Any]:
        event = await run(ops.backup, tower, me, name, keep)
        return {"id": event.id, "name": name, "state": "backup requested", "keep": keep}

    @app.post("/v1/overclouds/{name}/restore", status_code=202)
    async def restore(name: str, me: Caller, backup: str, source: str = "") -> dict[str, Any]:
        event = await run(ops.restore, tower, me, name, backup[:64], source[:64])
        return {"id": event.id, "name": name, "state": "restore requested",
                "backup": event.backup, "source": event.source or name}

    @app.post("/v1/overclouds/{name}/pause", status_code=202)
    async def pause(name: str, me: Caller) -> dict[str, Any]:
        event = await run(ops.pause, tower, me, name)
        return {"id": event.id, "name": name, "state": "pause requested"}

    @app.post("/v1/overclouds/{name}/resume", status_code=202)
    async def resume(name: str, me: Caller) -> dict[str, Any]:
        event = await run(ops.resume, tower, me, name)
        return {"id": event.id, "name": name, "state": "resume requested"}

    # --- operators ------------------------------------------------------------------------

    def operator_only(me: Identity) -> None:
        if not me.operator:
            raise ApiError(403, "operators only")

    @app.get("/v1/undercloud")
    async def undercloud(me: Caller) -> dict[str, Any]:
        operator_only(me)
        return dict(await run(operator.undercloud))

    @app.get("/v1/alerts")
    async def alerts(me: Caller) -> dict[str, Any]:
        """The alerts firing now, on every host and OverCloud (operators only)."""
        operator_only(me)
        return {"firing": [{"time": e.time, "overcloud": e.overcloud, **e.data}
                           for e in await run(journal.firing)]}

    @app.post("/v1/undercloud/{host}/drain")
    async def drain(host: str, me: Caller, evacuate: bool = True) -> dict[str, Any]:
        operator_only(me)
        return dict(await run(operator.drain, host, evacuate))

    @app.post("/v1/undercloud/{host}/undrain")
    async def undrain(host: str, me: Caller) -> dict[str, Any]:
        operator_only(me)
        return dict(await run(operator.undrain, host))

    @app.post("/v1/overclouds/{name}/migrate", status_code=202)
    async def migrate(name: str, me: Caller, node: str = "", to: str = "", site: str = "",
                      db_method: str = "replicate") -> dict[str, Any]:
        hosts, sites, draining = await run(operator.hosts)
        event = await run(ops.migrate, tower, me, name, node, to, site, hosts, sites, draining,
                          db_method)
        return {"id": event.id, "name": name, "state": "migration requested"}

    web.mount(app, tokens, tower.settings)
    app.add_middleware(BodyLimit, limit=MAX_BODY)  # type: ignore[arg-type]
    return app


MARKERS = ("AlertFiring", "AlertResolved", "MigrationStarted", "MigrationFinished")


def _event_id(header: str | None) -> int:
    if header and header.strip().isdigit() and len(header.strip()) < 19:
        return int(header.strip())
    return 0
