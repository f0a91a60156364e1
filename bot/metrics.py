"""Prometheus metrics, in a registry of the runtime's own (no module-level state).

Labels are bounded: tenants and pools come from the manifests and the store, actions from
the manifests (anything else is ``other``), Slack methods and error codes from a known set.
Never a request id.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.stats import gauges
from store.uow import uow

LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 4 * 3600, 24 * 3600)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, known_actions: Iterable[tuple[str, str]] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._actions = set(known_actions)
        r = self.registry
        self.requests = Counter(
            "countersign_requests", "Agent requests by what the policy or reviewers decided",
            ["tenant", "action", "outcome"], registry=r,
        )  # fmt: skip
        self.decision_latency = Histogram(
            "countersign_decision_latency_seconds", "From request to human decision",
            ["tenant", "pool"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.escalations = Counter("countersign_escalations", "Stages opened by a deadline", ["tenant"], registry=r)
        self.timeouts = Counter(
            "countersign_timeouts", "Requests decided by on_timeout", ["tenant", "outcome"], registry=r
        )
        self.sla_breaches = Counter(
            "countersign_sla_breaches", "Requests not decided within their first stage's time", ["tenant", "pool"],
            registry=r,
        )  # fmt: skip
        self.refused_clicks = Counter("countersign_refused_clicks", "Clicks that did not count", ["reason"], registry=r)
        self.slack_refused_requests = Counter(
            "countersign_slack_refused_requests", "Slack requests refused (bad signature, unknown button...)",
            ["reason"], registry=r,
        )  # fmt: skip
        self.slack_errors = Counter(
            "countersign_slack_api_errors", "Slack Web API errors", ["method", "error"], registry=r
        )
        self.slack_ratelimit_waits = Counter(
            "countersign_slack_ratelimit_waits", "429 answers from Slack (work rescheduled)", ["method"], registry=r
        )
        self.callbacks = Counter(
            "countersign_callback_deliveries", "Agent callback attempts", ["tenant", "result"], registry=r
        )
        self.intake_batch = Histogram(
            "countersign_intake_batch_size", "Agent submissions written per transaction (group commit)",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "countersign_queue_depth", "Pending requests by current pool", ["tenant", "pool"], registry=r
        )
        self.outbox_backlog = Gauge("countersign_outbox_backlog", "Undelivered outbox items", ["kind"], registry=r)
        self.outbox_oldest = Gauge(
            "countersign_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox item", registry=r
        )
        self.outbox_failed = Gauge("countersign_outbox_failed", "Outbox items given up on", ["kind"], registry=r)
        self.audit_events = Gauge(
            "countersign_audit_events", "Audit events appended, per tenant chain", ["tenant"], registry=r
        )

    def final(self, tenant: str, action: str, status: str) -> None:
        """A request reached its final state (counted once per request)."""
        self.requests.labels(tenant, self.action_label(tenant, action), status).inc()

    def decided(self, tenant: str, action: str, status: str, pool: str, seconds: float) -> None:
        """People (or a deadline) decided a request that was pending."""
        self.final(tenant, action, status)
        self.decision_latency.labels(tenant, pool).observe(max(seconds, 0.0))

    def refused(self, reason: str) -> None:
        self.refused_clicks.labels(reason).inc()

    def slack_refused(self, reason: str, count: int = 1) -> None:
        """``count`` refused Slack requests, counted when their (aggregated) audit event is written."""
        self.slack_refused_requests.labels(reason).inc(count)

    def slack_error(self, method: str, error: str) -> None:
        self.slack_errors.labels(method, error or "unknown").inc()

    def ratelimited(self, method: str) -> None:
        self.slack_ratelimit_waits.labels(method).inc()

    def callback(self, tenant: str, result: str) -> None:
        self.callbacks.labels(tenant, result).inc()

    def action_label(self, tenant: str, action: str) -> str:
        """The action as a label: only actions a manifest names, so agents cannot blow up cardinality."""
        return action if (tenant, action) in self._actions else "other"

    async def refresh(self, sessionmaker: async_sessionmaker[AsyncSession], now: datetime) -> None:
        """Read the gauges from the database (queue depth, outbox, audit) just before a scrape."""
        async with uow(sessionmaker, read_only=True) as tx:
            read = await gauges(tx.session)
        self.queue_depth.clear()
        for tenant, pool, count in read.queue_depth:
            self.queue_depth.labels(tenant, pool).set(count)
        self.outbox_backlog.clear()
        for kind, count, _ in read.outbox_backlog:
            self.outbox_backlog.labels(kind).set(count)
        ages = [(now - oldest).total_seconds() for _, _, oldest in read.outbox_backlog if oldest is not None]
        self.outbox_oldest.set(max(ages, default=0.0))
        self.outbox_failed.clear()
        for kind, count in read.outbox_failed:
            self.outbox_failed.labels(kind).set(count)
        for tenant, seq in read.audit_events:
            self.audit_events.labels(tenant).set(seq)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
