"""Policy versions: the manifest served is stored as numbered versions, once whatever the replicas, and every
request, its audit events and its decision carry the version in force; `countersign policy` reads them back."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from countersign_client import ApprovalRequest

from bot.cli import main
from bot.ids import ActionId
from bot.runtime import Runtime
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.testing import running_emulator
from bot.service.policyversions import PolicyFollower, record_versions
from policy import load_text
from store.audit import AuditRecord
from store.models import PolicyVersion
from store.policyversions import NewVersion
from store.uow import uow
from tests.dbsupport import POSTGRES_SKIP_REASON, database_url, postgres_url
from tests.e2e.conftest import ADA, TIER1, Stack, eventually, running_stack, settings_for
from tests.hitl.helpers import hitl

ACME = "acme-support"
THRESHOLD = "if: amount > 500"
EDITED = "if: amount > 600"


def refund(amount: int, order_id: str) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4111",
            "order_id": order_id}  # fmt: skip


async def versions(stack: Stack, tenant: str = ACME) -> list[PolicyVersion]:
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        return list(await tx.policy_versions.history(tenant))


async def version_events(stack: Stack, tenant: str = ACME) -> list[AuditRecord]:
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        return [e for e in await tx.audit.recent(tenant, limit=500) if e.kind == "policy.version"]


async def created_event(stack: Stack, request_id: str) -> AuditRecord:
    [event] = [e for e in await stack.audit(ACME, request_id) if e.kind == "request.created"]
    return event


async def serving(stack: Stack, version: int) -> None:
    async def probe() -> bool:
        return stack.runtime.policies.version(ACME) == version

    await eventually(probe, what=f"version {version} to be served", timeout=20)


def edit_threshold(manifests: Path) -> None:
    path = manifests / f"{ACME}.yaml"
    text = path.read_text()
    assert THRESHOLD in text
    path.write_text(text.replace(THRESHOLD, EDITED))


async def countersign(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``countersign ARGS`` in a thread (it runs its own event loop): exit status, stdout, stderr."""
    capsys.readouterr()
    code = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_fresh_start_records_version_1_and_a_restart_with_the_same_file_none(
    db_url: str, manifests: Path
) -> None:
    async with running_stack(db_url, manifests) as stack:
        [first] = await versions(stack)
        assert (first.number, first.source, first.file) == (1, "file", str(manifests / f"{ACME}.yaml"))
        assert first.manifest == (manifests / f"{ACME}.yaml").read_text()  # the file as served, to the byte
        assert (first.note, first.proposed_by, first.approved_by) == ("first version", None, None)
        status, body = await stack.agent().ask("process_refund", refund(120, "small"))
        assert (status, body["status"], body["decision"]["policy_version"]) == (200, "auto_approved", 1)
        assert (await created_event(stack, body["id"])).payload["policy_version"] == 1
        [event] = await version_events(stack)
        assert (event.actor, event.payload["policy_version"], event.payload["sha256"]) == (
            "manifest", 1, first.sha256
        )  # fmt: skip
    async with running_stack(db_url, manifests) as stack:
        assert [v.number for v in await versions(stack)] == [1]
        assert len(await version_events(stack)) == 1
        assert stack.runtime.policies.version(ACME) == 1
        status, body = await stack.agent().ask("process_refund", refund(120, "after-restart"))
        assert body["decision"]["policy_version"] == 1


async def test_an_edited_file_is_version_2_for_the_next_request_and_the_older_one_keeps_1(
    stack: Stack, manifests: Path
) -> None:
    agent = stack.agent()
    _, older = await agent.ask("process_refund", refund(620, "older"))
    assert older["status"] == "pending"

    edit_threshold(manifests)
    await serving(stack, 2)
    [first, second] = await versions(stack)
    assert (second.number, second.source, second.note) == (2, "file", "+1 -1 lines against version 1")
    assert EDITED in second.manifest and THRESHOLD in first.manifest

    _, newer = await agent.ask("process_refund", refund(550, "newer"))  # auto-approved by version 2 alone
    assert (newer["status"], newer["decision"]["policy_version"]) == ("auto_approved", 2)
    decision = ApprovalRequest.from_json(newer).decision  # the agent client reads it too
    assert decision is not None and decision.policy_version == 2
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        rows = [await tx.requests.get_or_raise(ACME, r["id"]) for r in (older, newer)]
    assert [r.policy_version for r in rows] == [1, 2]
    assert (await created_event(stack, newer["id"])).payload["policy_version"] == 2

    # The older request is decided now: its decision names the version it was recorded under, and the
    # decision's audit event the version in force when it was decided.
    assert (await created_event(stack, older["id"])).payload["policy_version"] == 1
    await stack.slack.click(ADA, channel=TIER1, action_id=ActionId.APPROVE, text=older["id"])
    status, decided = await agent.call("GET", f"/v1/requests/{older['id']}", wait=10)
    assert (status, decided["status"], decided["decision"]["policy_version"]) == (200, "approved", 1)
    trail = await stack.audit(ACME, older["id"])
    [event] = [e for e in trail if e.kind == "request.decided"]
    assert event.payload["policy_version"] == 2
    # Every event records the version in force when it happened: the click as much as the decision.
    assert {e.kind: e.payload.get("policy_version") for e in trail} == {
        "request.created": 1, "vote.cast": 2, "request.decided": 2,
    }  # fmt: skip
    await hitl(stack, ADA, "pool away support_tier_1")
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        [away] = [e for e in await tx.audit.recent(ACME, limit=20) if e.actor == ADA and e.request_id is None]
    assert away.payload["policy_version"] == 2, away

    # A comment-only edit is another text: a version of its own (what `policy export` gives back changed).
    path = manifests / f"{ACME}.yaml"
    path.write_text(path.read_text() + "# reviewed by finance\n")
    await serving(stack, 3)
    assert stack.runtime.policies.version("platform") == 1  # untouched tenants keep theirs


async def test_policy_export_diff_and_versions(
    stack: Stack, manifests: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_threshold(manifests)
    await serving(stack, 2)
    url = ("--database-url", db_url)

    code, out, _ = await countersign(capsys, "policy", "export", ACME, *url)
    assert code == 0 and out == (manifests / f"{ACME}.yaml").read_text()
    code, out, _ = await countersign(capsys, "policy", "export", ACME, "--version", "1", *url)
    exported, problems = load_text(out, file="export.yaml")
    assert code == 0 and exported is not None and not [p for p in problems if p.severity == "error"]
    [first, _] = await versions(stack)
    original, _ = load_text(first.manifest)
    assert original is not None and exported.manifest == original.manifest  # round-trips: the same manifest
    assert exported.manifest != stack.runtime.policies.get(ACME).manifest

    code, out, _ = await countersign(capsys, "policy", "diff", ACME, "1", "2", *url)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"--- {ACME} version 1 (file, {manifests / ACME}.yaml, ")
    assert lines[1].startswith(f"+++ {ACME} version 2 (file, {manifests / ACME}.yaml, ")
    assert f"-    {THRESHOLD}" in lines and f"+    {EDITED}" in lines
    assert len([line for line in lines if line[:1] in "+-"]) == 4  # the two headers and the changed line

    code, out, _ = await countersign(capsys, "policy", "versions", ACME, *url)
    assert code == 0
    rows = out.splitlines()
    assert rows[0].split()[:3] == ["version", "source", "created"]
    assert rows[1].split()[:2] == ["1", "file"] and rows[1].endswith("first version")
    assert rows[2].split()[:2] == ["2", "file"] and rows[2].endswith("+1 -1 lines against version 1")
    assert first.sha256[:12] in rows[1]

    code, out, err = await countersign(capsys, "policy", "export", ACME, "--version", "7", *url)
    assert (code, out) == (2, "") and "has no policy version 7 (versions 1 to 2)" in err
    code, _, err = await countersign(capsys, "policy", "diff", ACME, "1", "9", *url)
    assert code == 2 and "has no policy version 9" in err
    code, _, err = await countersign(capsys, "policy", "versions", "nobody", *url)
    assert code == 2 and "unknown tenant 'nobody'" in err


async def test_hitl_policy_says_which_version_serves_and_who_may_change_it(stack: Stack) -> None:
    text = await hitl(stack, ADA, "policy")
    assert "Version 1. Admins may propose changes from Slack." in text
    text = await hitl(stack, "U0HAL", "policy")  # platform: self_service: false
    assert "Version 1. Policy is changed only in the manifest file (self_service: false)." in text


async def test_replicas_starting_at_once_record_one_version(tmp_path: Path, manifests: Path) -> None:
    if postgres_url() is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    async with (
        database_url("postgres", tmp_path) as url,
        running_emulator(EmulatorConfig(), load_seed(manifests)) as emu,
        AsyncExitStack() as resources,
    ):
        settings = settings_for(emu, url, manifests)
        replicas = await asyncio.gather(*(Runtime.build(settings) for _ in range(3)))
        for runtime in replicas:
            resources.push_async_callback(runtime.stop)
        assert {r.policies.version(ACME) for r in replicas} == {1}
        sessionmaker = replicas[0].sessionmaker
        async with uow(sessionmaker, read_only=True) as tx:
            assert [v.number for v in await tx.policy_versions.history(ACME)] == [1]
            assert len([e for e in await tx.audit.recent(ACME) if e.kind == "policy.version"]) == 1

        # An edit every replica records at once (each on its own reload): one version 2, one audit event.
        edit_threshold(manifests)
        edited, _ = load_text((manifests / f"{ACME}.yaml").read_text(), file=str(manifests / f"{ACME}.yaml"))
        assert edited is not None
        stamped = await asyncio.gather(
            *(record_versions(r.sessionmaker, [edited], r.clock.now(), served=r.policies.tenants) for r in replicas)
        )
        assert {s[ACME].version for s in stamped} == {2}
        async with uow(sessionmaker, read_only=True) as tx:
            assert [v.number for v in await tx.policy_versions.history(ACME)] == [1, 2]
            assert len([e for e in await tx.audit.recent(ACME) if e.kind == "policy.version"]) == 2


async def test_a_replica_whose_copy_of_a_file_is_older_never_rolls_the_policy_back(
    db_url: str, manifests: Path
) -> None:
    """Another replica read the edited file and recorded it (version 2); this one's copy is still the old text
    (config volumes sync a minute apart). A reload here, for another tenant's edit, takes only that tenant's
    file: the old text is not recorded as version 3, and version 2 stays served here and everywhere."""
    async with running_stack(db_url, manifests, manifest_poll_seconds=0) as stack:
        policies = stack.runtime.policies
        first = policies.tenants[ACME]
        newer = first.text.replace(THRESHOLD, EDITED)
        async with uow(stack.runtime.sessionmaker) as tx:
            new = NewVersion(ACME, newer, source="file", file=first.source)
            assert (await tx.policy_versions.record(new, now=stack.runtime.clock.now())).number == 2
        await serving(stack, 2)
        platform_version = policies.version("platform")

        platform = manifests / "platform" / "policy.yaml"
        platform.write_text(platform.read_text() + "\n# touched\n")
        assert stack.runtime.manifest_watcher is not None
        stack.runtime.manifest_watcher.poke()

        async def platform_reloaded() -> bool:
            return policies.version("platform") != platform_version

        await eventually(platform_reloaded, what="platform's edit taken")
        async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
            assert [v.number for v in await tx.policy_versions.history(ACME)] == [1, 2]
        assert policies.version(ACME) == 2 and EDITED in policies.tenants[ACME].text


async def test_a_stored_version_that_no_longer_loads_is_logged_once_not_every_second(
    db_url: str, manifests: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Only a newer loader could refuse a stored version (each was validated before it was stored): the
    follower keeps serving the last one that loads and says so once, not on each of its polls."""
    async with running_stack(db_url, manifests) as stack:
        async with uow(stack.runtime.sessionmaker) as tx:
            broken = NewVersion(ACME, f"tenant: {ACME}\nactions: {{pay: {{if: 'amount >'}}}}\n", source="slack")
            assert await tx.policy_versions.append(broken, number=2, now=stack.runtime.clock.now())

        def refusals() -> int:
            return sum("does not load" in r.getMessage() for r in caplog.records)

        async def refused() -> bool:
            return refusals() >= 1

        with caplog.at_level(logging.ERROR, logger="bot.service.policyversions"):
            await eventually(refused, what="the service's follower to refuse version 2")
            follower = PolicyFollower(stack.runtime.sessionmaker, stack.runtime.policies)
            for _ in range(3):
                assert await follower.catch_up() == []
            await asyncio.sleep(1.5)  # the service's own follower polls once a second
        assert refusals() == 2  # once by the service's follower, once by this one
        assert stack.runtime.policies.version(ACME) == 1


async def test_a_lagging_copy_that_catches_up_step_by_step_records_nothing_but_a_revert_does(
    db_url: str, manifests: Path
) -> None:
    """Another replica took two edits (versions 2 and 3). This one's copy then moves to the first of them:
    an older text, not recorded again as the newest. Once this replica has read the latest, going back to
    that text is an operator's revert, and it is recorded."""
    async with running_stack(db_url, manifests, manifest_poll_seconds=0) as stack:
        policies, path = stack.runtime.policies, manifests / f"{ACME}.yaml"
        f1 = path.read_text()
        f2, f3 = f1.replace(THRESHOLD, "if: amount > 600"), f1.replace(THRESHOLD, "if: amount > 700")
        async with uow(stack.runtime.sessionmaker) as tx:
            for text in (f2, f3):
                await tx.policy_versions.record(NewVersion(ACME, text, source="file"), now=stack.runtime.clock.now())
        await serving(stack, 3)

        async def reload_with(text: str) -> None:
            path.write_text(text)
            assert stack.runtime.manifest_watcher is not None
            stack.runtime.manifest_watcher.poke()
            await asyncio.sleep(0.3)  # the poke's reload: nothing to wait on when it rightly does nothing

        await reload_with(f2)
        await reload_with(f3)
        assert [v.number for v in await versions(stack)] == [1, 2, 3] and policies.version(ACME) == 3
        await reload_with(f2)  # this replica read version 3's text: back to version 2's is a revert
        await serving(stack, 4)
        assert (await versions(stack))[-1].manifest == f2 and "amount > 600" in policies.tenants[ACME].text
