"""The health verdict: a decision over what the services reported, whatever is down."""

from __future__ import annotations

from parley_common.contracts.health import Dependency, ServiceHealth
from parley_gateway.health import HealthResponse, judge


def healthy(service: str, *dependencies: Dependency) -> ServiceHealth:
    return ServiceHealth(
        service=service,
        is_healthy=True,
        dependencies=[Dependency(name="nats", is_healthy=True), *dependencies],
    )


def listed(report: HealthResponse) -> dict[str, bool]:
    return {d.name: d.is_healthy for d in report.dependencies}


def test_nats_down_reports_nats_and_every_service_unhealthy() -> None:
    report = judge(False, {}, essential=("conference",), optional=("media",))
    assert report.status == "error" and report.is_live
    assert listed(report) == {"nats": False, "conference": False, "media": False}


def test_a_service_that_did_not_answer_is_unhealthy() -> None:
    report = judge(True, {"conference": None}, essential=("conference",), optional=())
    assert report.status == "error"
    assert listed(report) == {"nats": True, "conference": False}


def test_an_optional_service_down_is_a_warning() -> None:
    reports = {"conference": healthy("conference"), "media": None}
    report = judge(True, reports, essential=("conference",), optional=("media",))
    assert report.status == "warn"


def test_media_is_ready_only_once_the_conference_service_heard_a_node() -> None:
    """A node answering its health is not enough: a publish needs a node the conference service knows."""
    waiting = {
        "conference": healthy("conference", Dependency(name="media", is_healthy=False)),
        "media": healthy("media"),
    }
    report = judge(True, waiting, essential=("conference", "media"), optional=())
    assert report.status == "error"
    assert listed(report) == {"nats": True, "conference": True, "conference.media": False, "media": False}

    heard = {
        "conference": healthy("conference", Dependency(name="media", is_healthy=True)),
        "media": healthy("media"),
    }
    assert judge(True, heard, essential=("conference", "media"), optional=()).status == "ok"


def test_a_witness_for_an_unprobed_service_does_not_fail_the_reporter() -> None:
    """Without media in the probed services (a deployment's choice), the conference service stays ready."""
    reports = {"conference": healthy("conference", Dependency(name="media", is_healthy=False))}
    report = judge(True, reports, essential=("conference",), optional=())
    assert report.status == "ok"
    assert listed(report) == {"nats": True, "conference": True, "conference.media": False}


def test_a_service_own_verdict_counts() -> None:
    sick = ServiceHealth(
        service="snapshot", is_healthy=False, dependencies=[Dependency(name="storage", is_healthy=False)]
    )
    report = judge(True, {"snapshot": sick}, essential=("snapshot",), optional=())
    assert report.status == "error"
    assert listed(report) == {"nats": True, "snapshot": False, "snapshot.storage": False}
