"""Bad input at the gateway's shared layer answers 400 `{message, traceId}`, never 500.

The application is the real one (`build_app` with the real conference and snapshot operations); nothing here
needs NATS, because every request is refused before an operation would send a command.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any, cast

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from parley_common.jsonlimits import MAX_DEPTH
from parley_common.log import configure_logging
from parley_gateway.app import build_app
from parley_gateway.conferences import conference_operations
from parley_gateway.http import BadRequest, decode_json
from parley_gateway.identity import TokenIssuer, TokenVerifier
from parley_gateway.protocol import GatewayRunner
from parley_gateway.settings import Settings
from parley_gateway.snapshots import SnapshotGatewaySettings, snapshot_operations

SECRET = "test-secret-that-is-long-enough-for-hs256!"
CONFERENCES = "/rtc-api/conferences"
SNAPSHOTS = "/rtc-api/snapshots"
INT64_MAX = 2**63 - 1


def make_app() -> web.Application:
    # No NATS: the rpc client and JetStream context are never reached by the refused requests below.
    absent = cast(Any, None)
    settings = Settings.from_env()
    operations = [
        *conference_operations(absent, absent, absent, longpoll_seconds=1.0, media_timeout=1.0),
        *snapshot_operations(
            absent, absent, SnapshotGatewaySettings.from_env(request_timeout=1.0, port=settings.port)
        ),
    ]
    return build_app(operations, TokenVerifier(secret=SECRET), settings)


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_app())) as test_client:
        yield test_client


@pytest.fixture
def auth() -> dict[str, str]:
    token = TokenIssuer(secret=SECRET).issue(user_id="alice", organization_id="acme")
    return {"Authorization": f"Bearer {token}"}


async def refusal(response: Any, status: int = 400) -> str:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"message", "traceId"}
    assert body["traceId"]
    return str(body["message"])


def nested(depth: int) -> Any:
    """A JSON value `depth` objects deep."""
    value: Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


# --- 6: multipart part headers aiohttp's header parser refuses --------------------------------------------

BOUNDARY = "parleyboundary"


def multipart_body(part_header: bytes) -> bytes:
    return (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="snapshotType"\r\n'
        + part_header
        + b"\r\n\r\nvalue\r\n"
        + f"--{BOUNDARY}--\r\n".encode()
    )


@pytest.mark.parametrize("op", ["upload", "acquire"])
@pytest.mark.parametrize(
    "part_header",
    [b"X-Bad\x01Name: value", b"a header line without a colon", b"\x7f: x"],
    ids=["control-char-in-name", "no-colon", "del-name"],
)
async def test_malformed_multipart_part_headers_are_400(
    client: TestClient[web.Request, web.Application], auth: dict[str, str], op: str, part_header: bytes
) -> None:
    response = await client.post(
        f"{SNAPSHOTS}/{op}",
        data=multipart_body(part_header),
        headers={**auth, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert "malformed multipart body" in await refusal(response)


# --- 7: nesting depth, bounded once in the body reader ----------------------------------------------------

FREE_FORM_BODIES = {
    "join": lambda deep: {"conferenceId": "c", "userEndpointId": "e", "metadata": deep},
    "updateParticipantMetadata": lambda deep: {
        "conferenceId": "c",
        "userEndpointId": "e",
        "newMetadata": deep,
    },
    "sendEvent": lambda deep: {"conferenceId": "c", "event": deep, "qos": "BEST_EFFORT"},
    "publishStream": lambda deep: {
        "conferenceId": "c",
        "userEndpointId": "e",
        "conferenceStreamType": "CAM",
        "sdpOffer": "v=0",
        "metadata": deep,
    },
}


@pytest.mark.parametrize("op", sorted(FREE_FORM_BODIES))
async def test_json_nested_1000_levels_is_400(
    client: TestClient[web.Request, web.Application], auth: dict[str, str], op: str
) -> None:
    # Spliced in as text: msgspec cannot even encode a value this deep.
    deep = b'{"k":' * 1000 + b"1" + b"}" * 1000
    body = msgspec.json.encode(FREE_FORM_BODIES[op]("DEEP")).replace(b'"DEEP"', deep)
    response = await client.post(f"{CONFERENCES}/{op}", data=body, headers=auth)
    assert f"nested deeper than {MAX_DEPTH} levels" in await refusal(response)


def test_depth_limit_is_exactly_100_levels_and_brackets_in_strings_do_not_count() -> None:
    body = msgspec.json.Decoder(dict[str, Any])
    at_limit = msgspec.json.encode(nested(MAX_DEPTH))
    assert body.decode(at_limit) == decode_json(at_limit, dict[str, Any])
    with pytest.raises(BadRequest, match="nested deeper"):
        decode_json(msgspec.json.encode(nested(MAX_DEPTH + 1)), dict[str, Any])
    quoted = msgspec.json.encode({"sdp": "[{" * 5000 + '\\"' + "}]" * 10})
    assert decode_json(quoted, dict[str, Any])["sdp"].startswith("[{[{")


# --- 8: integers outside int64, one rule for all free-form JSON ----------------------------------------


@pytest.mark.parametrize("op", sorted(FREE_FORM_BODIES))
@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 2**64, 10**30])
async def test_integers_outside_int64_are_400_naming_the_field(
    client: TestClient[web.Request, web.Application], auth: dict[str, str], op: str, number: int
) -> None:
    body = FREE_FORM_BODIES[op]({"scores": [1, number]})
    raw = json.dumps(body).encode()
    response = await client.post(f"{CONFERENCES}/{op}", data=raw, headers=auth)
    message = await refusal(response)
    field = {"updateParticipantMetadata": "newMetadata", "sendEvent": "event"}.get(op, "metadata")
    assert f"$.{field}.scores[1]" in message, message
    assert "64 bits" in message or "out of range" in message.lower(), message


def test_int64_bounds_themselves_are_accepted() -> None:
    raw = json.dumps({"low": -(2**63), "high": INT64_MAX, "x": 1.5e-308, "y": 9.2e18}).encode()
    assert decode_json(raw, dict[str, Any]) == {
        "low": -(2**63),
        "high": INT64_MAX,
        "x": 1.5e-308,
        "y": 9.2e18,
    }


def test_a_whole_number_beyond_int64_written_as_a_float_is_refused_too() -> None:
    # The document's JsonValue says "integer within int64", and to JSON Schema 1e19 is an integer.
    with pytest.raises(BadRequest, match=r"\$\.x: integer 10000000000000000000 does not fit in 64 bits"):
        decode_json(b'{"x": 1e19}', dict[str, Any])


# --- 9: query integers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [str(INT64_MAX + 1), str(2**64), "9" * 40, str(-(2**63) - 1), "1_000", "٣", " 7"]
)
async def test_events_version_out_of_int64_or_not_plain_digits_is_400(
    client: TestClient[web.Request, web.Application], auth: dict[str, str], value: str
) -> None:
    response = await client.get(f"{CONFERENCES}/c1/events", params={"v": value}, headers=auth)
    assert "query parameter v" in await refusal(response)


async def test_signed_url_expiration_beyond_int64_is_400(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get(f"{SNAPSHOTS}/signed/s1/{2**64}", params={"signature": "x"})
    assert "expiration" in await refusal(response)


# --- 11: HTTPException headers survive the JSON error body ------------------------------------------------


async def test_405_keeps_its_allow_header(
    client: TestClient[web.Request, web.Application], auth: dict[str, str]
) -> None:
    response = await client.delete(f"{CONFERENCES}/join", headers=auth)
    await refusal(response, 405)
    # /join takes POST, and /{id} (which "join" also matches) takes GET.
    assert set(response.headers.get("Allow", "").split(",")) == {"GET", "POST"}


# --- 10: aiohttp's parser refusals: JSON bodies, no credential in any log --------------------------------


async def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


SECRET_TOKEN = "SECRETSECRETSECRET" + "x" * 40


@pytest.mark.parametrize(
    "request_bytes",
    [
        # A request line over 8,190 bytes, then the credential.
        f"GET /{'a' * 9000} HTTP/1.1\r\nAuthorization: Bearer {SECRET_TOKEN}\r\n\r\n".encode(),
        # An oversize header: the credential is the start of the refused line.
        f"GET /health HTTP/1.1\r\nAuthorization: Bearer {SECRET_TOKEN}{'y' * 9000}\r\n\r\n".encode(),
        # A malformed header after the credential.
        f"GET /health HTTP/1.1\r\nAuthorization: Bearer {SECRET_TOKEN}\r\nBad\x01: x\r\n\r\n".encode(),
    ],
    ids=["long-request-line", "long-authorization-header", "bad-header"],
)
async def test_parser_refusals_are_json_and_never_log_a_credential(
    request_bytes: bytes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    configure_logging("gateway", level="DEBUG", json=True)
    caplog.set_level(logging.DEBUG)
    runner = GatewayRunner(make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        status, headers, body = await raw_exchange(port, request_bytes)
    finally:
        await runner.cleanup()
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    decoded = json.loads(body)
    assert set(decoded) == {"message", "traceId"} and decoded["traceId"], decoded
    assert "SECRET" not in body.decode()
    plain = logging.Formatter("%(levelname)s %(name)s %(message)s")  # what an unredacted handler writes
    logged = captured.getvalue() + "\n".join(plain.format(record) for record in caplog.records)
    assert "SECRET" not in logged, logged
    assert "Traceback" not in logged, logged


# --- 12: an oversize JSON body is 413 from its Content-Length, never read ------------------------------


async def test_an_announced_oversize_json_body_is_413_without_waiting_for_it(auth: dict[str, str]) -> None:
    # 1 GiB announced, 5 bytes sent: aiohttp's own limit would wait for the bytes past the limit that never
    # come; the route wrapper answers from the header at once. (aiohttp then lingers reading what the client
    # still sends for a while: a short shutdown keeps the test fast.)
    runner = GatewayRunner(make_app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        head = (
            f"POST {CONFERENCES}/join HTTP/1.1\r\nHost: x\r\nAuthorization: {auth['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {1024**3}\r\n\r\n"
        )
        writer.write(head.encode() + b'{"a":')
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=2)
        writer.close()
    finally:
        await runner.cleanup()
    assert status_line.split()[1] == b"413", status_line
