"""A reload judged file by file: a broken file keeps its tenant at the last good version, the others move on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bot.policyset import PolicySet
from policy import load_text

MANIFEST = """\
tenant: {tenant}
admins: [U0ADMIN]
pools:
  reviewers: {{channel: C0REVIEW, members: [U0A, U0B]}}
actions:
  pay:
    if: {condition}
    reviewer_pool: reviewers
"""


def write(directory: Path, tenant: str, condition: str) -> Path:
    path = directory / f"{tenant}.yaml"
    path.write_text(MANIFEST.format(tenant=tenant, condition=condition))
    return path


def condition(policies: PolicySet, tenant: str) -> str | None:
    return policies.get(tenant).manifest.actions["pay"].condition


def test_a_broken_file_keeps_its_tenant_while_the_others_move_on(tmp_path: Path) -> None:
    write(tmp_path, "acme", "amount > 1")
    write(tmp_path, "globex", "amount > 1")
    policies = PolicySet(tmp_path)
    broken = write(tmp_path, "acme", "amount >> 2")
    write(tmp_path, "globex", "amount > 2")

    assert not policies.reload()
    assert condition(policies, "acme") == "amount > 1"
    assert condition(policies, "globex") == "amount > 2"

    prepared = policies.prepare()
    [kept] = prepared.broken
    assert (kept.file, kept.tenant) == (str(broken), "acme")
    assert f"{broken}:7:" in kept.message  # file, line, then column
    assert prepared.changed == ()  # globex is already served as it is on disk


def test_nothing_changes_until_a_reload_is_applied(tmp_path: Path) -> None:
    write(tmp_path, "acme", "amount > 1")
    policies = PolicySet(tmp_path)
    write(tmp_path, "acme", "amount > 5")
    write(tmp_path, "initech", "amount > 1")
    prepared = policies.prepare()
    assert prepared.changed == ("acme", "initech")
    assert condition(policies, "acme") == "amount > 1" and "initech" not in policies.tenants
    policies.apply(prepared)
    assert condition(policies, "acme") == "amount > 5" and "initech" in policies.tenants


def test_a_tenant_whose_file_is_gone_is_still_served(tmp_path: Path) -> None:
    write(tmp_path, "acme", "amount > 1")
    gone = write(tmp_path, "globex", "amount > 1")
    policies = PolicySet(tmp_path)
    gone.unlink()
    prepared = policies.prepare()
    assert prepared.removed == ("globex",) and prepared.broken == ()
    policies.apply(prepared)
    assert condition(policies, "globex") == "amount > 1"


def test_a_new_file_that_does_not_load_is_reported_without_a_tenant(tmp_path: Path) -> None:
    write(tmp_path, "acme", "amount > 1")
    policies = PolicySet(tmp_path)
    (tmp_path / "newco.yaml").write_text("tenant: newco\nactions: [\n")
    [broken] = policies.prepare().broken
    assert broken.tenant is None and broken.file.endswith("newco.yaml")
    assert sorted(policies.tenants) == ["acme"]


def test_a_later_version_served_meanwhile_is_never_replaced_by_an_earlier_one(tmp_path: Path) -> None:
    """A reload (or a follower's read) that began before a later version was served does not put back the
    earlier one: someone was told the later one is in force."""
    write(tmp_path, "acme", "amount > 1")
    policies = PolicySet(tmp_path)
    policies.stamp({"acme": replace(policies.get("acme"), version=1)})
    write(tmp_path, "acme", "amount > 2")
    prepared = policies.prepare()
    assert prepared.changed == ("acme",)
    approved = load_text(MANIFEST.format(tenant="acme", condition="amount > 3"))[0]
    assert approved is not None
    policies.stamp({"acme": replace(approved, version=3)})  # approved in Slack while the reload was recorded

    policies.apply(replace(prepared, tenants={"acme": replace(prepared.tenants["acme"], version=2)}))
    policies.stamp({"acme": replace(policies.get("acme"), version=2)})
    assert (policies.version("acme"), condition(policies, "acme")) == (3, "amount > 3")


def test_a_reload_takes_only_files_changed_on_this_disk(tmp_path: Path) -> None:
    """A tenant whose file is as this replica last read it keeps what it serves (a version approved in Slack),
    however often other files change."""
    write(tmp_path, "acme", "amount > 1")
    write(tmp_path, "globex", "amount > 1")
    policies = PolicySet(tmp_path)
    approved = load_text(MANIFEST.format(tenant="acme", condition="amount > 5"))[0]
    assert approved is not None
    policies.stamp({"acme": replace(approved, version=2)})
    write(tmp_path, "globex", "amount > 2")

    prepared = policies.prepare()
    assert prepared.changed == ("globex",)
    policies.apply(prepared)
    assert (condition(policies, "acme"), condition(policies, "globex")) == ("amount > 5", "amount > 2")
    assert policies.prepare().changed == ()  # and nothing is new on the next poll
