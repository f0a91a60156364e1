"""A burst of review requests into one pool channel under Slack's per-channel posting limit: zero lost.

    python -m bench.burst [--requests 1000] [--limit 50]

Slack allows about one message per second per channel; at that rate 1,000 cards take 17
minutes, so the emulator's per-channel limit is scaled to ``--limit`` messages a second. The
code path is the same: the emulator answers HTTP 429 with ``Retry-After``, and the outbox
worker reschedules the post instead of dropping it or blocking. Baseline, in the same run: the
least time the limit allows (requests / limit).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.stack import bench_manifests, service
from bot.sandbox import EmulatorConfig
from bot.sandbox.runner import load_seed
from bot.sandbox.testing import running_emulator

REFUND = {"amount": 900, "currency": "EUR", "customer": {"name": "Ana"}, "card_number": "4111"}


async def run(n: int, limit: int) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="cs-burst-"))
    async with running_emulator(EmulatorConfig(), load_seed(bench_manifests())) as emu:
        emu.faults.set_limit("chat.postMessage", limit, 1.0, per_channel=True)
        async with service(directory / "burst.db", emu) as stack:
            runtime, key = stack.runtime, stack.key
            start = time.perf_counter()
            connector = aiohttp.TCPConnector(limit=32)
            async with aiohttp.ClientSession(connector=connector) as http:

                async def ask(i: int) -> None:
                    body = {"action": "process_refund", "params": {**REFUND, "order_id": f"burst-{i}"}}
                    async with http.post(
                        runtime.url + "/v1/requests", json=body, headers={"Authorization": f"Bearer {key}"}
                    ) as resp:
                        assert resp.status == 202, await resp.text()

                await asyncio.gather(*(ask(i) for i in range(n)))
            accepted = time.perf_counter() - start
            channel = emu.workspace.resolve_channel("C0SUPPORT1")
            assert channel is not None
            deadline = time.perf_counter() + max(120.0, 4 * n / limit)
            while len(list(channel.top_level())) < n and time.perf_counter() < deadline:
                await asyncio.sleep(0.1)
            elapsed = time.perf_counter() - start
            posted = {m.text for m in channel.top_level()}
            limited = sum(1 for c in emu.calls if c.method == "chat.postMessage" and c.status == 429)
    lost = n - len(posted)
    floor = n / limit
    print(f"burst: {n} review requests into one channel, chat.postMessage limited to {limit}/s per channel")
    print(f"| {'case':<44} | {'seconds':>8} | {'× floor':>7} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 9}|")
    print(f"| {'floor: requests / per-channel limit':<44} | {floor:>8.1f} | {1.0:>7.2f} |")
    print(f"| {'all accepted by the API':<44} | {accepted:>8.1f} | {accepted / floor:>7.2f} |")
    print(f"| {'all cards in the channel':<44} | {elapsed:>8.1f} | {elapsed / floor:>7.2f} |")
    print(f"\ncards posted: {len(posted)} of {n} (lost: {lost}); 429 answers absorbed: {limited}")
    if lost:
        raise SystemExit(f"{lost} cards lost")
    return {"seconds": elapsed, "floor": floor, "lost": lost, "limited": limited}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.limit))


if __name__ == "__main__":
    main()
