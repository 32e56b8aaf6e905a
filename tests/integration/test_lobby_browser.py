"""The demo page's lobby in two headless Chromium browsers: a meeting guest opened from its entry link
(`/demo/?access_token=...`) waits to be let in, the host's page lists it, and once the host admits it the
guest's page views the host's camera.

The admission goes through the API with the host's token and endpoint, as the host page's Admit button
sends it (a headless page has nobody to click).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from parley_common.contracts.meeting import MeetingGrant, MeetingRole
from parley_gateway.identity import TokenIssuer

from tests.integration.helpers import ORG, SECRET, Api, Stack, token, unique
from tests.integration.test_browser_e2e import (  # noqa: F401 (fixtures used by name)
    REPORT_MS,
    Browser,
    Collector,
    browsers,
    chromium,
    collector,
    decoding,
    diagnose,
    media_stack,
    wait_until,
)

pytestmark = pytest.mark.browser


def entry_url(stack: Stack, reports: Collector, browser: Browser, grant: MeetingGrant) -> str:
    access = TokenIssuer(secret=SECRET).issue(user_id=browser.user, organization_id=ORG, grant=grant)
    query = urlencode(
        {
            "access_token": access,  # what an entry_url carries: the page joins at once
            "endpoint": browser.endpoint,
            "report": reports.url(browser.name),
            "reportMs": str(REPORT_MS),
        }
    )
    return f"{stack.url}/demo/?{query}"


def phase(reports: Collector, browser: Browser) -> Any:
    report = reports.latest(browser.name)
    return report and report["phase"]


async def test_a_guest_page_waits_the_host_page_lists_it_and_after_admission_the_guest_views_the_host(
    media_stack: Stack,  # noqa: F811
    collector: Collector,  # noqa: F811
    browsers: list[Browser],  # noqa: F811
    chromium: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    conference_id = str(uuid.uuid4())
    async with aiohttp.ClientSession() as session:
        await Api(session, media_stack.url, token("organizer")).create(conferenceId=conference_id)

    def grant(role: MeetingRole, lobby: bool = False) -> MeetingGrant:
        return MeetingGrant(meeting_id="m-1", conference_id=conference_id, role=role, lobby=lobby)

    host = Browser("host", user=str(uuid.uuid4()), endpoint=unique("ep-host"))
    guest = Browser("guest", user=str(uuid.uuid4()), endpoint=unique("ep-guest"))
    browsers.append(host)
    host.launch(chromium, entry_url(media_stack, collector, host, grant("moderator")), tmp_path)
    assert await wait_until(lambda: phase(collector, host) == "joined", 15), diagnose(
        media_stack, collector, browsers
    )
    browsers.append(guest)
    guest.launch(chromium, entry_url(media_stack, collector, guest, grant("publisher", lobby=True)), tmp_path)

    # The guest's page says it waits; the host's page lists it (with Admit / Reject).
    assert await wait_until(lambda: phase(collector, guest) == "waiting", 15), diagnose(
        media_stack, collector, browsers
    )
    assert await wait_until(
        lambda: guest.endpoint in (collector.latest(host.name) or {}).get("lobby", []), 10
    ), diagnose(media_stack, collector, browsers)
    waiting_report = collector.latest(guest.name)
    assert waiting_report is not None and waiting_report["remotes"] == {}  # no media while waiting

    async with aiohttp.ClientSession() as session:
        as_host = Api(
            session,
            media_stack.url,
            TokenIssuer(secret=SECRET).issue(
                user_id=host.user, organization_id=ORG, grant=grant("moderator")
            ),
        )
        admitted = await as_host.post(
            "admitLobbyEndpoint",
            {
                "conferenceId": conference_id,
                "userEndpointId": host.endpoint,
                "lobbyEndpointId": guest.endpoint,
            },
        )
        assert admitted.status == 204, admitted
    since = time.monotonic()
    assert await wait_until(lambda: decoding(collector, guest, host, since), 20), diagnose(
        media_stack, collector, browsers
    )
    assert await wait_until(lambda: (collector.latest(host.name) or {}).get("lobby") == [], 5), (
        collector.latest(host.name)
    )
