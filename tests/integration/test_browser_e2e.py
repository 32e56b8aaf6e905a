"""Two headless Chromium browsers on the demo page (`/demo/`) see each other's camera through a media node.

Each browser joins the same conference with its own token and endpoint, publishes its fake camera and
microphone, and views the other's stream. The page POSTs its WebRTC stats (`?report=`) to a small collector
in this test; the test waits until each side decodes the other's video. Then it drives the server side
through the API (unpublish, leave) and checks that the pages follow the events.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from parley_common.processes import free_port

from tests.integration.helpers import Api, Stack, token, unique

pytestmark = pytest.mark.browser

FIRST_FRAMES_WITHIN = 10.0  # seconds from launching the browsers to both decoding the other's video
REPORT_MS = 250
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # Real host addresses in ICE candidates instead of `.local` names the media node cannot resolve.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--mute-audio",
)


def chromium_binary() -> str | None:
    explicit = os.environ.get("PARLEY_CHROMIUM")
    if explicit:
        return shutil.which(explicit)
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


# ---------------------------------------------------------------- the stats collector


class Collector:
    """Keeps every report each page POSTs to `/report/<name>` (the page's stats JSON)."""

    def __init__(self) -> None:
        self.reports: dict[str, list[dict[str, Any]]] = {}
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/report/{name}"

    def latest(self, name: str) -> dict[str, Any] | None:
        history = self.reports.get(name)
        return history[-1] if history else None

    async def _report(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
        except ValueError:
            return web.Response(status=400)
        body["receivedAt"] = time.monotonic()
        self.reports.setdefault(request.match_info["name"], []).append(body)
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/report/{name}", self._report)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# ---------------------------------------------------------------- browsers


@dataclass
class Browser:
    name: str
    user: str
    endpoint: str
    transport: str = "ws"  # how the page follows events: push channel ("ws") or long poll ("poll")
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    launched_at: float = 0.0
    profile: Path | None = field(default=None, repr=False)

    def launch(self, binary: str, url: str, root: Path) -> None:
        self.profile = root / f"profile-{self.name}"
        self.profile.mkdir(parents=True, exist_ok=True)
        self.log_path = root / f"chromium-{self.name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", url],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                # Its own process group: the renderer and GPU children go away with it.
                start_new_session=True,
            )
        self.launched_at = time.monotonic()

    def close(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
        except ProcessLookupError:
            pass

    def log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        # Without a D-Bus daemon Chromium logs a dbus complaint every few milliseconds: not the story.
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(line for line in lines if "dbus" not in line)[-3000:]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        wanted = os.environ.get("PARLEY_CHROMIUM", "chromium, chromium-browser or google-chrome")
        pytest.skip(
            f"chromium not installed: no {wanted} on PATH (apt-get install chromium; CI's .ci/run does)"
        )
    return binary


@pytest.fixture(scope="module")
def media_stack(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("browser-stack")
    running = Stack(root, media=1)
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    running = Collector()
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def browsers(media_stack: Stack) -> Iterator[list[Browser]]:
    launched: list[Browser] = []
    yield launched
    for browser in launched:
        browser.close()


# ---------------------------------------------------------------- helpers


def demo_url(stack: Stack, collector: Collector, browser: Browser, conference_id: str) -> str:
    query = urlencode(
        {
            "token": token(browser.user),
            "conference": conference_id,
            "endpoint": browser.endpoint,
            "autojoin": "1",
            "transport": browser.transport,
            "report": collector.url(browser.name),
            "reportMs": str(REPORT_MS),
        }
    )
    return f"{stack.url}/demo/?{query}"


def view_of(report: dict[str, Any] | None, endpoint: str) -> dict[str, Any] | None:
    """What a page reports about the stream of `endpoint` it views, if any."""
    if report is None:
        return None
    for remote in report.get("remotes", {}).values():
        if remote.get("endpointId") == endpoint:
            return dict(remote)
    return None


def decoding(collector: Collector, viewer: Browser, publisher: Browser, since: float) -> bool:
    """Two successive reports (newer than `since`) show the viewer's framesDecoded of the publisher rising."""
    history = [r for r in collector.reports.get(viewer.name, []) if r["receivedAt"] >= since]
    frames = [v["framesDecoded"] for r in history[-2:] if (v := view_of(r, publisher.endpoint)) is not None]
    return len(frames) == 2 and frames[1] > frames[0] > 0


def decoded_fps(collector: Collector, viewer: Browser, publisher: Browser, *, over_ms: float) -> float:
    """Frames per second the viewer decoded of the publisher's video over its last `over_ms` of reports."""
    history: list[tuple[float, int]] = [
        (r["at"], v["framesDecoded"])
        for r in collector.reports.get(viewer.name, [])
        if (v := view_of(r, publisher.endpoint)) is not None
    ]
    assert history, f"{viewer.name} never reported {publisher.name}'s stream"
    last_at, last_frames = history[-1]
    first_at, first_frames = next((at, n) for at, n in history if at >= last_at - over_ms)
    if last_at == first_at:
        return 0.0
    return (last_frames - first_frames) / (last_at - first_at) * 1000


def milestones(collector: Collector, viewer: Browser, publisher: Browser) -> str:
    """Where the time went on one page, in ms since it started loading (from the page's own timings)."""
    last = collector.latest(viewer.name) or {}
    first = collector.reports[viewer.name][0]
    page = last.get("timings", {})
    remote = (view_of(last, publisher.endpoint) or {}).get("timings", {})
    steps = {
        "first report (s after launch)": round(first["receivedAt"] - viewer.launched_at, 2),
        "join clicked": page.get("join"),
        "joined": page.get("joined"),
        "own stream answered": page.get("published"),
        f"view of {publisher.name} asked": remote.get("asked"),
        "view answered": remote.get("answered"),
        "first frame seen": remote.get("firstFrame"),
    }
    return ", ".join(f"{name} {value}" for name, value in steps.items())


def diagnose(stack: Stack, collector: Collector, browsers: list[Browser]) -> str:
    parts = []
    for browser in browsers:
        parts.append(
            f"--- {browser.name} last report ---\n{json.dumps(collector.latest(browser.name), indent=1)}"
        )
        parts.append(f"--- {browser.name} chromium log ---\n{browser.log_tail()}")
    for name in [*stack.media_names, "conference", *stack.gateway_names]:
        parts.append(f"--- {name} log ---\n{stack.logs(name)[-3000:]}")
    return "\n".join(parts)


async def wait_until(predicate: Any, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return bool(predicate())


# ---------------------------------------------------------------- the test


async def test_two_browsers_see_each_other_through_the_media_node(
    media_stack: Stack, collector: Collector, browsers: list[Browser], chromium: str, tmp_path: Path
) -> None:
    conference_id = unique("demo")
    alice = Browser("alice", user="alice", endpoint=unique("ep-alice"))
    # One page on the push channel, the other on the long poll: both ways of following events are covered.
    bob = Browser("bob", user="bob", endpoint=unique("ep-bob"), transport="poll")
    for browser in (alice, bob):
        browsers.append(browser)
        browser.launch(chromium, demo_url(media_stack, collector, browser, conference_id), tmp_path)
    started = min(alice.launched_at, bob.launched_at)

    both = await wait_until(
        lambda: decoding(collector, alice, bob, started) and decoding(collector, bob, alice, started),
        timeout=FIRST_FRAMES_WITHIN,
    )
    assert both, "each browser should decode the other's video\n" + diagnose(media_stack, collector, browsers)
    took = time.monotonic() - started

    # Frames keep coming: about 20 fps from the fake camera, forwarded without transcoding.
    await asyncio.sleep(2.0)
    rates = {}
    for viewer, publisher in ((alice, bob), (bob, alice)):
        rates[viewer.name] = decoded_fps(collector, viewer, publisher, over_ms=1500)
        last = collector.reports[viewer.name][-1]
        seen = view_of(last, publisher.endpoint)
        assert seen is not None and (seen["frameWidth"], seen["frameHeight"]) == (640, 480), seen
        assert seen["audioPacketsReceived"] > 0, seen
        assert last["errors"] == [], last["errors"]
    print(f"\nfirst video both ways {took:.1f} s after launching the browsers; decoded fps {rates}")
    for viewer, publisher in ((alice, bob), (bob, alice)):
        print(f"{viewer.name}: {milestones(collector, viewer, publisher)}")
    assert min(rates.values()) > 5, rates

    # The server side moves; the pages follow the events.
    async with aiohttp.ClientSession() as session:
        api_alice = Api(session, media_stack.url, token("alice"))
        report = collector.latest("alice")
        assert report is not None and report["published"] is not None
        stream_id = report["published"]["streamId"]
        response = await api_alice.post(
            "unpublishStream",
            {"conferenceId": conference_id, "userEndpointId": alice.endpoint, "streamId": {"id": stream_id}},
        )
        assert response.status == 204, response
        marker = time.monotonic()
        gone = await wait_until(
            lambda: (
                (r := collector.latest("bob")) is not None
                and r["receivedAt"] > marker
                and view_of(r, alice.endpoint) is None
            ),
            timeout=5.0,
        )
        assert gone, "bob's page should drop alice's stream after ConferenceStreamUnpublishedEvent\n" + (
            diagnose(media_stack, collector, browsers)
        )

        api_bob = Api(session, media_stack.url, token("bob"))
        response = await api_bob.post(
            "leave", {"conferenceId": conference_id, "userEndpointId": bob.endpoint}
        )
        assert response.status == 204, response
        marker = time.monotonic()
        left = await wait_until(
            lambda: (
                (r := collector.latest("bob")) is not None
                and r["receivedAt"] > marker
                and r["phase"] == "left"
            ),
            timeout=5.0,
        )
        assert left, "bob's page should stop on its own ConferenceLeftEvent\n" + diagnose(
            media_stack, collector, browsers
        )
