"""SourceFuse archives of a real recording, over the SourceFuse routes: a meeting created with
`enableArchiving` records its conference from the first publish (a WebRTC publisher through a media node);
`GET /archives` lists it as `{count, items:[{id, name, sessionId, metaData}]}`, `GET /archives/{id}` gives
its absolute download URL (the bytes download), another organization gets 404, `DELETE` removes it (then
404 `Archive Not Found`, and the bytes are gone)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from tests.integration.helpers import ORG, Api, Stack, token
from tests.integration.media_api import publish
from tests.integration.peers import GREEN, PublisherPeer
from tests.integration.test_media import node_ready
from tests.integration.test_sourcefuse_api import PERMISSIONS, assert_refused, meeting_token

OTHER_ORG = "globex"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("sf-archives"),
        media=1,
        env={"PARLEY_OPTIONAL_SERVICES": "media", "PARLEY_MEDIA_CONNECT_TIMEOUT_SECONDS": "5"},
    )
    running.start()
    try:
        asyncio.run(node_ready(running))
        yield running
    finally:
        running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_a_recorded_meeting_is_an_archive_listed_downloaded_and_deleted(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    sf = Api(session, stack.url, token("admin", ORG, permissions=PERMISSIONS))
    other = Api(session, stack.url, token("admin", OTHER_ORG, permissions=PERMISSIONS))
    alice = Api(session, stack.url, token("alice"))
    created = await sf.request("POST", "/session", json={"enableArchiving": True})
    assert created.status == 200, created
    conference_id = (await meeting_token(sf, created.body))["sessionId"]

    await alice.join(conference_id, "pub")
    publisher = PublisherPeer(GREEN)
    try:
        await publish(alice, conference_id, "pub", publisher)
        await publisher.connected()
        await asyncio.sleep(2.5)
        base = {"conferenceId": conference_id, "userEndpointId": "pub"}
        off = await alice.post(
            "updateMetadata", {**base, "key": "RECORDER", "operation": "SET", "value": '{"on":false}'}
        )
        assert off.status == 204, off
    finally:
        await publisher.close()

    deadline = time.monotonic() + 30
    mine: list[dict[str, Any]] = []
    while not mine:
        assert time.monotonic() < deadline, "no archive of the meeting"
        await asyncio.sleep(0.3)
        listed = await sf.request("GET", "/archives")
        assert listed.status == 200, listed
        assert listed.body["count"] == len(listed.body["items"])
        mine = [item for item in listed.body["items"] if item["sessionId"] == conference_id]
    [item] = mine
    assert set(item) >= {"id", "sessionId", "metaData"}
    one = await sf.request("GET", f"/archives/{item['id']}")
    assert one.status == 200, one
    meta = one.body["metaData"]
    assert meta["meetingLinkId"] == created.body
    assert meta["mimeType"].startswith("video/webm")
    assert meta["url"].startswith(stack.url + "/rtc-api/conferences/")
    download = await alice.get(meta["url"].removeprefix(stack.url))
    assert download.status == 200, download
    assert len(download.body) == meta["bytes"] > 0

    # Another organization: as if it did not exist.
    assert_refused(await other.request("GET", f"/archives/{item['id']}"), 404, "Archive Not Found")
    assert_refused(await other.request("DELETE", f"/archives/{item['id']}"), 404, "Archive Not Found")
    assert item["id"] not in [a["id"] for a in (await other.request("GET", "/archives")).body["items"]]

    deleted = await sf.request("DELETE", f"/archives/{item['id']}")
    assert deleted.status == 200, deleted
    assert deleted.body is None
    assert_refused(await sf.request("GET", f"/archives/{item['id']}"), 404, "Archive Not Found")
    assert_refused(await sf.request("DELETE", f"/archives/{item['id']}"), 404, "Archive Not Found")
    assert (await alice.get(meta["url"].removeprefix(stack.url))).status == 404
