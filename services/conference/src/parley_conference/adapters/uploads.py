"""Copies of archives on an organization's storage target: S3 (or any S3-compatible store) and Azure Blob,
both through `obstore` (one maintained client; custom endpoints, path-style requests and Azurite).

Credentials are the deployment's settings, never the request's and never logged. The bytes come from
Parley's object store (JetStream, bucket `parley_recordings`) and go up as a multipart upload in chunks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import msgspec
import obstore
from nats.js import JetStreamContext
from obstore.store import AzureStore, S3Store

from parley_conference.archives import Target

CHUNK = 5 * 1024 * 1024
# Our own retries (with backoff, state in the archive) decide; the client's are kept short.
_RETRY: Any = {"max_retries": 1, "retry_timeout": timedelta(seconds=10)}
_CLIENT: Any = {
    "allow_http": True,
    "connect_timeout": timedelta(seconds=5),
    "timeout": timedelta(seconds=120),
}


class UploadCredentials(msgspec.Struct, frozen=True, kw_only=True):
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    azure_account_key: str | None = None

    def __repr__(self) -> str:  # never in a log line or a traceback
        return "UploadCredentials(<hidden>)"


def target_store(target: Target, credentials: UploadCredentials) -> S3Store | AzureStore:
    if target.name == "AWSS3":
        s3: dict[str, Any] = {"region": target.region or "us-east-1"}
        if target.endpoint:
            # Any S3-compatible store: path-style, as most of them (and moto) expect.
            s3["endpoint"] = target.endpoint
            s3["virtual_hosted_style_request"] = False
        if credentials.s3_access_key and credentials.s3_secret_key:
            s3["access_key_id"] = credentials.s3_access_key
            s3["secret_access_key"] = credentials.s3_secret_key
        return S3Store(target.location, client_options=_CLIENT, retry_config=_RETRY, **s3)
    azure: dict[str, Any] = {"account_name": target.account_name}
    if target.endpoint:
        # The blob service's URL including the account where the store is path-style (Azurite:
        # `http://host:port/devstoreaccount1`).
        azure["endpoint"] = target.endpoint
    if credentials.azure_account_key:
        azure["account_key"] = credentials.azure_account_key
    return AzureStore(target.location, client_options=_CLIENT, retry_config=_RETRY, **azure)


class Uploader:
    """Puts one archive's bytes on a target (raises on any failure; the caller records it)."""

    def __init__(self, js: JetStreamContext, credentials: UploadCredentials) -> None:
        self._js = js
        self._credentials = credentials

    async def upload(self, target: Target, bucket: str, object_name: str, remote_name: str) -> None:
        found = await (await self._js.object_store(bucket)).get(object_name)
        data = found.data or b""

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), CHUNK):
                yield data[start : start + CHUNK]

        store = target_store(target, self._credentials)
        await obstore.put_async(store, remote_name, chunks() if data else data, chunk_size=CHUNK)
