"""Domain errors every service raises, and the one decorator turning them into `Rejected` replies.

Pure (no I/O): domain modules import it. A refusal carries the HTTP status the API answers with; a
service's own refusals derive from these (`class ConferenceHasEnded(Conflict)`), so the mapping to a
status lives in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, overload

import nats.errors

from parley_common.contracts.rpc import Accepted, Rejected, Request
from parley_common.log import get_logger, log_context
from parley_common.storage.port import InvalidValue, StorageError

log = get_logger(__name__)


class DomainError(Exception):
    """A command the rules refuse. `status` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidCommand(DomainError):
    status = 400


class NotAllowed(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class TooLarge(DomainError):
    status = 413


class Unavailable(DomainError):
    """A dependency is not answering, or the command cannot be decided now: retry later."""

    status = 503


class Busy(Unavailable):
    """The same object is changing too fast for the command to commit: retry."""


Reply = Accepted[Any] | Rejected
UseCase = Callable[..., Awaitable[Reply]]


@overload
def rejecting(method: UseCase, /) -> UseCase: ...


@overload
def rejecting(
    *, context: Mapping[str, str] | None = None, object_store: bool = False
) -> Callable[[UseCase], UseCase]: ...


def rejecting(
    method: UseCase | None = None,
    /,
    *,
    context: Mapping[str, str] | None = None,
    object_store: bool = False,
) -> UseCase | Callable[[UseCase], UseCase]:
    """Decorate a use case `(self, request) -> Reply` so refusals become `Rejected` replies.

    `@rejecting` as is, or configured once per service: `rejecting = errors.rejecting(context=...)`.

    `DomainError` -> its status and message; storage's `InvalidValue` (a value the store cannot keep: the
    client's error) -> 400; `StorageError` -> 503. With `object_store`, NATS errors and timeouts (the
    object store not answering) -> 503 too. `context` maps log-context keys to body attributes, logged with
    everything the use case logs (`{"conference_id": "conference_id"}`).
    """
    fields = dict(context or {})

    def decorate(method: UseCase) -> UseCase:
        @wraps(method)
        async def wrapper(self: Any, request: Request[Any]) -> Reply:
            body = request.body
            with log_context(**{key: getattr(body, attr, None) for key, attr in fields.items()}):
                try:
                    return await method(self, request)
                except DomainError as exc:
                    return Rejected(status=exc.status, message=exc.message)
                except InvalidValue as exc:
                    return Rejected.bad_request(exc.message)
                except StorageError as exc:
                    log.warning("storage unavailable", error=repr(exc))
                    return Rejected.unavailable("service unavailable: storage not answering")
                except (nats.errors.Error, TimeoutError) as exc:
                    if not object_store:
                        raise
                    log.warning("object store unavailable", error=repr(exc))
                    return Rejected.unavailable("service unavailable: object store not answering")

        return wrapper

    return decorate if method is None else decorate(method)
