"""The demo page's routes: served from the package without a token, nothing else reachable through them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from parley_gateway.demo import add_demo_routes


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    add_demo_routes(app)
    async with TestClient(TestServer(app)) as running:
        yield running


async def test_the_page_and_its_assets_are_served_without_a_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    page = await client.get("/demo/")
    assert page.status == 200
    assert page.content_type == "text/html"
    html = await page.text()
    assert 'src="demo.js"' in html and 'href="demo.css"' in html
    # Nothing from the internet: every script and stylesheet is relative to the page.
    assert "http://" not in html and "https://" not in html

    script = await client.get("/demo/demo.js")
    assert script.status == 200
    assert script.content_type == "text/javascript"
    assert "window.parleyDemo" in await script.text()
    style = await client.get("/demo/demo.css")
    assert (style.status, style.content_type) == (200, "text/css")


async def test_the_bare_path_redirects_keeping_the_query(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/demo?token=abc&conference=c-1&autojoin=1", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == "/demo/?token=abc&conference=c-1&autojoin=1"


@pytest.mark.parametrize("path", ["/demo/missing.js", "/demo/..%2Fdemo.py", "/demo/%2e%2e/app.py"])
async def test_only_the_known_files_are_served(
    client: TestClient[web.Request, web.Application], path: str
) -> None:
    response = await client.get(path)
    assert response.status == 404
