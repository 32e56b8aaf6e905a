"""`/demo/`: a one-page browser client of the conference API (join, publish camera+mic, view the others).

Static files shipped inside the package (`parley_gateway/demo/`), served without authentication: the page
itself asks for a token and sends it as a bearer header, like any other client. Nothing is fetched from
elsewhere, so the page works on a machine without internet access.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

# Only these names are served: no directory listing, no path from the URL ever reaches the file system.
_FILES = {
    "index.html": "text/html",
    "demo.js": "text/javascript",
    "demo.css": "text/css",
}
# The page talks only to its own origin, except `?report=` (a test's collector) and the push WebSocket.
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' http: https: ws: wss:; media-src 'self' blob:; "
        "img-src 'self' data:; frame-ancestors 'none'"
    ),
}


def _load() -> dict[str, bytes]:
    folder = resources.files("parley_gateway") / "demo"
    return {name: (folder / name).read_bytes() for name in _FILES}


def add_demo_routes(app: web.Application) -> None:
    files = _load()

    async def redirect(request: web.Request) -> web.StreamResponse:
        # Keep the query: `?token=...&conference=...` must survive the trailing-slash redirect.
        query = request.rel_url.raw_query_string
        raise web.HTTPFound("/demo/" + (f"?{query}" if query else ""))

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        content_type = _FILES.get(name)
        if content_type is None:
            raise web.HTTPNotFound()
        return web.Response(body=files[name], content_type=content_type, charset="utf-8", headers=_HEADERS)

    app.router.add_get("/demo", redirect)
    app.router.add_get("/demo/", serve)
    app.router.add_get("/demo/{name}", serve)
