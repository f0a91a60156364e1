"""Reading /metrics as Prometheus would, and the metric names the shipped alert rules and dashboard use."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import ROOT, Stack

ALERTS = ROOT / "ops" / "prometheus" / "alerts.yaml"
DASHBOARD = ROOT / "ops" / "grafana" / "countersign.json"

# The series a family of each type exposes (prometheus_client names families without these suffixes).
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}
_PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left"}
_PROMQL_WORDS |= {"group_right", "inf", "nan"}


async def scrape(stack: Stack) -> str:
    """GET /metrics of the running service."""
    async with stack.http.get(stack.url + "/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def value(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples called ``name`` whose labels include ``labels``; None when there is none."""
    found = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    ]
    return sum(found) if found else None


def label_values(text: str, name: str, label: str) -> set[str]:
    return {
        s.labels[label]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and label in s.labels
    }


def exposed_names(text: str) -> set[str]:
    """Every series name the exposition declares, with or without samples yet."""
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in _SUFFIXES.get(family.type, ("",))
    }


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, loosely: identifiers once strings, label matchers,
    ranges and grouping lists are gone, less functions (followed by ``(``) and keywords."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    tokens = re.findall(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\b(?!\s*\()", expr)
    return {t for t in tokens if t.lower() not in _PROMQL_WORDS}


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets and its template variables' queries."""
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict) and "label_values(" in query.get("query", ""):
            exprs.append(query["query"].split("(", 1)[1].split(",", 1)[0])
    return exprs


def referenced_metrics() -> set[str]:
    """The metric names the alert rules and the dashboard read."""
    exprs = [str(rule["expr"]) for rule in alert_rules()] + dashboard_exprs(dashboard())
    return set().union(*(metric_names(e) for e in exprs))
