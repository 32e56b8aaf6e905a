"""`/asyncapi.json` and `/asyncapi`: the event catalogue served by the real gateway app, readable offline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from parley_common.contracts.catalogue import EVENT_KINDS
from parley_gateway.app import build_app
from parley_gateway.identity import TokenVerifier
from parley_gateway.settings import Settings


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    # No NATS and no API route needed: the documents are built from the code alone.
    app = build_app(
        cast(Any, []), TokenVerifier(secret="test-secret-that-is-long-enough-for-hs256!"), Settings.from_env()
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_the_document_and_its_page_are_served_without_a_token(
    client: TestClient[web.Request, web.Application],
) -> None:
    answer = await client.get("/asyncapi.json")
    assert answer.status == 200 and answer.content_type == "application/json"
    document = await answer.json()
    assert document["asyncapi"] == "3.0.0"
    assert {kind.type for kind in EVENT_KINDS} <= set(document["components"]["messages"])

    page = await client.get("/asyncapi")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    # Rendered on the server: no script, nothing fetched from the Internet.
    assert "<script" not in html and "src=" not in html
    for kind in EVENT_KINDS:
        assert f"<code>{kind.subject}</code>" in html, kind.type
    assert 'href="#schema-ConferenceJoinedEvent"' in html and 'id="schema-ConferenceJoinedEvent"' in html
    docs = await (await client.get("/docs")).text()
    assert 'href="/asyncapi"' in docs
