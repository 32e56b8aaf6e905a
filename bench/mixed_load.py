"""A steady mixed load against a running Parley stack over HTTP, recording what each acknowledged command
must have left behind (issue 12).

`MixedLoad(base_url, ...)` opens conferences (each with two anchor endpoints that never leave), chat rooms
and SourceFuse meetings, then issues `rate` commands per second drawn from `mix`: joins, leaves,
conference metadata, sendEvent (AT_LEAST_ONCE), snapshot requests, chat messages, meeting create/update.
Each command answered 2xx becomes an `Ack` naming the event it must have produced (stream, type, the
fields that identify it) and the state to read back. A 503 or a connection error is "refused" (a clean
outage); any other 5xx, or an answer slower than `SLOW_SECONDS`, is a failure. The load never stops on
either: it keeps going through outages, which is what the chaos and soak benches need.

`verify(load, nats_url)` reads the state back over HTTP and the JetStream streams directly and counts each
acknowledged command lost (not found) or duplicated (found more than once), and checks every conference's
`conferenceVersion`s gapless. Used by bench/chaos.py, bench/soak.py and tests/integration/test_chaos.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import jwt
import nats
from nats.js.api import DeliverPolicy
from parley_common.config import nats_servers
from parley_common.contracts.catalogue import FAMILIES
from parley_common.messaging import subjects
from parley_common.messaging.streams import PUSH_STREAM, USER_PUSH_STREAM

SECRET = "mixed-load-secret-of-at-least-32-bytes"
ORG = "acme"
SLOW_SECONDS = 5.0
# How often each conference's anchor endpoints poll it (the service's keep-alive window is 30 s).
KEEPALIVE_SECONDS = 10.0
SOURCEFUSE_PERMISSIONS = [
    "CreateMeetingSession",
    "EditMeeting",
    "GenerateMeetingToken",
    "GetMeetingAttendees",
]

# Which process each operation goes through beyond the gateway and nats-server (for unavailability).
SERVICES_OF: Mapping[str, tuple[str, ...]] = {
    "join": ("conference",),
    "leave": ("conference",),
    "metadata": ("conference",),
    "sendEvent": ("conference",),
    "snapshot": ("snapshot", "conference"),
    "chat": ("chat",),
    "meeting": ("conference",),
    "read": ("conference",),
    "keepAlive": ("conference",),
    "readChat": ("chat",),
}
DEFAULT_MIX: Mapping[str, float] = {
    "join": 3,
    "leave": 2,
    "metadata": 3,
    "sendEvent": 2,
    "snapshot": 1,
    "chat": 3,
    "meeting": 1,
    "read": 2,
}


def token(user: str, org: str = ORG, secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": user, "org": org, "name": user, "scope": "any", "iat": now, "exp": now + 86400}
    return jwt.encode({**payload, **claims}, secret, algorithm="HS256")


@dataclass(frozen=True)
class Ack:
    """A command answered 2xx and what must be found afterwards: exactly one event in `stream` of
    `event_type` whose fields include `match`, and (`state`) something readable over HTTP."""

    op: str
    stream: str | None
    event_type: str | None
    match: Mapping[str, str]
    state: tuple[
        str, ...
    ]  # ("conference", id) | ("message", room, id) | ("snapshot", id) | ("meeting", link)
    started: float


@dataclass
class Conference:
    id: str
    anchors: tuple[str, str]  # agent and customer endpoints: they never leave (sendEvent, snapshots)
    joined: list[str] = field(default_factory=list)  # endpoints whose join was acknowledged


@dataclass
class Report:
    acknowledged: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    refused: int = 0
    failures: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)


def user_of(endpoint: str) -> str:
    return f"user-{endpoint}"


class MixedLoad:
    def __init__(
        self,
        base_url: str,
        *,
        rate: float = 20.0,
        mix: Mapping[str, float] = DEFAULT_MIX,
        conferences: int = 5,
        rooms: int = 3,
        secret: str = SECRET,
        seed: int = 0,
    ) -> None:
        self.base_url = base_url
        self.rate = rate
        self.mix = {op: w for op, w in mix.items() if w > 0}
        self.n_conferences = conferences
        self.n_rooms = rooms
        self.secret = secret
        self.random = random.Random(seed)
        self.acks: list[Ack] = []
        self.refused = 0
        self.failures: list[str] = []
        # (request start, op) of every 2xx: when a service was reachable again after a kill.
        self.successes: list[tuple[float, str]] = []
        # The request start of every refusal (503 or no connection): how long a refusal streak lasted.
        self.refusals: list[float] = []
        self.conferences: list[Conference] = []
        self.rooms: list[tuple[str, str]] = []  # (room id, owner's token)
        self.meetings: list[str] = []
        self._n = 0
        self._session: aiohttp.ClientSession | None = None
        self._admin = token("load-admin", secret=secret, permissions=SOURCEFUSE_PERMISSIONS)

    # ------------------------------------------------------------------ HTTP

    async def call(
        self, op: str, method: str, path: str, bearer: str, body: Any = None, *, params: Any = None
    ) -> tuple[int, Any]:
        """One request: (status, body); (0, None) when refused by the network. Counts refusals/failures."""
        assert self._session is not None
        started = time.monotonic()
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                json=body,
                params=params,
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=aiohttp.ClientTimeout(total=SLOW_SECONDS),
            ) as response:
                raw = await response.read()
                status = response.status
        except TimeoutError:
            self.failures.append(f"{op} {method} {path}: no answer within {SLOW_SECONDS:g} s (hang)")
            return 0, None
        except aiohttp.ClientError:
            self.refused += 1  # the gateway (or the connection) is down: a clean outage
            self.refusals.append(started)
            return 0, None
        elapsed = time.monotonic() - started
        parsed = json.loads(raw) if raw and raw[:1] in (b"{", b"[", b'"') else raw
        if status == 503:
            self.refused += 1
            self.refusals.append(started)
        elif status >= 500:
            self.failures.append(f"{op} {method} {path}: {status} {parsed!r:.200}")
        elif elapsed > SLOW_SECONDS:
            self.failures.append(f"{op} {method} {path}: answered {status} after {elapsed:.1f} s")
        if 200 <= status < 300 and op in SERVICES_OF:
            self.successes.append((started, op))
        return status, parsed

    def _marker(self, op: str) -> str:
        self._n += 1
        return f"{op}-{self._n}-{uuid.uuid4().hex[:8]}"

    def _ack(
        self, op: str, stream: str | None, event: str | None, match: Mapping[str, str], *state: str
    ) -> None:
        self.acks.append(Ack(op, stream, event, dict(match), tuple(state), time.monotonic()))

    # ------------------------------------------------------------------ setup

    async def setup(self, session: aiohttp.ClientSession) -> None:
        """The objects the load works on, created until each answered (retried through an outage)."""
        self._session = session
        for _ in range(self.n_conferences):
            self.conferences.append(await self._retry(self._open_conference))
        for _ in range(self.n_rooms):
            self.rooms.append(await self._retry(self._open_room))
        await self._retry(self._create_meeting)

    async def _retry(self, attempt: Any) -> Any:
        deadline = time.monotonic() + 60
        while True:
            result = await attempt()
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError("setup: the stack never answered")
            await asyncio.sleep(0.2)

    async def _open_conference(self) -> Conference | None:
        status, body = await self.call("create", "POST", "/rtc-api/conferences/create", self._admin, {})
        if status != 200:
            return None
        conference = Conference(
            body["id"], (f"agent-{uuid.uuid4().hex[:8]}", f"customer-{uuid.uuid4().hex[:8]}")
        )
        self._ack(
            "create",
            "PARLEY_CONFERENCE",
            "ConferenceCreatedEvent",
            {"conferenceId": conference.id},
            "conference",
            conference.id,
        )
        for endpoint in conference.anchors:
            await self._retry(lambda e=endpoint: self._join_or_none(conference, e))
        return conference

    async def _open_room(self) -> tuple[str, str] | None:
        owner, *members = (str(uuid.uuid4()) for _ in range(3))
        owner_token = token(owner, secret=self.secret)
        for user in (owner, *members):  # the directory learns a user from their first request
            await self.call("chat", "GET", "/users/capabilities", token(user, secret=self.secret))
        await asyncio.sleep(0.5)
        body = {"type": "group", "name": "load", "membersIds": members}
        status, created = await self.call("chat", "POST", "/rooms", owner_token, body)
        return (created["id"], owner_token) if status == 201 else None

    # ------------------------------------------------------------------ commands

    async def _join(self, conference: Conference, endpoint: str) -> bool:
        body = {"conferenceId": conference.id, "userEndpointId": endpoint}
        bearer = token(user_of(endpoint), secret=self.secret)
        status, _ = await self.call("join", "POST", "/rtc-api/conferences/join", bearer, body)
        if status != 200:
            return False
        self._ack(
            "join",
            "PARLEY_CONFERENCE",
            "ConferenceJoinedEvent",
            {"conferenceId": conference.id, "userEndpointId": endpoint},
            "conference",
            conference.id,
        )
        return True

    async def _join_or_none(self, conference: Conference, endpoint: str) -> bool | None:
        return True if await self._join(conference, endpoint) else None

    async def join(self, conference: Conference) -> None:
        endpoint = f"e-{uuid.uuid4().hex[:10]}"
        if await self._join(conference, endpoint):
            conference.joined.append(endpoint)

    async def leave(self, conference: Conference) -> None:
        if not conference.joined:
            return await self.join(conference)
        endpoint = conference.joined.pop(self.random.randrange(len(conference.joined)))
        body = {"conferenceId": conference.id, "userEndpointId": endpoint}
        bearer = token(user_of(endpoint), secret=self.secret)
        status, _ = await self.call("leave", "POST", "/rtc-api/conferences/leave", bearer, body)
        if status == 204:
            self._ack(
                "leave",
                "PARLEY_CONFERENCE",
                "ConferenceLeftEvent",
                {"conferenceId": conference.id, "userEndpointId": endpoint},
                "conference",
                conference.id,
            )

    async def metadata(self, conference: Conference) -> None:
        marker = self._marker("md")
        agent = conference.anchors[0]
        body = {
            "conferenceId": conference.id,
            "userEndpointId": agent,
            "key": "load",
            "operation": "SET",
            "value": marker,
        }
        bearer = token(user_of(agent), secret=self.secret)
        status, _ = await self.call(
            "metadata", "POST", "/rtc-api/conferences/updateConferenceMetadata", bearer, body
        )
        if 200 <= status < 300:
            self._ack(
                "metadata",
                "PARLEY_CONFERENCE",
                "ConferenceMetadataUpdatedEvent",
                {"conferenceId": conference.id, "value": marker},
                "conference",
                conference.id,
            )

    async def send_event(self, conference: Conference) -> None:
        marker = self._marker("ev")
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body = {
            "conferenceId": conference.id,
            "qos": "AT_LEAST_ONCE",
            "event": {"type": "LoadEvent", "timestamp": stamp, "marker": marker},
        }
        status, _ = await self.call("sendEvent", "POST", "/rtc-api/conferences/sendEvent", self._admin, body)
        if 200 <= status < 300:
            # Pushed once to each endpoint present; the customer anchor is always there.
            self._ack(
                "sendEvent", PUSH_STREAM, None, {"marker": marker, "userEndpointId": conference.anchors[1]}
            )

    async def snapshot(self, conference: Conference) -> None:
        agent, customer = conference.anchors
        body = {
            "sessionType": "CONFERENCE",
            "sessionId": conference.id,
            "userEndpointId": agent,
            "targetUserEndpointId": customer,
            "snapshotType": "ID_CARD",
        }
        bearer = token(user_of(agent), secret=self.secret)
        status, answered = await self.call("snapshot", "POST", "/rtc-api/snapshots/request", bearer, body)
        if status == 200:
            snapshot_id = answered["snapshotId"]
            self._ack(
                "snapshot",
                "PARLEY_SNAPSHOT",
                "SnapshotRequestedEvent",
                {"snapshotId": snapshot_id},
                "snapshot",
                snapshot_id,
                bearer,
            )

    async def chat(self) -> None:
        room, owner = self.random.choice(self.rooms)
        marker = self._marker("msg")
        status, sent = await self.call("chat", "POST", f"/rooms/{room}/messages", owner, {"text": marker})
        if status == 201:
            # Not a catalogue event: pushed once per room on the users' push stream, and in the history once.
            match = {"message.id": sent["id"], "message.text": marker}
            self._ack("chat", USER_PUSH_STREAM, "ROOM_MESSAGE_SENT", match, "message", room, owner)

    async def _create_meeting(self) -> str | None:
        status, link = await self.call("meeting", "POST", "/session", self._admin, {})
        if status != 200:
            return None
        self._ack("meeting", "PARLEY_MEETING", "MeetingCreatedEvent", {"meetingId": link}, "meeting", link)
        self.meetings.append(link)
        return str(link)

    async def meeting(self) -> None:
        if self.random.random() < 0.3:
            await self._create_meeting()
            return
        link = self.random.choice(self.meetings)
        self._n += 1  # a distinct schedule per update: the marker its event carries
        when = (
            (datetime(2030, 1, 1, tzinfo=UTC) + timedelta(minutes=self._n)).isoformat().replace("+00:00", "Z")
        )
        body = {"isScheduled": True, "scheduleTime": when}
        status, _ = await self.call("meeting", "PATCH", f"/session/{link}", self._admin, body)
        if 200 <= status < 300:
            self._ack(
                "meeting",
                "PARLEY_MEETING",
                "MeetingUpdatedEvent",
                {"meetingId": link, "meeting.startsAt": when},
                "meeting",
                link,
            )

    async def read(self, conference: Conference) -> None:
        """Reads acknowledge nothing; they are here to be answered 2xx or 503 during outages, never 500."""
        await self.call("read", "GET", f"/rtc-api/conferences/{conference.id}", self._admin)
        room, owner = self.random.choice(self.rooms)
        await self.call("readChat", "GET", f"/rooms/{room}/messages", owner, params={"limit": "5"})

    async def one(self) -> None:
        op = self.random.choices(list(self.mix), weights=list(self.mix.values()))[0]
        conference = self.random.choice(self.conferences)
        if op == "join":
            await self.join(conference)
        elif op == "leave":
            await self.leave(conference)
        elif op == "metadata":
            await self.metadata(conference)
        elif op == "sendEvent":
            await self.send_event(conference)
        elif op == "snapshot":
            await self.snapshot(conference)
        elif op == "chat":
            await self.chat()
        elif op == "meeting":
            await self.meeting()
        elif op == "read":
            await self.read(conference)

    async def run(self, stop: asyncio.Event) -> None:
        """`rate` commands a second, each in its own task (a slow answer does not slow the load down)."""
        tasks: set[asyncio.Task[None]] = set()
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        keeping = asyncio.create_task(self._keep_anchors_alive(stop))
        while not stop.is_set():
            task = asyncio.create_task(self.one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(self._crashed)
            next_at += interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
        if tasks:
            await asyncio.gather(*tasks)
        await keeping

    async def _keep_anchors_alive(self, stop: asyncio.Event) -> None:
        """Each anchor polls its conference as a client does (`?userEndpointId=` counts as keep-alive):
        without it the conference service removes them after the keep-alive window and its grace
        (150 s by default), and a long load (soak) would then expect pushes to endpoints that left."""
        while not stop.is_set():
            for conference in self.conferences:
                for endpoint in conference.anchors:
                    await self.call(
                        "keepAlive",
                        "GET",
                        f"/rtc-api/conferences/{conference.id}",
                        token(user_of(endpoint), secret=self.secret),
                        params={"userEndpointId": endpoint},
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), KEEPALIVE_SECONDS)

    def _crashed(self, task: asyncio.Task[None]) -> None:
        """A command that raised (an unexpected answer's shape): a failure, not a silent task error."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.failures.append(f"load error: {exc!r}")

    def first_success_after(self, moment: float, services: Iterable[str] | None = None) -> float | None:
        """The start time of the first 2xx request started after `moment` (through one of `services`)."""
        wanted = set(services) if services is not None else None
        times = [
            t
            for t, op in self.successes
            if t > moment and (wanted is None or wanted & set(SERVICES_OF.get(op, ())))
        ]
        return min(times, default=None)

    def longest_refusal_streak(self, start: float, end: float) -> float:
        """The longest time within [start, end) from a refusal to the next 2xx (or `end`), with only
        refusals between: how long the load was turned away without a break."""
        events = sorted(
            [(t, False) for t in self.refusals if start <= t < end]
            + [(t, True) for t, _ in self.successes if start <= t < end]
        )
        longest = 0.0
        streak_from: float | None = None
        for at, ok in events:
            if ok:
                if streak_from is not None:
                    longest = max(longest, at - streak_from)
                streak_from = None
            elif streak_from is None:
                streak_from = at
        if streak_from is not None:
            longest = max(longest, end - streak_from)
        return longest


# ---------------------------------------------------------------------- verification


def _get(event: Mapping[str, Any], dotted: str) -> Any:
    value: Any = event
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


async def read_stream(nc: Any, stream: str, subject: str) -> list[dict[str, Any]]:
    """Every message of `stream` (its JSON bodies), read through an ordered consumer."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    total = info.state.messages
    out: list[dict[str, Any]] = []
    if total == 0:
        return out
    sub = await js.subscribe(subject, stream=stream, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        while len(out) < total:
            msg = await sub.next_msg(timeout=10)
            out.append(json.loads(msg.data))
    finally:
        await sub.unsubscribe()
    return out


def stream_subjects() -> dict[str, str]:
    """Each stream the load checks and the subject filter reading all of it (from the catalogue)."""
    wanted = {f.stream: f.subject_pattern.format(type=">") for f in FAMILIES}
    return {**wanted, PUSH_STREAM: subjects.PUSH_DURABLE_ALL, USER_PUSH_STREAM: subjects.USER_PUSH_ALL}


async def verify(load: MixedLoad, nats_url: str, session: aiohttp.ClientSession) -> Report:
    load._session = session
    report = Report(acknowledged=len(load.acks), refused=load.refused, failures=list(load.failures))
    # A cluster's servers, comma-separated (`LocalStack.nats_url`): whichever is up answers.
    # The conferences' histories first: the timers (keep-alive, empty conference) still change them after
    # the load stopped, and what a history holds must already be in the stream read after it.
    histories = {c.id: await _conference_history(load, c.id) for c in load.conferences}
    await asyncio.sleep(1.0)  # the outbox publishes a commit's events just after it
    nc = await nats.connect(nats_servers(nats_url))
    try:
        streams = {
            name: await read_stream(nc, name, subject)
            for name, subject in stream_subjects().items()
            if any(a.stream == name for a in load.acks)
        }
    finally:
        await nc.close()
    # Index each stream by event type (push messages: by their inner event) to keep matching cheap.
    by_type: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    for name, events in streams.items():
        for event in events:
            if name == PUSH_STREAM:
                by_type[(name, None)].append(
                    {**event.get("event", {}), "userEndpointId": event["userEndpointId"]}
                )
            else:
                by_type[(name, event.get("type"))].append(event)
    for ack in load.acks:
        if ack.stream is None:
            continue
        found = sum(
            1
            for e in by_type[(ack.stream, ack.event_type)]
            if all(_get(e, k) == v for k, v in ack.match.items())
        )
        label = f"{ack.op} {ack.event_type or 'push'} {dict(ack.match)}"
        if found == 0:
            report.lost.append(f"not in {ack.stream}: {label}")
        elif found > 1:
            report.duplicated.append(f"{found}x in {ack.stream}: {label}")
    await _verify_state(load, report, by_type, histories)
    return report


async def _verify_state(
    load: MixedLoad,
    report: Report,
    by_type: Mapping[tuple[str, str | None], list[dict[str, Any]]],
    histories: Mapping[str, list[dict[str, Any]]],
) -> None:
    # Conferences: the history over HTTP holds each acknowledged event once, versions gapless 0..n-1,
    # and the stream holds each version once.
    for conference in load.conferences:
        history = histories[conference.id]
        versions = [e["conferenceVersion"] for e in history]
        if versions != list(range(len(history))):
            report.gaps.append(f"{conference.id}: HTTP history versions {_summary(versions)}")
        streamed: Counter[int] = Counter(
            int(e["conferenceVersion"])
            for (stream, _), events in by_type.items()
            if stream == "PARLEY_CONFERENCE"
            for e in events
            if e.get("conferenceId") == conference.id and e.get("conferenceVersion") is not None
        )
        # Every version of the history, each once, and gapless past it (timers may have added newer ones).
        expected = list(range(max(len(history), max(streamed, default=-1) + 1)))
        if sorted(streamed) != expected or any(c != 1 for c in streamed.values()):
            twice = sorted(v for v, c in streamed.items() if c > 1)
            missing = [
                f"{e['conferenceVersion']}:{e.get('type')}"
                for e in history
                if e["conferenceVersion"] not in streamed
            ]
            report.gaps.append(
                f"{conference.id}: stream versions {_summary(sorted(streamed))} (twice: {twice[:10]}) "
                f"vs {len(history)} in the state; not in the stream: {missing[:8]}"
            )
        for ack in load.acks:
            if ack.state[:2] != ("conference", conference.id) or ack.event_type == "ConferenceCreatedEvent":
                continue
            found = sum(
                1
                for e in history
                if e["type"] == ack.event_type and all(_get(e, k) == v for k, v in ack.match.items())
            )
            if found != 1:
                (report.lost if found == 0 else report.duplicated).append(
                    f"state: {found}x {ack.op} {ack.event_type} {dict(ack.match)}"
                )
    # Chat messages: each once in its room's history.
    for room, owner in load.rooms:
        texts = Counter(await _room_texts(load, room, owner))
        for ack in load.acks:
            if ack.state[:2] == ("message", room):
                found = texts[ack.match["message.text"]]
                if found != 1:
                    (report.lost if found == 0 else report.duplicated).append(
                        f"state: {found}x message {ack.match}"
                    )
    for ack in load.acks:
        if ack.state[:1] == ("snapshot",):
            status, _ = await _settled(load, "GET", f"/rtc-api/snapshots/{ack.state[1]}", ack.state[2])
            if status != 200:
                report.lost.append(f"state: snapshot {ack.state[1]} answers {status}")
        elif ack.state[:1] == ("meeting",) and ack.event_type == "MeetingCreatedEvent":
            status, _ = await _settled(load, "GET", f"/session/{ack.state[1]}/attendees", load._admin)
            if status != 200:
                report.lost.append(f"state: meeting {ack.state[1]} answers {status}")


def _summary(values: list[int]) -> str:
    return f"{len(values)} values, {values[:3]}...{values[-3:]}" if len(values) > 6 else str(values)


async def _settled(
    load: MixedLoad, method: str, path: str, bearer: str, params: Any = None
) -> tuple[int, Any]:
    """A read after the chaos: retried while the stack still answers 503 (it must settle within 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        status, body = await load.call("verify", method, path, bearer, params=params)
        if status not in (0, 503) or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.2)


async def _conference_history(load: MixedLoad, conference_id: str) -> list[dict[str, Any]]:
    path = f"/rtc-api/conferences/{conference_id}"
    _, state = await _settled(load, "GET", path, load._admin)
    version = int(state["version"])
    events: list[dict[str, Any]] = []
    while len(events) < version:
        status, page = await _settled(
            load, "GET", f"{path}/events", load._admin, params={"v": str(len(events))}
        )
        if status != 200 or not page:
            break
        events.extend(page)
    return events


async def _room_texts(load: MixedLoad, room: str, owner: str) -> list[str]:
    texts: list[str] = []
    params: dict[str, str] = {"limit": "100"}
    while True:
        status, page = await _settled(load, "GET", f"/rooms/{room}/messages", owner, params=params)
        if status != 200:
            return texts
        messages = page["messages"]
        texts.extend(m["text"] for m in messages)
        after = page.get("next") or page.get("nextCursor") or page.get("before")
        if not messages or not after:
            return texts
        params = {"limit": "100", "before": str(after)}


def print_report(report: Report, unavailability: Sequence[tuple[str, float | None]] = ()) -> None:
    print(f"commands acknowledged {report.acknowledged}")
    print(f"lost                  {len(report.lost)}")
    print(f"duplicated            {len(report.duplicated)}")
    print(f"refused               {report.refused}")
    print(f"failures              {len(report.failures)}")
    print(f"version gaps          {len(report.gaps)}")
    for title, lines in (
        ("lost", report.lost),
        ("duplicated", report.duplicated),
        ("failures", report.failures),
        ("gaps", report.gaps),
    ):
        for line in lines[:20]:
            print(f"  {title}: {line}")
    for index, (name, seconds) in enumerate(unavailability, 1):
        back = "never back" if seconds is None else f"{seconds:.2f} s"
        print(f"kill {index}: {name:<12} unavailable {back}")
