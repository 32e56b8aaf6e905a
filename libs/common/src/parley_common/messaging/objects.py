"""Streaming into and out of a JetStream object store, without holding a whole file in memory.

nats-py's `ObjectStore.put` reads a *sync* reader (run in the default thread pool: a slow client would hold
one of its few threads for the whole upload) and `get` gathers the object in memory. These two functions
speak the same object store protocol (chunks on `$O.<bucket>.C.<nuid>`, then one meta message rolled up
on `$O.<bucket>.M.<name>`, as nats-py and the Go client write them) from an async iterator of chunks,
so an HTTP body streams straight in and a download streams straight out, one chunk at a time.

- `put_stream(js, bucket, name, chunks, max_bytes=...)`: the chunks as they come, in 128 KiB messages;
  past `max_bytes` it stops with `ObjectTooLarge`. On ANY failure (too large, the client gone, NATS away)
  the chunks written so far are purged and no meta message is written: nothing is stored. A name put
  again replaces the old object (its chunks purged after the new meta is written).
- `read_stream(js, bucket, name)`: the object's info, then its bytes chunk by chunk (each asked for by
  sequence, so a slow reader holds nothing back on the server or here), checked against its digest.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime
from hashlib import sha256

import nats.errors
from nats.js import JetStreamContext, api
from nats.js.errors import DigestMismatchError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DEFAULT_CHUNK_SIZE,
    OBJ_DIGEST_TEMPLATE,
    OBJ_DIGEST_TYPE,
    OBJ_META_PRE_TEMPLATE,
    OBJ_STREAM_TEMPLATE,
    ObjectStore,
)

from parley_common.clock import new_id

CHUNK_SIZE = OBJ_DEFAULT_CHUNK_SIZE
# nats-py's MSG_ROLLUP_SUBJECT: the meta subject keeps its last message only.
_ROLLUP: dict[str, str] = {str(api.Header.ROLLUP.value): "sub"}


class ObjectTooLarge(Exception):
    """The stream went past `max_bytes`: nothing was stored."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"more than {max_bytes} bytes")
        self.max_bytes = max_bytes


def _store(js: JetStreamContext, bucket: str) -> ObjectStore:
    # No I/O: the handle nats-py's `js.object_store` returns, for `get_info` (the bucket exists already).
    return ObjectStore(bucket, OBJ_STREAM_TEMPLATE.format(bucket=bucket), js)


def _meta_subject(bucket: str, name: str) -> str:
    return OBJ_META_PRE_TEMPLATE.format(bucket=bucket, obj=base64.urlsafe_b64encode(name.encode()).decode())


async def put_stream(
    js: JetStreamContext,
    bucket: str,
    name: str,
    chunks: AsyncIterable[bytes],
    *,
    max_bytes: int | None = None,
    description: str | None = None,
    headers: dict[str, str] | None = None,
) -> api.ObjectInfo:
    """Store `chunks` as object `name` of `bucket` (created beforehand, `ensure_object_store`).

    Raises `ObjectTooLarge` past `max_bytes`, or whatever the source or NATS raised; nothing is stored then.
    """
    stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
    try:
        existing: api.ObjectInfo | None = await _store(js, bucket).get_info(name)
    except (ObjectNotFoundError, NotFoundError):
        existing = None
    nuid = new_id().replace("-", "")
    chunk_subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=nuid)
    digest = sha256()
    pending = bytearray()
    total = 0
    sent = 0

    async def flush(size: int) -> None:
        nonlocal sent, pending
        payload = bytes(pending[:size])
        del pending[:size]
        digest.update(payload)
        await js.publish(chunk_subject, payload, stream=stream)
        sent += 1

    try:
        async for chunk in chunks:
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise ObjectTooLarge(max_bytes)
            pending += chunk
            while len(pending) >= CHUNK_SIZE:
                await flush(CHUNK_SIZE)
        if pending:
            await flush(len(pending))
        info = api.ObjectInfo(
            name=name,
            bucket=bucket,
            nuid=nuid,
            size=total,
            chunks=sent,
            digest=OBJ_DIGEST_TEMPLATE.format(digest=base64.urlsafe_b64encode(digest.digest()).decode()),
            mtime=datetime.now(UTC).isoformat(),
            description=description,
            headers=headers,
            options=api.ObjectMetaOptions(max_chunk_size=CHUNK_SIZE),
        )
        await js.publish(
            _meta_subject(bucket, name), json.dumps(info.as_dict()).encode(), headers=_ROLLUP, stream=stream
        )
    except BaseException:
        # Chunks without a meta message are no object: drop them (the meta was not written, or failed).
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            await js.purge_stream(stream, subject=chunk_subject)
        raise
    if existing is not None and not existing.deleted and existing.nuid:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js.purge_stream(
                stream, subject=OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=existing.nuid)
            )
    return info


async def object_info(js: JetStreamContext, bucket: str, name: str) -> api.ObjectInfo | None:
    """The object's info, or None when it is not stored (never was, or deleted)."""
    try:
        info: api.ObjectInfo = await _store(js, bucket).get_info(name)
    except (ObjectNotFoundError, NotFoundError):
        return None
    return info


async def read_stream(js: JetStreamContext, info: api.ObjectInfo) -> AsyncIterator[bytes]:
    """The bytes of the object `info` describes (from `object_info`), one stored chunk at a time.

    Each chunk is fetched by sequence when the reader asks for the next one. Raises
    `DigestMismatchError` after the last chunk when the bytes are not those stored.
    """
    if not info.size:
        return
    stream = OBJ_STREAM_TEMPLATE.format(bucket=info.bucket)
    subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=info.bucket, obj=info.nuid)
    digest = sha256()
    seq = 0
    for _ in range(info.chunks or 0):
        msg = await js.get_msg(stream, seq=seq + 1, subject=subject, next=True)
        seq = msg.seq or seq + 1
        data = msg.data or b""
        digest.update(data)
        yield data
    expected = (info.digest or "").replace(OBJ_DIGEST_TYPE, "").replace(OBJ_DIGEST_TYPE.upper(), "")
    if digest.digest() != base64.urlsafe_b64decode(expected):
        raise DigestMismatchError


async def delete_object(js: JetStreamContext, bucket: str, name: str) -> bool:
    """Delete an object; False when it was not there (deleting twice is fine)."""
    try:
        await _store(js, bucket).delete(name)
    except (ObjectNotFoundError, NotFoundError):
        return False
    return True
