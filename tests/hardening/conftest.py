"""The end-to-end stack (real service, emulator, SQLite and PostgreSQL) for the hardening tests.

A ``swarm`` tenant is added to the example manifests: a pool of 100 reviewers (racing clicks),
with a fallback stage, and a callback host on 127.0.0.1 (local test servers).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from store.outbox import ItemState
from store.uow import uow
from tests.e2e.conftest import *  # noqa: F403  (re-exports the e2e fixtures: db_url, stack, ...)
from tests.e2e.conftest import LAB_MANIFEST, MANIFESTS, Stack

SWARM = "C0SWARM"
SWARM_FALLBACK = "C0SWARMBACKUP"
SWARM_MEMBERS = [f"U0S{i:03d}" for i in range(1, 101)]
SWARM_ADMIN = "U0SWARMADMIN"
SWARM_MANIFEST = f"""
tenant: swarm
admins: [{SWARM_ADMIN}]
defaults:
  timeout: 15m
  on_timeout: reject
  default_pool: hive
callbacks:
  allowed_hosts: [127.0.0.1, agents.swarm.example]
pools:
  hive:
    channel: {SWARM}
    members: [{", ".join(SWARM_MEMBERS)}]
  backup:
    channel: {SWARM_FALLBACK}
    members: [U0BACKUP1, U0BACKUP2]
actions:
  one_vote:
    reviewer_pool: hive
    fallback: backup
  three_votes:
    reviewer_pool: hive
    approvals: 3
  async_change:
    reviewer_pool: hive
    blocking: false
  pay_card:
    reviewer_pool: hive
    sensitive: [card_number, customer.email]
    summary: "Pay {{amount}} for {{customer.name}}"
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``soak`` tests run only when asked for: ``pytest -m soak tests/hardening``."""
    if "soak" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="a soak variant: run with -m soak")
    for item in items:
        if item.get_closest_marker("soak") is not None:
            item.add_marker(skip)


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """The example manifests, the e2e ``lab`` tenant and the ``swarm`` tenant."""
    directory = tmp_path / "manifests"
    shutil.copytree(MANIFESTS, directory)
    shutil.copy(LAB_MANIFEST, directory / LAB_MANIFEST.name)
    (directory / "swarm.yaml").write_text(SWARM_MANIFEST)
    return directory


async def outbox_states(stack: Stack, tenant: str | None = None) -> dict[str, int]:
    """How many outbox items are in each state (pending, leased, failed; done ones are left out)."""
    async with uow(stack.runtime.sessionmaker, read_only=True) as tx:
        entries = await tx.outbox.inspect(now=stack.runtime.clock.now(), tenant=tenant, limit=100_000)
    counts = {state.value: 0 for state in (ItemState.PENDING, ItemState.LEASED, ItemState.FAILED)}
    for entry in entries:
        counts[entry.state.value] += 1
    return counts
