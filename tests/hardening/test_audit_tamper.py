"""A tampering DBA: every kind of change to the audit rows makes ``countersign audit verify`` exit 1.

The chain's logic is tested row by row in tests/store/test_audit.py (edit of every field, edit with a
recomputed hash, delete, delete of the last row, reorder, insert in the middle and after the head) and
the CLI's edit case in tests/store/test_cli.py. This adds the rest through the CLI, on both databases:
what an operator runs and what a cron job's exit code says.

Events are sealed into the chain by the service's sequencer; with no service running, as here,
``countersign audit seal`` does it before the tampering starts.

Two tampers are consistent from inside the database: cutting the tail and rewriting the head row to
match, and rewriting history with every hash recomputed (the hash rule is public). An anchor (a link
an earlier verify printed, kept outside the database) is what catches them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select, update

from bot.cli import main
from policy.sensitive import canonical_json
from store import create_engine, event_hash
from store.audit import format_at
from store.models import AuditEvent, AuditHead
from tests.dbsupport import BACKENDS, database_url_sync


@pytest.fixture(autouse=True)
def _tenants(cli_tenants: Path) -> None:
    """acme and globex have manifests."""


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url_sync(request.param, tmp_path) as db:
        yield db


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def _sql(url: str, *statements: object) -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.execute(statement)  # type: ignore[call-overload]
        finally:
            await engine.dispose()

    asyncio.run(run())


def _seal(capsys: pytest.CaptureFixture[str], url: str) -> None:
    assert _cli(capsys, "audit", "seal", "--database-url", url)[0] == 0


def _row(seq: int) -> object:
    return (AuditEvent.tenant == "acme") & (AuditEvent.seq == seq)


def _copy_of(url: str, seq: int) -> dict[str, object]:
    async def read() -> dict[str, object]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                row = (await conn.execute(select(AuditEvent).where(_row(seq)))).mappings().one()
                return dict(row)
        finally:
            await engine.dispose()

    return asyncio.run(read())


TAMPERS = {
    "edit the payload": lambda url: [update(AuditEvent).where(_row(3)).values(payload='{"prefix":"forged"}')],
    "edit the kind": lambda url: [update(AuditEvent).where(_row(2)).values(kind="tenant.key_revoked")],
    "delete a row": lambda url: [delete(AuditEvent).where(_row(3))],
    "delete the last row": lambda url: [delete(AuditEvent).where(_row(5))],
    "swap two rows": lambda url: [
        update(AuditEvent).where(_row(2)).values(seq=1000),
        update(AuditEvent).where(_row(4)).values(seq=2),
        update(AuditEvent).where(_row(1000)).values(seq=4),
    ],
    "insert a copy after the head": lambda url: [insert(AuditEvent).values({**_copy_of(url, 5), "seq": 6})],
    "replace a row with a copy of another": lambda url: [
        delete(AuditEvent).where(_row(3)),
        insert(AuditEvent).values({**_copy_of(url, 2), "seq": 3}),
    ],
}


@pytest.mark.parametrize("tamper", list(TAMPERS), ids=list(TAMPERS))
def test_audit_verify_exits_1_on_any_tamper(capsys: pytest.CaptureFixture[str], url: str, tamper: str) -> None:
    for _ in range(5):  # five events in acme's chain
        assert _cli(capsys, "tenant", "key", "create", "acme", "--database-url", url)[0] == 0
    _cli(capsys, "tenant", "key", "create", "globex", "--database-url", url)
    _seal(capsys, url)
    code, out = _cli(capsys, "audit", "verify", "acme", "--database-url", url)
    assert code == 0 and "ok: 5 events" in out
    _sql(url, *TAMPERS[tamper](url))
    code, out = _cli(capsys, "audit", "verify", "acme", "--database-url", url)
    assert code == 1 and "ok:" not in out and ("broken at seq" in out or "missing" in out), out
    assert _cli(capsys, "audit", "verify", "globex", "--database-url", url)[0] == 0  # other chains unaffected


def _anchor_line(out: str) -> str:
    [line] = [line for line in out.splitlines() if ": anchor " in line]
    return line


def test_cutting_the_tail_and_rewriting_the_head_is_caught_by_an_anchor(
    capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path
) -> None:
    for _ in range(5):
        assert _cli(capsys, "tenant", "key", "create", "acme", "--database-url", url)[0] == 0
    _seal(capsys, url)
    code, out = _cli(capsys, "audit", "verify", "acme", "--database-url", url)
    assert code == 0 and _anchor_line(out) == f"acme: anchor 5:{_copy_of(url, 5)['hash']}"
    anchors = tmp_path / "anchors.txt"  # what a cron job would keep outside the database
    anchors.write_text(out)
    _cli(capsys, "tenant", "key", "create", "acme", "--database-url", url)  # the chain grows: seq 6
    _seal(capsys, url)
    code, out = _cli(capsys, "audit", "verify", "acme", "--anchor-file", str(anchors), "--database-url", url)
    assert code == 0 and "1 anchor(s) hold, up to seq 5" in out, out
    fifth = _copy_of(url, 5)
    _sql(
        url,
        delete(AuditEvent).where(_row(6)),
        delete(AuditEvent).where(_row(5)),
        update(AuditHead).where(AuditHead.tenant == "acme").values(seq=4, hash=_copy_of(url, 4)["hash"]),
    )
    # From inside the database this is a consistent, shorter chain (the documented limit)...
    code, out = _cli(capsys, "audit", "verify", "acme", "--database-url", url)
    assert code == 0 and "ok: 4 events" in out
    # ...which the anchor kept outside it refuses.
    code, out = _cli(capsys, "audit", "verify", "acme", "--anchor-file", str(anchors), "--database-url", url)
    assert code == 1 and out.strip() == "acme: anchor seq 5 missing: the chain ends at seq 4 (tail cut)", out
    code, out = _cli(capsys, "audit", "verify", "acme", "--anchor", f"5:{fifth['hash']}", "--database-url", url)
    assert code == 1 and "tail cut" in out
    assert _cli(capsys, "audit", "verify", "acme", "--anchor", f"4:{fifth['prev_hash']}", "--database-url", url)[0] == 0


def test_history_rewritten_with_every_hash_recomputed_is_caught_by_an_anchor(
    capsys: pytest.CaptureFixture[str], url: str
) -> None:
    for _ in range(5):
        assert _cli(capsys, "tenant", "key", "create", "acme", "--database-url", url)[0] == 0
    _seal(capsys, url)
    code, out = _cli(capsys, "audit", "verify", "acme", "--database-url", url)
    anchor = _anchor_line(out)
    # A DBA who knows the (public) hash rule forges seq 3 and relinks everything after it.
    prev = _copy_of(url, 2)["hash"]
    statements: list[object] = []
    for seq in range(3, 6):
        row = _copy_of(url, seq)
        payload = json.loads(str(row["payload"])) | ({"prefix": "forged"} if seq == 3 else {})
        digest = event_hash(
            prev, tenant="acme", seq=seq, kind=str(row["kind"]), request_id=row["request_id"],
            actor=row["actor"], at=format_at(row["at"]), payload=payload,
        )  # fmt: skip
        values = {"prev_hash": prev, "hash": digest, "payload": canonical_json(payload)}
        statements.append(update(AuditEvent).where(_row(seq)).values(values))
        prev = digest
    statements.append(update(AuditHead).where(AuditHead.tenant == "acme").values(hash=prev))
    _sql(url, *statements)
    assert _cli(capsys, "audit", "verify", "acme", "--database-url", url)[0] == 0  # consistent from inside
    code, out = _cli(capsys, "audit", "verify", "acme", "--anchor", anchor.split()[-1], "--database-url", url)
    assert code == 1 and "anchor broken at seq 5" in out and "history rewritten" in out, out
    # An anchor below the forgery still holds: the chain is intact up to it.
    code, out = _cli(
        capsys, "audit", "verify", "acme", "--anchor", f"2:{_copy_of(url, 2)['hash']}", "--database-url", url
    )
    assert code == 0


def test_anchor_files_are_read_strictly(capsys: pytest.CaptureFixture[str], url: str, tmp_path: Path) -> None:
    for tenant in ("acme", "globex"):
        assert _cli(capsys, "tenant", "key", "create", tenant, "--database-url", url)[0] == 0
    _seal(capsys, url)
    outputs = [_cli(capsys, "audit", "verify", tenant, "--database-url", url)[1] for tenant in ("acme", "globex")]
    both = tmp_path / "both.txt"  # one file for every tenant: each verify uses its own lines
    both.write_text("# nightly anchors\n" + "".join(outputs))
    for tenant in ("acme", "globex"):
        code, out = _cli(capsys, "audit", "verify", tenant, "--anchor-file", str(both), "--database-url", url)
        assert code == 0 and "1 anchor(s) hold" in out, out
    garbage = tmp_path / "garbage.txt"
    garbage.write_text(outputs[0] + "acme: anchor 1:not-hex\n")
    code, out = _cli(capsys, "audit", "verify", "acme", "--anchor-file", str(garbage), "--database-url", url)
    assert code == 2 and "garbage.txt:3" in out
    code, out = _cli(capsys, "audit", "verify", "other", "--anchor-file", str(both), "--database-url", url)
    assert code == 2 and "no anchor for other" in out
    code, out = _cli(capsys, "audit", "verify", "acme", "--anchor", "1:abc", "--database-url", url)
    assert code == 2 and "not an anchor" in out
    code, out = _cli(capsys, "audit", "verify", "acme", "--anchor", _anchor_line(outputs[1]), "--database-url", url)
    assert code == 2 and "anchor of globex" in out
