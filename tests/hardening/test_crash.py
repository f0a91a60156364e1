"""kill -9 in the middle of a burst of requests with clicks in flight; restart; nothing accepted is lost.

``countersign serve`` runs as a subprocess against the emulator. While agents send a burst of
requests and reviewers click the cards as they appear, the process is killed with SIGKILL. After a
restart on the same database:

- every request the API accepted (answered 200/202) exists, and its card is posted, once;
- every click Slack got an ack for is counted, exactly once (a click in flight at the kill was not
  acknowledged: Slack shows the reviewer an error, and the card still has its buttons);
- the outbox drains (nothing pending, leased or failed);
- a deadline that fell due while the service was down fires.

The dead process's outbox leases are not renewed any more and run out within 10 s: the restarted
service takes its items over once they have (nothing here expires them early), and delivers each
again only if it was in flight at the kill (every other one was acknowledged as it was delivered).
The ``soak`` variant sends 500 requests.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from bot.ids import ActionId
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.testing import SlackDriver, message_text, running_emulator
from store.engine import create_engine
from tests.serviceproc import cli, free_port, serve, service_env

CARD_ID = re.compile(r"Request `([0-9a-f]+)`")
HIVE, FIRST, SECOND = "C0HIVE", "C0FIRST", "C0SECOND"
MEMBERS = [f"U0H{i:03d}" for i in range(1, 4)]
MANIFEST = f"""
tenant: crash
pools:
  hive: {{channel: {HIVE}, members: [{", ".join(MEMBERS)}]}}
  first: {{channel: {FIRST}, members: [U0ONE]}}
  second: {{channel: {SECOND}, members: [U0TWO]}}
actions:
  change: {{reviewer_pool: hive}}
  deploy: {{reviewer_pool: first, fallback: second, timeout: DEADLINEs}}
"""


async def _db(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql), params)
            return [tuple(r) for r in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


async def _crash_and_recover(db_url: str, tmp_path: Path, n: int) -> None:
    patience = 30 if n <= 200 else 90
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    # The deploy's deadline must fall after the kill: the burst of 500 takes longer than the burst of 200.
    (manifests / "crash.yaml").write_text(MANIFEST.replace("DEADLINE", "4" if n <= 200 else "20"))
    async with running_emulator(EmulatorConfig(), load_seed(manifests)) as emu:
        slack = SlackDriver(emu, timeout=patience)
        env = service_env(emu, db_url, manifests)
        log = tmp_path / "serve.log"
        key = (await cli(env, "tenant", "key", "create", "crash")).strip().splitlines()[-1]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        emu.config.bot_url = base + "/slack/events"
        headers = {"Authorization": f"Bearer {key}"}
        accepted: dict[str, int] = {}
        acked: list[tuple[str, str]] = []  # (card ts, user) of every click Slack got a 200 ack for
        killed = asyncio.Event()

        async with serve(env, port, log) as proc, aiohttp.ClientSession() as http:
            async with http.post(base + "/v1/requests", json={"action": "deploy", "params": {}}, headers=headers) as r:
                assert r.status == 202
                deploy_id = (await r.json())["id"]
            await slack.wait_for_message(FIRST, action_id=ActionId.APPROVE)
            gate = asyncio.Semaphore(25)

            async def ask(i: int) -> None:
                async with gate:
                    if killed.is_set():
                        return
                    body = {"action": "change", "params": {"i": i}}
                    try:
                        async with http.post(base + "/v1/requests", json=body, headers=headers) as resp:
                            if resp.status in (200, 202):
                                accepted[(await resp.json())["id"]] = i
                            else:
                                raise AssertionError(f"HTTP {resp.status}: {await resp.text()}")
                    except aiohttp.ClientError:
                        return  # in flight at the kill: not accepted, nothing promised
                    if len(accepted) >= n // 2 and not killed.is_set():
                        os.kill(proc.pid, signal.SIGKILL)
                        killed.set()

            async def click(ts: str, user: str) -> None:
                delivery = await slack.click(user, channel=HIVE, action_id=ActionId.APPROVE, message_ts=ts)
                if delivery.ok:
                    acked.append((ts, user))

            async def reviewers() -> None:
                clicked: set[str] = set()
                clicks: list[asyncio.Task[None]] = []
                while not killed.is_set():
                    version = emu.core.version
                    for m in slack.messages(HIVE):
                        if m.ts not in clicked:
                            clicked.add(m.ts)
                            user = MEMBERS[len(clicked) % len(MEMBERS)]
                            clicks.append(asyncio.create_task(click(m.ts, user)))
                    await emu.wait_changed(version, 0.05)
                await asyncio.gather(*clicks)

            await asyncio.gather(*(ask(i) for i in range(n)), reviewers())
            await proc.wait()
        assert killed.is_set() and len(accepted) >= n // 2
        assert acked, "no click was acked before the kill: the test did not test clicks in flight"
        # The deploy's first deadline had not fired when the process died; it passes while nothing runs.
        [(deadline,)] = await _db(db_url, "SELECT deadline_at FROM request_stage WHERE request_id = :r", r=deploy_id)
        assert slack.messages(SECOND) == []
        if isinstance(deadline, str):  # SQLite hands back text
            deadline = datetime.fromisoformat(deadline)
        assert isinstance(deadline, datetime)
        await asyncio.sleep(max(0.0, (deadline.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds() + 0.2))

        async with serve(env, port, log), aiohttp.ClientSession() as http:

            def cards() -> dict[str, list[str]]:
                found: dict[str, list[str]] = {}
                for m in slack.messages(HIVE):
                    if match := CARD_ID.search(message_text(m)):
                        found.setdefault(match.group(1), []).append(m.ts)
                return found

            await slack.wait_until(lambda: set(accepted) <= set(cards()), what="a card for every request")
            posted = cards()
            for request_id in accepted:  # every accepted request exists
                async with http.get(f"{base}/v1/requests/{request_id}", headers=headers) as resp:
                    assert resp.status in (200, 202), request_id

            # The deadline that passed while the service was down fires now.
            await slack.wait_for_message(SECOND, text=deploy_id)
            async with http.get(f"{base}/v1/requests/{deploy_id}", headers=headers) as resp:
                escalated = await resp.json()
            assert escalated["stage"] == 1 and escalated["pool"] == "second", escalated

            # Every click Slack got an ack for is counted, once (the vote commits before the ack).
            by_ts = {ts: r for r, tss in posted.items() for ts in tss}
            votes = await _db(
                db_url,
                "SELECT request_id, actor FROM audit_event WHERE kind = 'vote.cast' UNION ALL "
                "SELECT request_id, actor FROM audit_unsealed WHERE kind = 'vote.cast'",  # sealed or not yet
            )
            per_vote = Counter((str(r), str(u)) for r, u in votes)
            assert max(per_vote.values(), default=0) <= 1
            assert sorted(per_vote) == sorted(await _db(db_url, "SELECT request_id, user_id FROM vote"))
            lost = [(by_ts[ts], user) for ts, user in acked if per_vote[(by_ts[ts], user)] == 0]
            assert lost == [], f"{len(lost)} of {len(acked)} acknowledged clicks were not counted"
            counted = [r for r, u in per_vote]
            assert len(counted) == len(set(counted))  # one approval each: approvals: 1

            # The outbox drains: nothing pending, leased or failed is left.
            async def outbox_left() -> list[tuple[object, ...]]:
                return await _db(db_url, "SELECT kind, attempts, last_error FROM outbox WHERE done_at IS NULL")

            loop = asyncio.get_running_loop()
            until = loop.time() + patience
            while (left := await outbox_left()) and loop.time() < until:
                await asyncio.sleep(0.1)
            assert left == []

            # A card whose post reached Slack but whose recording died with the process is found, not posted
            # again (read once the outbox is empty: no retry is left to post one late).
            duplicates = {r: ts for r, ts in cards().items() if len(ts) > 1}
            assert duplicates == {}, f"{len(duplicates)} cards posted twice"


async def test_kill_9_mid_burst_with_clicks_in_flight_loses_nothing(db_url: str, tmp_path: Path) -> None:
    await _crash_and_recover(db_url, tmp_path, 200)


@pytest.mark.soak
async def test_kill_9_mid_burst_of_500(db_url: str, tmp_path: Path) -> None:
    await _crash_and_recover(db_url, tmp_path, 500)
