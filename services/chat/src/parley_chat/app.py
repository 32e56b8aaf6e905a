"""Wiring: storage, NATS, the conference client and the use cases on the shared bootstrap (`service`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from parley_common.log import get_logger
from parley_common.messaging.rpc import Responders, RpcClient
from parley_common.outbox import DeleteObject, Outbox, Publisher, PublishEvent, each
from parley_common.service import Runtime, run_service, serve

from parley_chat.adapters.bus import register
from parley_chat.adapters.conferences import ConferenceClient
from parley_chat.adapters.directory import DirectoryFeed, SeenReportsOnStream
from parley_chat.adapters.files import ChatFiles
from parley_chat.adapters.repository import StorageChatRepository
from parley_chat.domain import MessageLimits
from parley_chat.effects import EndConference, RemoveFromConference
from parley_chat.handlers import ChatHandlers, ChatUnitOfWork
from parley_chat.settings import Settings

log = get_logger(__name__)
# A live publish gives up after this many tries: the effect stays owed and recovery retries it later.
PUBLISH_ATTEMPTS = 3


def wiring(settings: Settings) -> Callable[[Runtime], Awaitable[None]]:
    async def wire(runtime: Runtime) -> None:
        repository = await StorageChatRepository.open(runtime.store)
        landed = await repository.log.land_unapplied()
        if landed:
            log.info("landed the writes of interrupted commits", commits=landed)
        rpc = RpcClient(runtime.nc, timeout=runtime.common.request_timeout)
        conferences = ConferenceClient(rpc)
        files = ChatFiles(runtime.js)

        async def remove(effect: RemoveFromConference) -> None:
            await conferences.remove_participant(effect.organization_id, effect.conference_id, effect.user_id)

        async def end(effect: EndConference) -> None:
            await conferences.end(effect.organization_id, effect.conference_id)

        outbox = runtime.use_outbox(
            Outbox(
                [repository.log],
                # Events (the stream, then each recipient's copy) before the conference changes they announce.
                {
                    PublishEvent: Publisher(runtime.js, attempts=PUBLISH_ATTEMPTS),
                    RemoveFromConference: each(remove),
                    EndConference: each(end),
                    # Bytes last: the state no longer refers to them.
                    DeleteObject: each(files.execute),
                },
            )
        )
        handlers = ChatHandlers(
            ChatUnitOfWork(repository, outbox, wait_seconds=settings.effects_wait_seconds),
            conferences,
            SeenReportsOnStream(runtime.js),
            max_group_members=settings.max_group_members,
            message_limits=MessageLimits(
                edit=timedelta(seconds=settings.edit_message_seconds),
                delete=timedelta(seconds=settings.delete_message_seconds),
            ),
            files=files,
            # Previews are CPU work (Pillow, PDFium release the GIL in their C calls): a small pool.
            renderer=ThreadPoolExecutor(settings.preview_workers, thread_name_prefix="preview"),
        )
        responders = runtime.takes_requests(Responders(runtime.nc))
        runtime.after_start(lambda: register(responders, handlers, runtime.store, runtime.js))
        feed = runtime.takes_requests(DirectoryFeed(runtime.js, handlers.record_seen))
        runtime.background(feed.run, name="directory")

    return wire


async def serve_chat(settings: Settings, stop: asyncio.Event) -> None:
    await serve("chat", settings.common, wiring(settings), stop)


def main() -> None:
    run_service("chat", Settings.from_env, serve_chat)
