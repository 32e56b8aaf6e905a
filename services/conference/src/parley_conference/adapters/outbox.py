"""The conference's events through the shared outbox (`parley_common.outbox`).

Every committed event owes its publication on PARLEY_CONFERENCE; the event log is the outbox store
(`ConferenceRepository.owed/done`), so nothing is written twice. After a commit the event is handed to the
outbox, which publishes batches pipelined in commit order (each with its event id as `Nats-Msg-Id`) and
marks them published, and writes the snapshots due, every `flush_interval` seconds, off the command path.
Recovery (on start, and after a failure of this process) publishes what is still unmarked, except what the
stream already stores: the process may have died after publishing and before marking, long before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nats.js import JetStreamContext
from parley_common.contracts.conference import AnyConferenceEvent
from parley_common.outbox import Executor, Outbox, OutboxStore, Publisher, PublishEvent

from parley_conference.adapters.repository import ConferenceRepository, owing
from parley_conference.domain import Conference


def conference_outbox(
    repository: ConferenceRepository,
    js: JetStreamContext,
    *,
    stores: Sequence[OutboxStore] = (),
    executors: Mapping[type, Executor] | None = None,
    **options: Any,
) -> Outbox:
    """The service's one outbox (the bootstrap runs one): the event log, plus the other aggregates'
    commit stores (`stores`, e.g. meetings) and the executors of their own effects."""
    # A live publish is retried until acknowledged: events leave in commit order or not at all. No periodic
    # sweep: listing the unpublished events sorts the event log, and running that every 5 s costs a third of
    # the throughput under load (the store has one writer thread). Recovery runs at start, and after a
    # failure of this process; a dead replica's leftovers are recovered when it restarts.
    options.setdefault("sweep", False)
    return Outbox([repository, *stores], {PublishEvent: Publisher(js), **(executors or {})}, **options)


class EventOutbox:
    """The unit of work's sink: a committed event goes to the outbox."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def committed(self, state: Conference, event: AnyConferenceEvent) -> None:
        self.outbox.committed(owing(event))
