"""The composition root: builds the whole service from Settings, starts it, stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.api.handlers import AgentApi
from bot.api.questions import QuestionApi
from bot.auditsink import AUDIT_SINK_TIMEOUT, audit_sink
from bot.clock import Clock, SystemClock
from bot.commands.service import CommandService
from bot.config import ConfigError, Settings
from bot.home.service import HomeService
from bot.manifestwatch import ManifestWatcher
from bot.metrics import Metrics
from bot.outbox.callbacks import CALLBACK_RETRY, CallbackDelivery
from bot.outbox.cards import CardDelivery
from bot.outbox.loop import OutboxWorker
from bot.outbox.notes import NoteDelivery
from bot.outbox.requester import RequesterDelivery
from bot.outbox.slackcalls import SlackCalls
from bot.policyset import PolicySet
from bot.ratelimit import RateLimiter
from bot.scheduler import DeadlineScheduler
from bot.server import build_web_app
from bot.service.auditstream import AuditStream
from bot.service.bulk import BulkApprovals
from bot.service.deadlines import DeadlineKeeper
from bot.service.edits import Edits
from bot.service.effects import Effect
from bot.service.intake import Intake
from bot.service.manifests import ManifestReloads, seed
from bot.service.policychanges import PolicyChanges
from bot.service.policyversions import PolicyFollower, record_versions
from bot.service.questions import Questions
from bot.service.receipts import Receipts
from bot.service.reveals import Reveals
from bot.service.reviews import Reviews
from bot.service.signals import Signals
from bot.service.transitions import Transitions
from bot.slack import workspace
from bot.slack.app import build_bolt_app
from bot.slack.calltrace import slack_call_trace
from bot.slack.home import HomeRefresher
from bot.supervisor import Supervisor
from policy import TenantPolicy
from store.audit import Sequencer
from store.audit.log import bind_policy_versions
from store.delegations import bind_clock
from store.engine import create_engine, make_sessionmaker
from store.migrate import upgrade

log = logging.getLogger(__name__)


class CountedRateLimitRetry(AsyncRateLimitErrorRetryHandler):
    """slack-sdk's 429 handler (waits Retry-After, retries once), counting each wait in the metrics."""

    def __init__(self, metrics: Metrics | None, max_retry_count: int = 1) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.metrics = metrics

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if self.metrics is not None and response is not None:
            self.metrics.ratelimited(request.url.rstrip("/").rsplit("/", 1)[-1])
        await super().prepare_for_next_attempt_async(state=state, request=request, response=response, error=error)


SLACK_TIMEOUT = 30  # seconds for one Web API call (slack_sdk's default)
SHUTDOWN_GRACE = 3.0  # seconds a stop waits for requests in flight, then the deadline sweep, then background tasks


def slack_client(
    settings: Settings,
    metrics: Metrics | None = None,
    *,
    session: aiohttp.ClientSession | None = None,
    wait_on_ratelimit: bool = True,
) -> AsyncWebClient:
    """The Web API client: the bot token, the API base URL (an emulator's, if set) and retry handlers.

    With ``session``, every call goes through it (its connection pool, keep-alive); without, slack_sdk
    opens a session, and a connection, per call. ``wait_on_ratelimit``: a 429 is waited out and tried
    once more (Bolt's listeners, which have no queue to come back to); the outbox's client leaves it to
    the worker, which reschedules the item for Slack's ``Retry-After`` (one strategy, counted once).
    """
    if settings.slack_bot_token is None:
        raise ConfigError("SLACK_BOT_TOKEN is not set")
    kwargs: dict[str, object] = {}
    if settings.slack_api_url:
        kwargs["base_url"] = settings.slack_api_url.rstrip("/") + "/"
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        session=session,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            *([CountedRateLimitRetry(metrics, max_retry_count=1)] if wait_on_ratelimit else []),
        ],
        **kwargs,  # type: ignore[arg-type]
    )


@dataclass
class Runtime:
    """The running service: every collaborator, built once in :meth:`build` and passed through constructors."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    policies: PolicySet
    signals: Signals
    metrics: Metrics
    transitions: Transitions
    intake: Intake
    reviews: Reviews
    keeper: DeadlineKeeper
    worker: OutboxWorker
    slack: SlackCalls  # the outbox's Web API calls (its own client: 429s reschedule, not wait)
    scheduler: DeadlineScheduler
    bolt: AsyncApp
    web_app: web.Application
    resources: contextlib.AsyncExitStack
    supervisor: Supervisor = field(default_factory=Supervisor)
    _runner: web.AppRunner | None = None
    url: str = ""
    auditstream: AuditStream | None = None
    manifests: ManifestReloads | None = None
    manifest_watcher: ManifestWatcher | None = None
    policy_follower: PolicyFollower | None = None

    @classmethod
    async def build(cls, settings: Settings, *, clock: Clock | None = None) -> Runtime:
        """Check the configuration, then migrate the database, load manifests and seed their pools.

        Everything that can be checked without the database is checked first, so a missing token
        or a broken manifest is reported before any database work.

        Raises:
            ConfigError: a required setting is missing.
            policy.ManifestError: a manifest is invalid (the service refuses to start).
        """
        if settings.slack_signing_secret is None and settings.slack_app_token is None:
            raise ConfigError("SLACK_SIGNING_SECRET is not set (needed to verify Slack's requests)")
        clock = clock or SystemClock()
        policies = PolicySet(settings.manifests_dir)
        metrics = Metrics((t, a) for t, p in policies.tenants.items() for a in p.manifest.actions)
        resources = contextlib.AsyncExitStack()
        try:
            # Slack's calls share a session of their own (keep-alive; agents' callback endpoints get another).
            # slack_sdk applies its timeout only to sessions it opens itself: this one carries it.
            slack_http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT), trace_configs=[slack_call_trace(metrics)]
            )
            resources.push_async_callback(slack_http.close)
            client = slack_client(settings, metrics, session=slack_http)
            outbox_client = slack_client(settings, metrics, session=slack_http, wait_on_ratelimit=False)
            # Slack before the database: a refused token or an unknown "#name" stops the start here.
            await workspace.check_token(client)
            channels = await workspace.resolve_channels(client, _pool_channels(policies.tenants.values()))
            engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
            resources.push_async_callback(engine.dispose)
            await upgrade(engine)
            sessionmaker = make_sessionmaker(engine)
            bind_clock(sessionmaker, clock.now)  # delegations in force depend on the (injected) time
            bind_policy_versions(sessionmaker, policies.version)  # every audit event records the version in force
            await seed(sessionmaker, list(policies.tenants.values()), channels, clock.now())
            policies.stamp(await record_versions(sessionmaker, list(policies.tenants.values()), clock.now()))
            http = aiohttp.ClientSession()
            resources.push_async_callback(http.close)
        except BaseException:
            await resources.aclose()
            raise
        auditstream = None
        if settings.audit_sink is not None:
            # Sealed audit events to a SIEM (docs/audit-streaming.md), over a session of their own.
            sink_http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=AUDIT_SINK_TIMEOUT))
            resources.push_async_callback(sink_http.close)
            sink = audit_sink(settings, sink_http)
            auditstream = AuditStream(engine, sink, now=clock.now, metrics=metrics) if sink is not None else None
        signals = Signals()
        transitions = Transitions(sessionmaker=sessionmaker, policies=policies, signals=signals, metrics=metrics)
        receipts = Receipts(sessionmaker=sessionmaker, policies=policies, clock=clock)
        intake = Intake(
            sessionmaker=sessionmaker, policies=policies, clock=clock, transitions=transitions, receipts=receipts
        )
        reviews = Reviews(sessionmaker=sessionmaker, policies=policies, clock=clock, transitions=transitions)
        # Bulk approvals vote through the cards' ballots: their clicks share its group commit.
        bulk = BulkApprovals(sessionmaker=sessionmaker, policies=policies, ballots=reviews.ballots)
        keeper = DeadlineKeeper(sessionmaker=sessionmaker, clock=clock, transitions=transitions)
        reveals = Reveals(policies=policies, clock=clock, transitions=transitions)
        # An edit's own approval is counted by the cards' ballots, in the edit's unit of work.
        edits = Edits(policies=policies, clock=clock, transitions=transitions, ballots=reviews.ballots)
        questions = Questions(sessionmaker=sessionmaker, policies=policies, clock=clock, transitions=transitions)

        async def resolve(tenants: Sequence[TenantPolicy]) -> Mapping[str, str]:
            return await workspace.resolve_channels(client, _pool_channels(tenants))

        manifests = ManifestReloads(
            sessionmaker=sessionmaker, policies=policies, transitions=transitions, clock=clock, metrics=metrics,
            resolve=resolve,
        )  # fmt: skip

        def learn_actions(served: TenantPolicy) -> None:
            # A policy version from Slack may add an action: it gets metric labels of its own.
            metrics.know((served.tenant, action) for action in served.manifest.actions)

        policy_changes = PolicyChanges(
            sessionmaker=sessionmaker, policies=policies, clock=clock, on_served=learn_actions
        )
        hitl = CommandService(sessionmaker=sessionmaker, policies=policies, clock=clock, changes=policy_changes)
        home = HomeService(sessionmaker=sessionmaker, policies=policies, clock=clock)
        slack = SlackCalls(outbox_client, metrics, channel_rate=settings.slack_channel_rate)
        worker = OutboxWorker(
            sessionmaker=sessionmaker,
            handlers=[
                CardDelivery(
                    sessionmaker=sessionmaker,
                    slack=slack,
                    policies=policies,
                    clock=clock,
                    on_unpostable=keeper.skip_stage,
                    metrics=metrics,
                ),
                NoteDelivery(sessionmaker=sessionmaker, slack=slack),
                RequesterDelivery(sessionmaker=sessionmaker, slack=slack, policies=policies),
                CallbackDelivery(sessionmaker=sessionmaker, http=http, clock=clock, metrics=metrics),
                HomeRefresher(home, slack.publish_home),
            ],
            signals=signals,
            clock=clock,
            retry_for={Effect.CALLBACK: CALLBACK_RETRY},
        )
        scheduler = DeadlineScheduler(keeper, signals, sweep_every=settings.sweep_every)
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""

        bolt = build_bolt_app(
            client=client, signing_secret=secret, service=reviews, hitl=hitl, home=home, metrics=metrics, bulk=bulk,
            questions=questions, reveals=reveals, edits=edits,
            policy_changes=policy_changes,
        )  # fmt: skip
        supervisor = Supervisor()
        metrics.watch_tasks(supervisor.snapshot)

        async def readiness() -> dict[str, str]:
            checks = {"manifests": "ok" if policies.tenants else "no tenants loaded"}
            try:
                async with engine.connect() as conn:
                    # The migrations table, not just SELECT 1: a database that lost its schema is not ready.
                    await conn.execute(text("SELECT version_num FROM alembic_version"))
                checks["database"] = "ok"
            except Exception as exc:  # any driver error means not ready
                checks["database"] = f"unreachable: {type(exc).__name__}"
            tasks = supervisor.status()
            checks["outbox_worker"] = tasks.get("outbox-worker", "not running")
            # Every other supervised loop too (the audit sequencer, the deadline watcher): a loop that
            # keeps crashing is "restarting", and the service is not ready.
            checks.update({name.replace("-", "_"): state for name, state in tasks.items() if name != "outbox-worker"})
            checks["scheduler"] = "ok" if scheduler.running else "not running"
            return checks

        async def exposition() -> bytes:
            await metrics.refresh(sessionmaker, clock.now())
            return metrics.exposition()

        limiter = RateLimiter(policies, now=lambda: clock.now().timestamp())
        api = AgentApi(
            intake, sessionmaker, limiter=limiter, metrics=metrics, key_cache_seconds=settings.api_key_cache_seconds
        )
        api.more_routes += QuestionApi(api, questions).routes()
        web_app = build_web_app(bolt=bolt, api=api, readiness=readiness, metrics=exposition, timings=metrics)
        return cls(
            settings=settings, clock=clock, engine=engine, sessionmaker=sessionmaker, policies=policies,
            signals=signals, metrics=metrics, transitions=transitions, intake=intake, reviews=reviews,
            keeper=keeper, worker=worker, slack=slack, scheduler=scheduler, bolt=bolt, web_app=web_app,
            resources=resources, supervisor=supervisor, auditstream=auditstream, manifests=manifests,
            manifest_watcher=ManifestWatcher(
                manifests, settings.manifests_dir, poll_seconds=settings.manifest_poll_seconds
            ),
            # Versions another replica records (a change approved there) are served here within a second.
            policy_follower=PolicyFollower(sessionmaker, policies, on_served=learn_actions),
        )  # fmt: skip

    async def start(self, host: str | None = None, port: int | None = None) -> str:
        """Serve HTTP and run the background workers; returns the base URL."""
        self.supervisor.start("outbox-worker", self.worker.run)
        self.supervisor.start("deadline-watch", self.scheduler.watch)
        if self.manifest_watcher is not None:
            # Manifest files edited on disk are served without a restart (SIGHUP asks for the same).
            self.supervisor.start("manifest-watch", self.manifest_watcher.run)
        if self.policy_follower is not None:
            self.supervisor.start("policy-follow", self.policy_follower.run)
        # Long polls on this replica learn of other replicas' decisions from one periodic read.
        self.supervisor.start("decision-watch", self.intake.watch_decisions)
        # Seals the audit events every unit of work inserts unsealed (one sequencer across replicas).
        self.supervisor.start("audit-sequencer", Sequencer(self.engine, now=self.clock.now).run)
        if self.auditstream is not None:
            # Streams sealed events to the configured sink (one stream across replicas, like the sequencer).
            self.supervisor.start("audit-sink", self.auditstream.run)
        if self.settings.slack_app_token is not None:
            # Socket Mode: Slack's events arrive over a WebSocket; the HTTP server still serves /v1 and health.
            # Supervised, not awaited here: a Slack that cannot be reached must not hold the start (or a stop).
            self.supervisor.start("socket-mode", self._socket_mode)
        self.scheduler.start()
        # In-flight requests get SHUTDOWN_GRACE to finish at a stop (long polls are answered at once).
        self._runner = web.AppRunner(self.web_app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host or self.settings.host, self.settings.port if port is None else port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.url = f"http://{host or self.settings.host}:{bound}"
        log.info("countersign serving on %s", self.url)
        return self.url

    async def stop(self) -> None:
        """Stop within 10 s, whatever is in flight: long polls answer now (the agent polls again,
        elsewhere), requests being handled get SHUTDOWN_GRACE, background tasks as long again to end
        their pass; what they had not finished is cancelled, and its leases run out so another replica
        (or the next start) delivers it: nothing acknowledged is lost."""
        self.signals.decisions.release_all()
        if self._runner is not None:
            await self._runner.cleanup()
        self.scheduler.stop()
        await self.scheduler.drain(SHUTDOWN_GRACE)
        await self.supervisor.close(timeout=SHUTDOWN_GRACE)
        await self.resources.aclose()

    async def _socket_mode(self, stop: asyncio.Event) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        assert self.settings.slack_app_token is not None
        handler = AsyncSocketModeHandler(self.bolt, self.settings.slack_app_token.get_secret_value())
        try:
            await handler.connect_async()  # type: ignore[no-untyped-call]
            await stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(handler.close_async(), SHUTDOWN_GRACE)  # type: ignore[no-untyped-call]


def _pool_channels(tenants: Iterable[TenantPolicy]) -> list[workspace.PoolChannel]:
    return [
        workspace.PoolChannel(tenant=tenant.tenant, pool=pool, channel=spec.channel)
        for tenant in tenants
        for pool, spec in tenant.manifest.pools.items()
        if spec.channel
    ]
