"""Who may use the studio: the bind check, the Host check, the access token and CSRF.

One plain ASGI layer, ``Shield``, stands in front of every route. It puts the browser-side
defences on every answer (no framing, a script-src 'self' CSP, nosniff, no referrer); then
``guard`` refuses a Host header that is not exactly one host (and, bound to 127.0.0.1, one
of ``allowed_hosts``: DNS rebinding); with a token, a request must carry it (query once,
then a cookie; or a header); a change (any method but GET/HEAD/OPTIONS) must carry the
``X-Steep-Request: 1`` header, which a cross-site form or fetch cannot send, and an
``Origin``, when the browser sends one, must be the studio's own. Last, a request body
past ``max_body_bytes`` is refused (413) before a route parses it; upload PUTs stream under
the upload limits instead (``uploads``).
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import logging
import re
from urllib.parse import quote, unquote_plus, urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from steep.studio.state import Settings

COOKIE = "steep_token"
TOKEN_HEADER = "x-steep-token"
CSRF_HEADER = "x-steep-request"  # a custom header: a cross-site form or fetch cannot send it
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
TOKEN_RULE = "at least 16 characters, no whitespace, 8 distinct characters"
# uPlot and studio.js are files under /static; the one inline style is a bar's width
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}
_UPLOAD_PUT = re.compile(r"^/api/uploads/[^/]+/[^/]+$")  # bounded by the upload limit
_HOST = re.compile(
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9_.-]+))(?::(?P<port>\d{1,5}))?"
)
_QUERY_PAIR = re.compile(r"(?<=[?&])([^=&\s\"]+)=([^&\s\"]*)")
DEFAULT_PORTS = {"http": 80, "https": 443}


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS


def check_token(token: str) -> None:
    """Refuse a guessable token (raises ValueError): 16 spaces or 'aaaa...' pass a length rule."""
    if len(token) < 16 or any(c.isspace() for c in token) or len(set(token)) < 8:
        raise ValueError(
            f"the access token must have {TOKEN_RULE}: make one with `openssl rand -hex 16`"
        )


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token (raises ValueError)."""
    if not is_local(host) and not token:
        raise ValueError(
            f"--host {host} makes the studio reachable from other machines: give an access "
            "token with --token-file PATH or STEEP_STUDIO_TOKEN (every request must carry it)"
        )
    if token is not None:
        check_token(token)


def parse_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` of a Host header, lowercased: one name, IPv4, or [IPv6]; else ValueError."""
    m = _HOST.fullmatch(value)
    port = int(m["port"]) if m and m["port"] else None
    if m is None or (port is not None and port > 65535):
        raise ValueError(value)
    if m["v6"] is not None:
        try:
            return ipaddress.IPv6Address(m["v6"]).compressed, port
        except ValueError:
            raise ValueError(value) from None
    return m["name"].lower(), port


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def same_origin(origin: str, scheme: str, host: tuple[str, int | None]) -> bool:
    """Whether an Origin header names this studio (scheme, host and port, default filled)."""
    parts = urlsplit(origin)
    if parts.scheme not in DEFAULT_PORTS or parts.path or parts.query or parts.fragment:
        return False  # "null", a path, another scheme: not a page of ours
    try:
        name, port = parse_host(parts.netloc)
    except ValueError:
        return False
    default = DEFAULT_PORTS[parts.scheme]
    return (parts.scheme, name, port or default) == (
        scheme,
        host[0],
        host[1] or DEFAULT_PORTS.get(scheme),
    )


def same_origin_path(path: str) -> str:
    """``path`` as a Location that stays on this studio: never ``//host`` or ``/\\host``.

    Backslashes, tabs and newlines are percent-encoded (browsers read ``/\\x`` as ``//x``
    and drop tabs), and what still starts with two slashes becomes ``/``.
    """
    quoted = quote(path, safe="/:@!$&'()*+,;=-._~")
    return quoted if quoted.startswith("/") and not quoted.startswith("//") else "/"


def redact_token(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter replaced."""

    def one(m: re.Match[str]) -> str:
        return f"{m[1]}=[redacted]" if unquote_plus(m[1]).lower() == "token" else m[0]

    return _QUERY_PAIR.sub(one, text) if "=" in text else text


class TokenRedactor(logging.Filter):
    """Keeps ``?token=...`` out of uvicorn's access log (and anything else it filters)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_token(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_token(a) if isinstance(a, str) else a for a in record.args)
        return True


def error_response(status: int, message: str, request: Request) -> Response:
    """An error as the caller reads it: JSON under /api/, a one-line page elsewhere."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return HTMLResponse(
        f"<!doctype html><title>steep studio</title><p>{html.escape(message)}</p>", status
    )


class Shield:
    """ASGI, in front of every route: the security headers, ``guard``, then the body cap.

    Plain ASGI rather than an HTTP middleware so that the cap's 413, raised while a route
    reads its body, reaches FastAPI as itself (an HTTP middleware wraps it in a group).
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.settings, self.limit = app, settings, settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message["headers"] = [
                    *message.get("headers", []),
                    *(h for h in extra if h[0] not in have),
                ]
            await send(message)

        request = Request(scope)
        refused = guard(request, self.settings)
        if refused is not None:
            return await refused(scope, receive, send_with_headers)
        if scope["method"] == "PUT" and _UPLOAD_PUT.match(scope["path"]):
            return await self.app(scope, receive, send_with_headers)
        too_big = (
            f"request body over the studio's limit of {self.limit:,} bytes (uploads have "
            "their own: PUT /api/uploads/ID/FILE)"
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            return await error_response(413, too_big, request)(scope, receive, send_with_headers)
        seen = 0

        async def receive_capped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # raised inside the route: FastAPI answers it
                raise HTTPException(413, too_big)
            return message

        await self.app(scope, receive_capped, send_with_headers)


def guard(request: Request, settings: Settings) -> Response | None:
    """The answer refusing ``request``, or None to let it through (see the module doc)."""
    try:
        host = parse_host(request.headers.get("host", ""))
    except ValueError:
        shown = request.headers.get("host", "")
        return error_response(400, f"unexpected Host header {shown!r}: give one host", request)
    if settings.allowed_hosts is not None and host[0] not in settings.allowed_hosts:
        return error_response(400, f"unexpected Host header {host[0]!r}", request)
    if settings.token:
        given = request.query_params.get("token")
        if given is not None and request.method == "GET":
            if not _same(given, settings.token):
                return error_response(401, "wrong access token", request)
            url = request.url.remove_query_params("token")
            path = same_origin_path(url.path)
            resp = RedirectResponse(path + (f"?{url.query}" if url.query else ""))
            resp.set_cookie(COOKIE, settings.token, httponly=True, samesite="strict")
            return resp
        auth = request.headers.get("authorization", "")
        candidates = (
            request.headers.get(TOKEN_HEADER),
            auth[7:] if auth.lower().startswith("bearer ") else None,
            request.cookies.get(COOKIE),
        )
        if not any(_same(c, settings.token) for c in candidates):
            return error_response(
                401,
                "this studio needs its access token: open it once as /?token=TOKEN, or "
                "send the header X-Steep-Token",
                request,
            )
    if request.method in SAFE_METHODS:
        return None
    if request.headers.get(CSRF_HEADER) != "1":
        return error_response(
            403,
            "changes need the X-Steep-Request: 1 header (cross-site requests refused)",
            request,
        )
    origin = request.headers.get("origin")
    if origin is not None and not same_origin(origin, request.url.scheme, host):
        return error_response(
            403, f"changes from origin {origin!r} refused: only this studio's pages", request
        )
    return None


def add_guard(app: FastAPI, settings: Settings) -> None:
    """Install ``Shield`` (headers, Host, token, CSRF and Origin checks, body cap) on ``app``."""
    app.add_middleware(Shield, settings=settings)
