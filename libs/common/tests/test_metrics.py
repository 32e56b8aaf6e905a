"""parley_common.metrics: bounded labels, the port setting, and the small /metrics server on the loop."""

from __future__ import annotations

import asyncio

import pytest
from parley_common import metrics
from parley_common.processes import free_port
from prometheus_client.parser import text_string_to_metric_families


@pytest.mark.parametrize(
    ("subject", "label"),
    [
        ("parley.cmd.conference.join", "cmd.conference.join"),
        ("parley.qry.chat.listRoom", "qry.chat.listRoom"),
        ("parley.health.snapshot", "health.snapshot"),
        ("parley.media.media-7.publish", "media.publish"),  # the node id is not a label value
        ("parley.push.durable.0123456789abcdef", "other"),
        ("anything.else", "other"),
    ],
)
def test_subject_operations_are_bounded(subject: str, label: str) -> None:
    assert metrics.subject_operation(subject) == label


def test_the_port_setting() -> None:
    assert metrics.metrics_port({}) is None
    assert metrics.metrics_port({"PARLEY_METRICS_PORT": " 9100 "}) == 9100
    for bad in ("http", "0", "70000", "-1"):
        with pytest.raises(ValueError, match="PARLEY_METRICS_PORT"):
            metrics.metrics_port({"PARLEY_METRICS_PORT": bad})


async def ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    return answer


async def test_the_server_answers_a_scrape_and_nothing_else() -> None:
    port = free_port()
    async with metrics.serve_metrics(port) as serving:
        assert serving
        answer = await ask(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK"), head
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        # Counted on the loop when scraped: at least this test's task and the server's.
        assert families["parley_asyncio_tasks"].samples[0].value >= 2
        assert "process_open_fds" in families

        assert (await ask(port, b"GET /other HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        # Not HTTP, or a head over the limit: the connection is closed, nothing hangs.
        assert await ask(port, b"\x00" * 10_000) == b""
        assert await ask(port, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10_000 + b"\r\n\r\n") == b""


async def test_a_port_taken_is_logged_not_fatal() -> None:
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        async with metrics.serve_metrics(port) as serving:
            assert not serving  # the service runs on, unobserved
    finally:
        blocker.close()
