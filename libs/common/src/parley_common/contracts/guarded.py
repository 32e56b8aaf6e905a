"""Conferences another service owns the admission of (a chat room's meeting), and their end by that service.

`parley.cmd.conference.createGuarded` (`Request[CreateGuardedConference]`, answers `Accepted[Empty]`, 409 when
the id is taken): the conference stores `admission` and, on every join, asks `admission.subject` with an
`AdmissionQuery {organizationId, userId, resource}` (`parley_common.contracts.chat`); not admitted -> 403,
no answer -> 503. `parley.cmd.conference.endGuarded` (`Request[EndGuardedConference]`, `Accepted[Empty]`):
the owning service ends it without being a participant (a room deleted); 404 or already ended count as done
for the caller. The requests carry a service `Caller` of the conference's organization.
"""

from __future__ import annotations

from parley_common.contracts.base import Payload


class Admission(Payload, frozen=True):
    """Who decides on joins: the subject asked and the resource it is asked about (a room id)."""

    subject: str
    resource: str


class CreateGuardedConference(Payload, frozen=True):
    conference_id: str
    organization_id: str
    admission: Admission
    # e.g. {"roomId": ..., "name": ...}: shown as the conference's metadata.
    metadata: dict[str, str] = {}


class EndGuardedConference(Payload, frozen=True):
    conference_id: str
    organization_id: str
    reason: str | None = None
