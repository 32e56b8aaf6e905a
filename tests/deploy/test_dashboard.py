"""deploy/grafana/parley.json: valid, and every metric it queries is one the code defines.

The defined metrics are read from prometheus_client's registry after importing every Parley module that
uses prometheus_client (so a metric added anywhere counts, and one renamed breaks this test), with the
names each family's samples take (`_total`, `_bucket`, `_info`...), plus the process collector's.
"""

from __future__ import annotations

import importlib
import json
import re

from prometheus_client import REGISTRY

from tests.deploy._support import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "parley.json"
# Metric names in a PromQL expression (Parley's own and the process collector's).
_NAME = re.compile(r"\b((?:parley|process)_[a-z0-9_]+)\b")
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "info": ("_info",),
}


def _modules_using_prometheus() -> list[str]:
    modules = []
    for root in (ROOT / "libs", ROOT / "services"):
        for path in root.glob("*/src/**/*.py"):
            if "prometheus_client" in path.read_text():
                src = next(p for p in path.parents if p.name == "src")
                modules.append(".".join(path.relative_to(src).with_suffix("").parts))
    return modules


def defined_metric_names() -> set[str]:
    for module in _modules_using_prometheus():
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        suffixes = _SUFFIXES.get(family.type, ("",))
        names |= {family.name + suffix for suffix in suffixes}
        names |= {sample.name for sample in family.samples}
    return names


def queries(dashboard: dict[str, object]) -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append(node["expr"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(dashboard)
    return found


def test_the_dashboard_is_one_grafana_dashboard_with_queries() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] == "Parley" and dashboard["uid"]
    assert [p.name for p in DASHBOARD.parent.glob("*.json")] == ["parley.json"]
    assert len(queries(dashboard)) >= 15
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_metric_the_dashboard_queries_is_defined_in_the_code() -> None:
    defined = defined_metric_names()
    assert {"parley_http_requests_total", "parley_media_forwarded_packets_total"} <= defined, "scan is broken"
    queried = {name for expr in queries(json.loads(DASHBOARD.read_text())) for name in _NAME.findall(expr)}
    unknown = queried - defined
    assert not unknown, f"the dashboard queries metrics no code defines: {sorted(unknown)}"


def test_the_check_catches_an_unknown_metric() -> None:
    """The comparison really compares: a misspelt metric is reported."""
    expr = "rate(parley_http_requets_total[5m])"
    assert set(_NAME.findall(expr)) - defined_metric_names() == {"parley_http_requets_total"}
