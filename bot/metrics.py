"""Prometheus metrics, in a registry of the runtime's own (no module-level state).

Labels are bounded: tenants and pools come from the manifests and the store, actions from
the manifests (anything else is ``other``), Slack methods and error codes from a known set,
HTTP routes are patterns (never a path), reviewers are pool members (anyone else is ``other``).
Never a request id.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.stats import gauges
from store.uow import uow

LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 4 * 3600, 24 * 3600)
# Machine-side latencies (an HTTP answer, a Slack call, a click's ack, a card or callback on its way).
FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
UNMATCHED = "unmatched"  # the route label of every path no route serves
OTHER = "other"
# A supervised task, as /metrics shows it: (name, restarts so far, running now).
TaskStates = Callable[[], Iterable[tuple[str, int, bool]]]
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
        self.api_rate_limited = Counter(
            "countersign_api_rate_limited", "Agent API calls refused with 429, by the bucket that was empty",
            ["tenant", "scope"], registry=r,
        )  # fmt: skip
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
        # Set by the replica that streams (bot.service.auditstream); absent elsewhere and with no sink.
        self.audit_sink_lag = Gauge(
            "countersign_audit_sink_lag_events", "Sealed audit events the audit sink has not acknowledged yet",
            ["tenant"], registry=r,
        )  # fmt: skip
        self.audit_sink_failures = Counter(
            "countersign_audit_sink_failures", "Batches the audit sink did not acknowledge (sent again)", registry=r
        )

        def machine(name: str, doc: str, labels: list[str]) -> Histogram:
            return Histogram(name, doc, labels, buckets=FAST_BUCKETS, registry=r)

        self.http_duration = machine(
            "countersign_http_request_duration_seconds", "HTTP requests served, by route pattern and status",
            ["route", "method", "status"],
        )  # fmt: skip
        self.card_latency = machine(
            "countersign_request_to_card_seconds", "From an agent's request to its first card in Slack", ["tenant"]
        )
        self.ack_latency = machine(
            "countersign_click_to_ack_seconds", "From a Slack interaction's arrival to its acknowledgement", ["action"]
        )
        self.agent_latency = machine(
            "countersign_decision_to_agent_seconds", "From a decision to the agent having it (callback or long poll)",
            ["tenant", "via"],
        )  # fmt: skip
        self.slack_calls = machine(
            "countersign_slack_api_call_duration_seconds", "Slack Web API calls (every attempt), by method", ["method"]
        )
        self.pending_oldest = Gauge(
            "countersign_pending_oldest_age_seconds", "Age of the oldest pending request, by current pool",
            ["tenant", "pool"], registry=r,
        )  # fmt: skip
        self.pending_deadline = Gauge(
            "countersign_pending_next_deadline_seconds",
            "Seconds until the earliest deadline of a pending request's open stage, by pool (negative: overdue)",
            ["tenant", "pool"], registry=r,
        )  # fmt: skip
        self.reviewer_votes = Counter(
            "countersign_reviewer_votes", "Votes counted, per reviewer (pool members; anyone else is other)",
            ["tenant", "pool", "reviewer", "choice"], registry=r,
        )  # fmt: skip
        self.reviewer_latency = Histogram(
            "countersign_reviewer_vote_seconds", "From a stage opening (its card) to a reviewer's vote on it",
            ["tenant", "pool", "reviewer"], buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._tasks: TaskStates = list  # none until the runtime hands over its supervisor's
        r.register(_Tasks(lambda: self._tasks()))

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

    def rate_limited(self, tenant: str, scope: str) -> None:
        """An agent API call refused: ``scope`` is ``key`` or ``tenant``."""
        self.api_rate_limited.labels(tenant, scope).inc()

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """``route`` is the resource's pattern (``/v1/requests/{id}``) or :data:`UNMATCHED`, never a raw path."""
        method = method if method in HTTP_METHODS else OTHER
        self.http_duration.labels(route, method, str(status)).observe(max(seconds, 0.0))

    def card_posted(self, tenant: str, seconds: float) -> None:
        self.card_latency.labels(tenant).observe(max(seconds, 0.0))

    def acked(self, action: str, seconds: float) -> None:
        self.ack_latency.labels(action).observe(max(seconds, 0.0))

    def agent_told(self, tenant: str, via: str, seconds: float) -> None:
        """The agent has the decision: ``via`` is ``callback`` or ``long_poll``."""
        self.agent_latency.labels(tenant, via).observe(max(seconds, 0.0))

    def slack_call(self, method: str, seconds: float) -> None:
        self.slack_calls.labels(method).observe(max(seconds, 0.0))

    def reviewed(
        self, tenant: str, pool: str, user: str, members: Collection[str], choice: str, seconds: float
    ) -> None:
        """A counted vote: ``user`` is its own label only as one of ``members`` (the tenant's pools)."""
        reviewer = user if user in members else OTHER
        self.reviewer_votes.labels(tenant, pool, reviewer, choice).inc()
        self.reviewer_latency.labels(tenant, pool, reviewer).observe(max(seconds, 0.0))

    def watch_tasks(self, states: TaskStates) -> None:
        """Expose the supervised tasks' restarts and state, read from ``states`` at each scrape."""
        self._tasks = states

    def know(self, actions: Iterable[tuple[str, str]]) -> None:
        """Actions a reloaded manifest added get labels of their own from now on."""
        self._actions |= set(actions)

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
        self.pending_oldest.clear()
        self.pending_deadline.clear()
        for tenant, pool, created_at, deadline_at in read.pending_ages:
            self.pending_oldest.labels(tenant, pool).set((now - created_at).total_seconds())
            self.pending_deadline.labels(tenant, pool).set((deadline_at - now).total_seconds())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _Tasks(Collector):
    """The supervisor's restart counts and task states, read when scraped (the supervisor owns them)."""

    def __init__(self, states: TaskStates) -> None:
        self.states = states

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        restarts = CounterMetricFamily(
            "countersign_task_restarts", "Background task restarts after a crash", labels=["task"]
        )
        up = GaugeMetricFamily("countersign_task_up", "1 while a task runs, 0 waiting to restart", labels=["task"])
        for name, count, running in self.states():
            restarts.add_metric([name], count)
            up.add_metric([name], 1 if running else 0)
        yield restarts
        yield up
