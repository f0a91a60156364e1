"""`countersign db|tenant|audit` end to end on a real database (synchronous: the CLI runs its own loop)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.cli import main
from store import create_engine, head_revision, make_sessionmaker, uow
from store.audit import SYSTEM_CHAIN, NewEvent, append_system
from store.models import AuditEvent


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _tenants(cli_tenants):
    """acme and globex have manifests."""


def seal(capsys, url: str) -> str:
    """`audit seal`: what the service's sequencer does shortly after every write (no service runs here)."""
    code, out, _ = run(capsys, "audit", "seal", "--database-url", url)
    assert code == 0
    return out.strip()


def test_db_upgrade_on_a_fresh_database(capsys, sync_db_url):
    code, out, _ = run(capsys, "db", "upgrade", "--database-url", sync_db_url)
    assert code == 0 and f"at revision {head_revision()}" in out
    assert run(capsys, "db", "upgrade", "--url", sync_db_url)[0] == 0


def test_database_url_comes_from_the_environment(capsys, tmp_path, monkeypatch):
    url = f"sqlite+aiosqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", url)
    code, out, _ = run(capsys, "db", "upgrade")
    assert code == 0 and str(tmp_path / "env.db") in out


def test_key_lifecycle(capsys, sync_db_url):
    code, out, _ = run(capsys, "tenant", "key", "create", "acme", "--database-url", sync_db_url)
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert key.startswith("cs_acme_") and " " not in key

    async def authenticate() -> str | None:
        engine = create_engine(sync_db_url)
        try:
            async with uow(make_sessionmaker(engine)) as tx:
                return await tx.tenants.authenticate(key)
        finally:
            await engine.dispose()

    assert asyncio.run(authenticate()) == "acme"
    code, out, _ = run(capsys, "tenant", "key", "list", "acme", "--database-url", sync_db_url)
    assert code == 0 and "active" in out and key not in out
    code, out, _ = run(capsys, "tenant", "key", "revoke", "acme", key, "--database-url", sync_db_url)
    assert code == 0 and "revoked" in out
    assert asyncio.run(authenticate()) is None
    code, out, _ = run(capsys, "tenant", "key", "list", "acme", "--database-url", sync_db_url)
    assert "revoked 20" in out
    code, out, _ = run(capsys, "tenant", "key", "revoke", "acme", key, "--database-url", sync_db_url)
    assert code == 0 and "was already revoked 20" in out  # not "revoked" again
    code, _, err = run(capsys, "tenant", "key", "revoke", "acme", "nope", "--database-url", sync_db_url)
    assert code == 1 and "no API key" in err
    code, _, err = run(capsys, "tenant", "key", "create", "Bad Name", "--database-url", sync_db_url)
    assert code == 1 and "invalid tenant name" in err
    code, out, _ = run(capsys, "tenant", "key", "create", "acme", "--name", "refund-bot", "--database-url", sync_db_url)
    assert code == 0 and "agent 'refund-bot'" in out
    code, out, _ = run(capsys, "tenant", "key", "list", "acme", "--database-url", sync_db_url)
    assert out.splitlines()[0].endswith("NAME") and out.splitlines()[-1].endswith("refund-bot")
    code, _, err = run(capsys, "tenant", "key", "create", "acme", "--name", "<script>", "--database-url", sync_db_url)
    assert code == 1 and "invalid agent name" in err


def test_callback_secret_is_stable(capsys, sync_db_url):
    first = run(capsys, "tenant", "callback-secret", "acme", "--database-url", sync_db_url)
    second = run(capsys, "tenant", "callback-secret", "acme", "--database-url", sync_db_url)
    assert first[0] == second[0] == 0
    assert first[1] == second[1] and len(first[1].strip()) == 64


def test_audit_verify_and_export(capsys, sync_db_url):
    for _ in range(3):
        assert run(capsys, "tenant", "key", "create", "acme", "--database-url", sync_db_url)[0] == 0
    run(capsys, "tenant", "key", "create", "globex", "--database-url", sync_db_url)
    assert seal(capsys, sync_db_url) == "sealed 4 events"

    code, out, _ = run(capsys, "audit", "verify", "acme", "--database-url", sync_db_url)
    assert code == 0 and out.startswith("acme: ok: 3 events, head ")

    code, out, err = run(capsys, "audit", "export", "acme", "--database-url", sync_db_url)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [e["seq"] for e in lines] == [1, 2, 3] and {e["tenant"] for e in lines} == {"acme"}
    assert err.strip() == "exported 3 events"
    code, out, _ = run(
        capsys, "audit", "export", "acme", "--since", "2", "--format", "csv", "--database-url", sync_db_url
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["seq"] for r in rows] == ["2", "3"] and json.loads(rows[0]["payload"])["prefix"]
    code, out, _ = run(capsys, "audit", "export", "acme", "--since", "2000-01-01", "--database-url", sync_db_url)
    assert len(out.splitlines()) == 3
    code, out, _ = run(
        capsys, "audit", "export", "acme", "--since", "2999-01-01T00:00:00Z", "--database-url", sync_db_url
    )
    assert out == ""
    assert run(capsys, "audit", "export", "acme", "--since", "yesterday", "--database-url", sync_db_url)[0] == 2

    async def tamper() -> None:
        engine = create_engine(sync_db_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    update(AuditEvent).where(AuditEvent.tenant == "acme", AuditEvent.seq == 2).values(actor="evil")
                )
        finally:
            await engine.dispose()

    asyncio.run(tamper())
    code, out, _ = run(capsys, "audit", "verify", "acme", "--database-url", sync_db_url)
    assert code == 1 and out.strip() == "acme: broken at seq 2: hash mismatch (row edited or moved)"
    assert run(capsys, "audit", "verify", "globex", "--database-url", sync_db_url)[0] == 0
    code, _, err = run(capsys, "audit", "verify", "nobody", "--database-url", sync_db_url)
    assert code == 2 and "unknown tenant" in err


def test_audit_export_into_head_stops_quietly(
    capsys: pytest.CaptureFixture[str], sync_db_url: str, repo_root: Path
) -> None:
    """`countersign audit export acme | head -1`: the reader stops early, which is no error (docs/cli.md):
    the first line arrives, then nothing on standard error and exit 0, not a BrokenPipeError traceback."""
    assert run(capsys, "tenant", "key", "create", "acme", "--database-url", sync_db_url)[0] == 0

    async def append() -> None:
        engine = create_engine(sync_db_url)
        try:
            async with uow(make_sessionmaker(engine)) as tx:
                now, filler = datetime.now(UTC), {"note": "x" * 500}
                await tx.audit.append_many([NewEvent("acme", "vote.cast", now, filler, f"r{n}") for n in range(600)])
        finally:
            await engine.dispose()

    asyncio.run(append())  # far more than a pipe holds (64 KiB): the export is still writing when head exits
    assert seal(capsys, sync_db_url) == "sealed 601 events"
    export = f"{sys.executable} -m bot audit export acme --database-url '{sync_db_url}'"
    done = subprocess.run(  # noqa: S603
        ["/bin/sh", "-c", f'{{ {export}; echo "countersign exited $?" >&2; }} | head -1'],
        cwd=repo_root, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert json.loads(done.stdout)["seq"] == 1
    assert done.stderr == "countersign exited 0\n"  # no "Traceback", no "BrokenPipeError", no "exported" count


def test_the_system_chain_verifies_and_exports_like_a_tenant(capsys, sync_db_url):
    # Before anything was refused it is an empty chain, not an unknown tenant.
    assert run(capsys, "db", "upgrade", "--database-url", sync_db_url)[0] == 0  # a verify creates no database
    code, out, _ = run(capsys, "audit", "verify", SYSTEM_CHAIN, "--database-url", sync_db_url)
    assert code == 0 and out.startswith(f"{SYSTEM_CHAIN}: ok: 0 events")

    async def refuse() -> None:
        engine = create_engine(sync_db_url)
        try:
            for count in (1, 41):
                async with uow(make_sessionmaker(engine)) as tx:
                    payload = {"reason": "invalid_signature", "count": count}
                    await append_system(tx.session, "slack.refused", now=datetime.now(UTC), payload=payload)
        finally:
            await engine.dispose()

    asyncio.run(refuse())
    seal(capsys, sync_db_url)
    code, out, _ = run(capsys, "audit", "verify", SYSTEM_CHAIN, "--database-url", sync_db_url)
    assert code == 0 and out.startswith(f"{SYSTEM_CHAIN}: ok: 2 events, head ")
    anchor = out.splitlines()[-1].split()[-1]
    code, out, _ = run(capsys, "audit", "verify", SYSTEM_CHAIN, "--anchor", anchor, "--database-url", sync_db_url)
    assert code == 0 and "1 anchor(s) hold, up to seq 2" in out
    code, out, _ = run(capsys, "audit", "export", SYSTEM_CHAIN, "--database-url", sync_db_url)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(e["tenant"], e["kind"], e["payload"]["count"]) for e in lines] == [
        (SYSTEM_CHAIN, "slack.refused", 1),
        (SYSTEM_CHAIN, "slack.refused", 41),
    ]
    # No tenant can take the name: no keys, no secret, no pools for the system chain.
    code, _, err = run(capsys, "tenant", "key", "create", SYSTEM_CHAIN, "--database-url", sync_db_url)
    assert code == 1 and "invalid tenant name" in err


def test_audit_verify_prints_an_anchor_a_later_verify_can_check(capsys, sync_db_url, tmp_path):
    for _ in range(2):
        assert run(capsys, "tenant", "key", "create", "acme", "--database-url", sync_db_url)[0] == 0
    seal(capsys, sync_db_url)
    code, out, _ = run(capsys, "audit", "verify", "acme", "--database-url", sync_db_url)
    summary, anchor = out.splitlines()
    assert re.fullmatch(r"acme: ok: 2 events, head [0-9a-f]{12}", summary)
    assert re.fullmatch(r"acme: anchor 2:[0-9a-f]{64}", anchor) and anchor.split(":")[-1].startswith(summary[-12:])
    kept = tmp_path / "anchors"
    kept.write_text(out)
    code, out, _ = run(capsys, "audit", "verify", "acme", "--anchor-file", str(kept), "--database-url", sync_db_url)
    assert code == 0 and "acme: 1 anchor(s) hold, up to seq 2" in out
    code, _, err = run(
        capsys, "audit", "verify", "acme", "--anchor-file", str(tmp_path / "nope"), "--database-url", sync_db_url
    )
    assert code == 2 and "nope" in err


def test_audit_verify_reports_unsealed_events_and_fails_on_old_ones(capsys, sync_db_url):
    for _ in range(2):
        assert run(capsys, "tenant", "key", "create", "acme", "--database-url", sync_db_url)[0] == 0
    seal(capsys, sync_db_url)

    async def append(at: datetime, kind: str) -> None:
        engine = create_engine(sync_db_url)
        try:
            async with uow(make_sessionmaker(engine)) as tx:
                await tx.audit.append("acme", kind, now=at, request_id="r1")
        finally:
            await engine.dispose()

    # Just committed: pending, reported, not a failure even with a bound.
    asyncio.run(append(datetime.now(UTC), "request.created"))
    code, out, _ = run(capsys, "audit", "verify", "acme", "--max-unsealed", "60", "--database-url", sync_db_url)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("acme: ok: 2 events, head "), out
    assert re.fullmatch(r"acme: 1 event\(s\) not sealed yet, the oldest at \S+ \(\d+\.\d s ago\)", lines[1]), out
    assert lines[2].startswith("acme: anchor 2:")
    # Left unsealed for an hour (no sequencer ran): named, and exit 1 with a bound; only reported without.
    asyncio.run(append(datetime.now(UTC) - timedelta(hours=1), "vote.cast"))
    code, out, _ = run(capsys, "audit", "verify", "acme", "--database-url", sync_db_url)
    assert code == 0 and "acme: 2 event(s) not sealed yet" in out
    code, out, _ = run(capsys, "audit", "verify", "acme", "--max-unsealed", "60", "--database-url", sync_db_url)
    assert code == 1, out
    assert "acme: 1 event(s) unsealed for longer than 60 s:" in out
    assert re.search(r"^acme: unsealed event \d+ \(vote\.cast, request r1\) at ", out, re.MULTILINE), out
    assert "request.created" not in out
    with pytest.raises(SystemExit) as refused:
        run(capsys, "audit", "verify", "acme", "--max-unsealed", "soon", "--database-url", sync_db_url)
    assert refused.value.code == 2 and "--max-unsealed: invalid" in capsys.readouterr().err
    assert seal(capsys, sync_db_url) == "sealed 2 events"
    code, out, _ = run(capsys, "audit", "verify", "acme", "--max-unsealed", "0", "--database-url", sync_db_url)
    assert code == 0 and out.startswith("acme: ok: 4 events") and "unsealed" not in out


def test_commands_find_the_sandboxs_database_when_it_is_the_only_one_here(capsys, tmp_path, monkeypatch):
    """`countersign sandbox` keeps its data in ./.countersign; a key created next to it must work in it
    (for a tenant of the example manifests it runs on where there is no ./manifests)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COUNTERSIGN_DATABASE_URL", raising=False)
    monkeypatch.delenv("COUNTERSIGN_MANIFESTS")
    sandbox_db = tmp_path / ".countersign" / "countersign.db"
    sandbox_db.parent.mkdir()
    assert run(capsys, "db", "upgrade", "--database-url", str(sandbox_db))[0] == 0  # what the sandbox leaves
    code, out, err = run(capsys, "tenant", "key", "create", "acme-support")
    assert code == 0 and "using the sandbox's database .countersign/countersign.db" in err
    code, out, _ = run(capsys, "tenant", "key", "list", "acme-support", "--database-url", f"sqlite:///{sandbox_db}")
    assert code == 0 and out.count("active") == 1  # in the sandbox's database, reached with a plain sqlite:/// URL
    assert not (tmp_path / "countersign.db").exists()

    # With a ./countersign.db here too (made by an earlier command), that one is used, and it says so.
    assert run(capsys, "db", "upgrade", "--database-url", str(tmp_path / "countersign.db"))[0] == 0
    code, _, err = run(capsys, "tenant", "key", "list", "acme-support")
    assert "using ./countersign.db; the sandbox's database is .countersign/countersign.db" in err, err


@pytest.mark.parametrize(
    ("given", "problem"),
    [("mysql://root@localhost/cs", "not a database this service speaks"), ("sqlite+pysqlite:///x.db", "reaches")],
)
def test_a_database_url_the_service_cannot_use_is_one_clear_line(capsys, tmp_path, given, problem):
    code, _, err = run(capsys, "tenant", "key", "list", "acme", "--database-url", given)
    assert code != 0 and problem in err and "Traceback" not in err


def test_reading_the_audit_where_nothing_ran_creates_no_database(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COUNTERSIGN_DATABASE_URL", raising=False)
    for command in (["audit", "verify", "acme"], ["audit", "export", "acme"]):
        code, _, err = run(capsys, *command)
        assert code != 0 and "no database at" in err
    assert list(tmp_path.iterdir()) == []


def test_a_key_for_a_tenant_no_manifest_names_is_refused(capsys, sync_db_url, cli_tenants, tmp_path):
    code, out, err = run(capsys, "tenant", "key", "create", "acme-suport", "--database-url", sync_db_url)
    assert code == 1 and out == ""
    assert f"no tenant 'acme-suport' in the manifests at {cli_tenants} (tenants there: acme, globex)" in err
    code, _, err = run(capsys, "tenant", "callback-secret", "globx", "--database-url", sync_db_url)
    assert code == 1 and "did you mean 'globex'?" in err
    code, out, _ = run(capsys, "tenant", "key", "list", "acme", "--database-url", sync_db_url)
    assert code == 1  # nothing was created: the tenant is not even in the database yet
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "acme-suport.yaml").write_text((cli_tenants / "acme.yaml").read_text().replace("acme", "acme-suport"))
    code, out, _ = run(
        capsys, "tenant", "key", "create", "acme-suport", "--manifests", str(other), "--database-url", sync_db_url
    )
    assert code == 0 and out.splitlines()[-1].startswith("cs_acme-suport_")
    code, _, err = run(capsys, "tenant", "key", "create", "acme", "--manifests", str(other / "none"))
    assert code == 1 and "no manifests at" in err and "--manifests DIR" in err
