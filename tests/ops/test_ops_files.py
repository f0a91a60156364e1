"""The shipped alert rules and Grafana dashboard: valid, and reading only metrics the service has."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from typing import Any

import jsonschema
import pytest

from tests.ops.exposition import ALERTS, alert_rules, dashboard, dashboard_exprs, metric_names, referenced_metrics

ALERT_TESTS = ALERTS.with_name("alerts.test.yaml")

# What Grafana needs of the dashboard to import it and draw every panel.
PANEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "title": {"type": "string", "minLength": 1},
        "gridPos": {
            "type": "object",
            "required": ["h", "w", "x", "y"],
            "properties": {
                "w": {"type": "integer", "minimum": 1, "maximum": 24},
                "x": {"type": "integer", "minimum": 0},
            },
        },
    },
    # A row only groups panels; every other panel draws targets, each a PromQL expression.
    "if": {"properties": {"type": {"const": "row"}}},
    "else": {
        "required": ["targets", "datasource"],
        "properties": {
            "targets": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["refId", "expr"],
                    "properties": {"expr": {"type": "string", "minLength": 1}, "refId": {"type": "string"}},
                },
            }
        },
    },
}
DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "uid", "panels", "schemaVersion"],
    "properties": {
        "uid": {"type": "string", "minLength": 1},
        "panels": {"type": "array", "minItems": 1, "items": PANEL_SCHEMA},
    },
}


def test_the_dashboard_is_valid_json_with_unique_panels() -> None:
    board = dashboard()
    jsonschema.validate(board, DASHBOARD_SCHEMA)
    ids = Counter(p["id"] for p in board["panels"])
    assert [i for i, n in ids.items() if n > 1] == []
    for panel in board["panels"]:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]


def test_the_schema_refuses_a_panel_without_an_expression() -> None:
    board = dashboard()
    broken = next(p for p in board["panels"] if p["type"] != "row")
    broken["targets"] = [{"refId": "A"}]
    with pytest.raises(jsonschema.ValidationError, match="'expr' is a required property"):
        jsonschema.validate(board, DASHBOARD_SCHEMA)


def test_every_alert_and_panel_reads_a_countersign_metric() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {
        "CountersignOutboxStuck",
        "CountersignOutboxBacklogNotShrinking",
        "CountersignPendingNearDeadline",
        "CountersignSlaBreachRate",
        "CountersignSlackErrorRate",
        "CountersignTaskRestarting",
    }
    for expr in [str(r["expr"]) for r in rules] + dashboard_exprs(dashboard()):
        names = metric_names(expr)
        assert names and all(n.startswith("countersign_") for n in names), (expr, names)
    assert "countersign_task_restarts_total" in referenced_metrics()


def test_metric_names_are_read_loosely_but_correctly() -> None:
    expr = (
        'sum by (method) (rate(countersign_slack_api_errors_total{error!="ratelimited"}[5m])) '
        "/ sum by (method) (rate(countersign_slack_api_call_duration_seconds_count[5m])) > 0.05 "
        "and countersign_outbox_backlog offset 15m"
    )
    assert metric_names(expr) == {
        "countersign_slack_api_errors_total",
        "countersign_slack_api_call_duration_seconds_count",
        "countersign_outbox_backlog",
    }


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus); .ci/run installs it")
    # promtool as found on PATH, with our own fixed arguments.
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603


def test_promtool_accepts_the_alert_rules() -> None:
    checked = _promtool("check", "rules", str(ALERTS))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_alerts_fire_on_the_series_they_watch() -> None:
    """promtool's rule unit tests (alerts.test.yaml): each alert fires on a bad series, not on a good one."""
    tested = _promtool("test", "rules", str(ALERT_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
