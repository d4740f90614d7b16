"""The DevTower's page: one HTML shell, our scripts and vendored libraries, and sign-in.

Served by the DevTower process itself, beside `/v1` (no second server). The page is a client
of the same API and roles: after sign-in the browser holds a page session (an HttpOnly,
SameSite=Strict cookie whose value is the session's own secret, never the API token), and
`devtower.api` accepts that cookie wherever it accepts a bearer token. Changes made with the
cookie must carry the session's CSRF token in `X-CSRF-Token` (the page's scripts read it
from `/v1/whoami`; another site's page can neither read it nor send it) and, when the
browser says where it comes from, an `Origin` of this very server.

Every response of the page carries a strict Content-Security-Policy: scripts and styles only
from here, no inline script, nothing framed. The scripts build the page with text nodes
only, so data from an OverCloud (names, tags, errors) is never markup.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devtower.tokens import Identity, TokenStore
from overcloud.settings import Settings

STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "oc_session"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
MAX_FORM = 4096
_GRAFANA = re.compile(r"https?://[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._~/\-]*)?")

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes a form post's Origin "null"
    "X-Frame-Options": "DENY",
}


def grafana_url(configured: str) -> str:
    """The configured Grafana address if it is a plain http(s) URL, else nothing (it ends up
    in a link on the page)."""
    url = configured.strip().rstrip("/")
    return url if _GRAFANA.fullmatch(url) else ""


def _own_origin(request: Request) -> str:
    host = request.headers.get("host", "")
    return f"{request.url.scheme}://{host}"


def _cross_site(request: Request) -> bool:
    """True when the browser says the request comes from another site's page."""
    origin = request.headers.get("origin")
    if origin is not None and origin != _own_origin(request):
        return True
    return request.headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}


def session_identity(request: Request, tokens: TokenStore) -> Identity:
    """The identity behind the page's session cookie; a change needs the CSRF token too."""
    session = tokens.session(request.cookies.get(SESSION_COOKIE, ""))
    if session is None:
        raise HTTPException(401, "signed out or the session ended: sign in again")
    if request.method not in SAFE_METHODS:
        if _cross_site(request):
            raise HTTPException(403, "a change from another site's page is refused")
        sent = request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise HTTPException(403, "missing or wrong CSRF token (reload the page)")
    request.scope["oc.session"] = session
    return session.identity


async def _form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    raw = await request.body()
    if len(raw) > MAX_FORM:
        raise HTTPException(413, f"form over {MAX_FORM} bytes")
    try:
        fields = parse_qs(raw.decode("ascii"), max_num_fields=4)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form is not what the sign-in page sends") from None
    return {k: v[0] for k, v in fields.items() if v}


def _back(error: str = "") -> RedirectResponse:
    return RedirectResponse("/" + (f"?error={error}" if error else ""), status_code=303)


class PageHeaders:
    """Adds the page's security headers to every answer that is not the API's JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith("/v1/"):
            await self.app(scope, receive, send)
            return

        async def send_with(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                headers = list(msg.get("headers") or [])
                headers += [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
                msg = {**msg, "headers": headers}
            await send(msg)

        await self.app(scope, receive, send_with)


_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".json": "application/json",
          ".md": "text/plain; charset=utf-8", "": "text/plain; charset=utf-8"}


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    """Every file under `static/` by its path: body, media type, ETag (read once, at start)."""
    out = {}
    for f in sorted(STATIC.rglob("*")):
        if f.is_file():
            body = f.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            media = _TYPES.get(f.suffix, "application/octet-stream")
            out[f.relative_to(STATIC).as_posix()] = (body, media, etag)
    return out


def mount(app: FastAPI, tokens: TokenStore, settings: Settings) -> None:
    """The page's routes on the API's app."""
    secure = settings.devtower.url.startswith("https://")

    shell = (STATIC / "index.html").read_bytes()

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(shell, media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store"})

    @app.post("/web/session", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        if _cross_site(request):
            raise HTTPException(403, "sign in from this DevTower's own page")
        form = await _form(request)
        session = tokens.start_session(form.get("token", "").strip())
        if session is None:
            return _back("token")
        out = _back()
        max_age = max(1, int(session.expires - time.time()))
        out.set_cookie(SESSION_COOKIE, session.cookie, max_age=max_age, path="/", httponly=True,
                       samesite="strict", secure=secure)
        return out

    @app.post("/web/session/end", include_in_schema=False)
    async def sign_out(request: Request) -> Response:
        form = await _form(request)
        cookie = request.cookies.get(SESSION_COOKIE, "")
        session = tokens.session(cookie)
        if session is not None:
            if _cross_site(request) or not hmac.compare_digest(
                    form.get("csrf", "").encode(), session.csrf.encode()):
                raise HTTPException(403, "missing or wrong CSRF token (reload the page)")
            tokens.end_session(cookie)
        out = _back()
        out.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict",
                          secure=secure)
        return out

    files = _static_files()

    @app.get("/static/{path:path}", include_in_schema=False)
    async def static(path: str, request: Request) -> Response:
        # from memory, on the event loop: a page load fetches four of these side by side,
        # and a file read in a worker thread each cost ~20 ms on a loaded 2-core machine
        found = files.get(path)
        if found is None:
            raise HTTPException(404, "no such file")
        body, media_type, etag = found
        headers = {"ETag": etag, "Cache-Control": "no-cache"}  # revalidated: 304 when unchanged
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)
    app.add_middleware(PageHeaders)  # type: ignore[arg-type]
