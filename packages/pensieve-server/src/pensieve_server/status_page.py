"""The status page a browser gets at `/`: one static HTML file whose script polls
`GET /v1/status` with the key the user gives it (`/health` until then). The page holds no data,
so it is served without the key; API clients, which do not ask for HTML, get `/`'s old answer."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Scope

# The page talks only to its own origin, runs only its own inline script, and is never framed.
_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


def wants_page(scope: Scope) -> bool:
    """A browser's GET of `/`: its Accept names text/html (SDKs and curl send JSON or */*)."""
    accept = Headers(scope=scope).get("accept", "")
    return scope["method"] == "GET" and scope["path"] == "/" and "text/html" in accept.lower()


@cache
def _html() -> bytes:
    return files(__package__).joinpath("static", "status.html").read_bytes()


def status_page() -> Response:
    return Response(_html(), media_type="text/html", headers=_HEADERS)
