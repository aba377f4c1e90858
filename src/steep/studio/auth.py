"""Who may use the studio: the bind check, the Host check, the access token and CSRF.

Every request passes ``guard`` (an HTTP middleware): a Host header outside
``allowed_hosts`` is refused (DNS rebinding); with a token, a request must carry it (query
once, then a cookie; or a header); a change (any method but GET/HEAD/OPTIONS) must carry
the ``X-Steep-Request: 1`` header, which a cross-site form or fetch cannot send.
"""

from __future__ import annotations

import hmac
import html

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from steep.studio.state import Settings

COOKIE = "steep_token"
TOKEN_HEADER = "x-steep-token"
CSRF_HEADER = "x-steep-request"  # a custom header: a cross-site form or fetch cannot send it
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_local(host: str) -> bool:
    return host in LOCAL_HOSTS


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token (raises ValueError)."""
    if not is_local(host) and not token:
        raise ValueError(
            f"--host {host} makes the studio reachable from other machines: give an access "
            "token with --token TOKEN or STEEP_STUDIO_TOKEN (every request must carry it)"
        )
    if token is not None and len(token) < 16:
        raise ValueError("the access token must be at least 16 characters")


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def error_response(status: int, message: str, request: Request) -> Response:
    """An error as the caller reads it: JSON under /api/, a one-line page elsewhere."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return HTMLResponse(
        f"<!doctype html><title>steep studio</title><p>{_html_escape(message)}</p>", status
    )


def _html_escape(text: str) -> str:

    return html.escape(text)


def add_guard(app: FastAPI, settings: Settings) -> None:
    """Install the Host, token and CSRF checks in front of every route of ``app``."""

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN202
        if settings.allowed_hosts is not None:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
            if host not in settings.allowed_hosts:
                return error_response(400, f"unexpected Host header {host!r}", request)
        if settings.token:
            given = request.query_params.get("token")
            if given is not None and request.method == "GET":
                if not _same(given, settings.token):
                    return error_response(401, "wrong access token", request)
                url = request.url.remove_query_params("token")
                resp = RedirectResponse(str(url.path) + (f"?{url.query}" if url.query else ""))
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
        if request.method not in ("GET", "HEAD", "OPTIONS") and (
            request.headers.get(CSRF_HEADER) != "1"
        ):
            return error_response(
                403,
                "changes need the X-Steep-Request: 1 header (cross-site requests refused)",
                request,
            )
        return await call_next(request)
