"""Signed decision receipts end to end (docs/receipts.md): a reviewer approves in Slack, the agent's long poll
carries the receipt, and the CLI and the agent client both accept it, and refuse it once expired, for params
changed by one byte, and under another tenant's key."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from countersign_client import AsyncCountersign, Countersign
from countersign_client.receipts import ReceiptInvalid, params_sha256, verify_receipt

from bot.cli import main
from bot.ids import ActionId
from tests.e2e.conftest import BEN, TIER1, Stack, refund


def cli(*argv: str) -> tuple[int, str]:
    """`countersign ...` in this process (its own event loop: call it from a thread)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def approved_by_ben(stack: Stack, params: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Ask, Ben approves on the card; the long poll's answer, and seconds from the click to that answer."""
    agent = stack.agent()
    status, created = await agent.ask("process_refund", params)
    assert (status, created["status"]) == (202, "pending")
    polling = asyncio.create_task(agent.call("GET", f"/v1/requests/{created['id']}", wait=30))
    await stack.slack.wait_for_message(TIER1, action_id=ActionId.APPROVE, text=f"order {params['order_id']}")
    await asyncio.sleep(0.2)  # the poll is parked
    clicked = time.perf_counter()
    await stack.slack.click(BEN, channel=TIER1, action_id=ActionId.APPROVE)
    status, answer = await polling
    return answer, time.perf_counter() - clicked


async def test_a_receipt_approves_these_params_until_it_expires_and_nothing_else(stack: Stack, tmp_path: Path) -> None:
    params = refund("R-1")
    answer, seconds = await approved_by_ben(stack, params)
    assert answer["status"] == "approved"
    receipt = answer["decision"]["receipt"]
    assert receipt is not None, "the long poll waits for the seal and carries the receipt"
    assert seconds < 2.5
    payload = receipt["payload"]
    assert payload["tenant"] == "acme-support" and payload["request_id"] == answer["id"]
    assert payload["outcome"] == "approved" and payload["deciders"] == [BEN]
    assert payload["params_sha256"] == answer["decision"]["params_sha256"]
    assert when(payload["expires_at"]) - when(answer["decision"]["at"]) <= timedelta(minutes=15)
    trail = await stack.audit("acme-support", answer["id"])
    assert [e.seq for e in trail if e.kind == "request.decided"] == [payload["audit_seq"]]

    # Stable: read again, the same bytes.
    _, again = await stack.agent().call("GET", f"/v1/requests/{answer['id']}")
    assert again["decision"]["receipt"] == receipt

    client = AsyncCountersign(stack.url, api_key=stack.keys["acme-support"])
    keys = await client.public_keys()
    await client.aclose()
    assert [k["kid"] for k in keys["keys"]] == [receipt["kid"]]
    other = Countersign(stack.url, api_key=stack.keys["platform"])
    other_keys = await asyncio.to_thread(other.public_keys)
    other.close()
    assert {k["tenant"] for k in other_keys["keys"]} == {"platform"}

    # The client.
    ok = verify_receipt(receipt, action="process_refund", params=params, public_keys=keys, tenant="acme-support")
    assert ok.request_id == answer["id"] and ok.deciders == (BEN,)
    expired_at = when(payload["expires_at"])
    one_byte = {**params, "order_id": "R-2"}
    refusals = {
        "expired": dict(params=params, public_keys=keys, now=expired_at),
        "params_mismatch": dict(params=one_byte, public_keys=keys),
        "unknown_key": dict(params=params, public_keys=other_keys),
    }
    for reason, kwargs in refusals.items():
        with pytest.raises(ReceiptInvalid) as refused:
            verify_receipt(receipt, action="process_refund", **kwargs)
        assert refused.value.reason == reason
    # Another tenant's key under this receipt's kid (someone swapped the key file): the signature fails.
    swapped = {"keys": [{**other_keys["keys"][0], "kid": receipt["kid"], "tenant": "acme-support"}]}
    with pytest.raises(ReceiptInvalid) as refused:
        verify_receipt(receipt, action="process_refund", params=params, public_keys=swapped)
    assert refused.value.reason == "bad_signature"

    # The CLI, offline with the keys file, and with the database's keys.
    (tmp_path / "resource.json").write_text(json.dumps(answer))
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    (tmp_path / "other-keys.json").write_text(json.dumps(other_keys))
    (tmp_path / "params.json").write_text(json.dumps(params))
    (tmp_path / "changed.json").write_text(json.dumps(one_byte))
    base = ("receipt", "verify", str(tmp_path / "resource.json"), "--action", "process_refund")
    offline = ("--keys", str(tmp_path / "keys.json"))
    database = ("--database-url", stack.runtime.settings.database_url)
    code, out = await asyncio.to_thread(cli, *base, "--params", str(tmp_path / "params.json"), *offline)
    assert code == 0 and out.startswith("ok: approved process_refund"), out
    code, out = await asyncio.to_thread(cli, *base, "--params", str(tmp_path / "params.json"), *database)
    assert code == 0, out
    cases = {
        "expired": ("--params", str(tmp_path / "params.json"), *offline, "--now", payload["expires_at"]),
        "params_mismatch": ("--params", str(tmp_path / "changed.json"), *offline),
        "unknown_key": ("--params", str(tmp_path / "params.json"), "--keys", str(tmp_path / "other-keys.json")),
        "wrong_tenant": ("--params", str(tmp_path / "params.json"), *database, "--tenant", "platform"),
    }
    for reason, extra in cases.items():
        code, out = await asyncio.to_thread(cli, *base, *extra)
        assert (code, out.split(":")[:2]) == (1, ["refused", f" {reason}"]), (reason, out)


async def test_a_receipt_signed_by_another_tenant_is_refused(stack: Stack, tmp_path: Path) -> None:
    """platform's key signs a receipt claiming acme-support (a forger holding platform's database row)."""
    from bot.service import receipt_format
    from bot.service.receipts import signing_key
    from store.uow import uow

    params = {"amount": 20, "currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4111", "order_id": "S-1"}
    _, created = await stack.agent().ask("process_refund", params, wait=5)
    assert created["status"] == "auto_approved"
    _, answer = await stack.agent().call("GET", f"/v1/requests/{created['id']}", wait=5)
    receipt = answer["decision"]["receipt"]
    assert receipt["payload"]["outcome"] == "auto_approved" and receipt["payload"]["deciders"] == ["policy"]
    async with uow(stack.runtime.sessionmaker) as tx:
        foreign = await signing_key(tx, "platform", now=stack.runtime.clock.now())
    forged = receipt_format.sign(receipt["payload"], kid=foreign.kid, private_key=foreign.private_key)
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    code, out = await asyncio.to_thread(
        cli, "receipt", "verify", str(tmp_path / "forged.json"), "--action", "process_refund",
        "--params-json", json.dumps(params), "--database-url", stack.runtime.settings.database_url,
    )  # fmt: skip
    assert code == 1 and out.startswith("refused: wrong_tenant"), out
    listed = {"keys": [{"kid": foreign.kid, "tenant": "platform", "public_key": foreign.public_key}]}
    with pytest.raises(ReceiptInvalid) as refused:
        verify_receipt(forged, action="process_refund", params=params, public_keys=listed)
    assert refused.value.reason == "wrong_tenant"
    with pytest.raises(ReceiptInvalid) as refused:  # the pinned key file names no tenant: --tenant catches it
        verify_receipt(
            forged, action="process_refund", params=params, public_keys={foreign.kid: foreign.public_key},
            tenant="platform",
        )  # fmt: skip
    assert refused.value.reason == "wrong_tenant"


async def test_the_cli_reads_the_receipt_from_standard_input(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`countersign receipt verify -`: an executor pipes the agent's answer in, whole or just its receipt."""
    params = refund("P-1")
    answer, _ = await approved_by_ben(stack, params)
    receipt = answer["decision"]["receipt"]
    client = AsyncCountersign(stack.url, api_key=stack.keys["acme-support"])
    (tmp_path / "keys.json").write_text(json.dumps(await client.public_keys()))
    await client.aclose()
    # Someone rewrites the receipt to cover a bigger refund: the digest matches those params, the signature does not.
    bigger = {**params, "amount": 6200}
    tampered = {**receipt, "payload": {**receipt["payload"], "params_sha256": params_sha256("process_refund", bigger)}}

    async def piped(document: Any, refund_params: dict[str, Any]) -> tuple[int, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(document)))
        return await asyncio.to_thread(
            cli, "receipt", "verify", "-", "--action", "process_refund",
            "--params-json", json.dumps(refund_params), "--keys", str(tmp_path / "keys.json"),
        )  # fmt: skip

    code, out = await piped(answer, params)  # the whole request resource, as the long poll answered it
    assert code == 0, out
    assert out.startswith(f"ok: approved process_refund for tenant acme-support (request {answer['id']})"), out
    assert "params match" in out
    code, out = await piped(receipt, params)  # the receipt alone
    assert code == 0 and out.startswith("ok: approved process_refund"), out
    code, out = await piped(tampered, bigger)
    assert (code, out.split(":")[:2]) == (1, ["refused", " bad_signature"]), out
    code, out = await piped(receipt, bigger)  # the untouched receipt does not cover the bigger refund either
    assert (code, out.split(":")[:2]) == (1, ["refused", " params_mismatch"]), out


async def test_with_the_sequencer_stopped_the_answer_goes_out_without_a_receipt(stack: Stack) -> None:
    from store.audit import Sequencer

    sequencer = stack.runtime.supervisor._tasks["audit-sequencer"].task
    assert sequencer is not None
    sequencer.cancel()
    answer, seconds = await approved_by_ben(stack, refund("D-1"))
    assert answer["status"] == "approved" and answer["decision"]["receipt"] is None
    assert seconds < 3  # the bounded wait for the seal (1 s), not a hang
    await Sequencer(stack.runtime.engine, now=stack.runtime.clock.now).seal_once()
    _, later = await stack.agent().call("GET", f"/v1/requests/{answer['id']}")
    assert later["decision"]["receipt"]["payload"]["request_id"] == answer["id"]


async def test_after_a_rotation_the_old_key_stays_listed_and_its_receipts_still_verify(stack: Stack) -> None:
    first, _ = await approved_by_ben(stack, refund("K-1"))
    old = first["decision"]["receipt"]
    code, out = await asyncio.to_thread(
        cli, "tenant", "receipt-key", "rotate", "acme-support", "--database-url", stack.runtime.settings.database_url
    )
    assert code == 0 and "now signs receipts with key" in out, out
    second, _ = await approved_by_ben(stack, refund("K-2"))
    new = second["decision"]["receipt"]
    assert new["kid"] != old["kid"]
    client = AsyncCountersign(stack.url, api_key=stack.keys["acme-support"])
    keys = await client.public_keys()
    await client.aclose()
    listed = {k["kid"]: k for k in keys["keys"]}
    assert listed[old["kid"]]["retired_at"] is not None and listed[new["kid"]]["retired_at"] is None
    assert when(listed[old["kid"]]["valid_until"]) == when(old["payload"]["expires_at"])
    for receipt, params in ((old, refund("K-1")), (new, refund("K-2"))):
        assert verify_receipt(receipt, action="process_refund", params=params, public_keys=keys).kid == receipt["kid"]
    # Once the old key's last receipt has expired, it is no longer listed.
    later = when(old["payload"]["expires_at"]) + timedelta(seconds=1)
    async with uow_of(stack) as tx:
        kids = [k.kid for k in await tx.receipts.keys(["acme-support"], now=later)]
    assert kids == [new["kid"]]


def uow_of(stack: Stack) -> Any:
    from store.uow import uow

    return uow(stack.runtime.sessionmaker, read_only=True)
