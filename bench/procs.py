"""Processes for benchmarks: ``countersign serve`` (and the bare floor server) as real subprocesses.

Each benchmark that runs the service out of process starts it here, waits for ``/readyz``, and
reads what the kernel knows about it: CPU seconds used and the peak resident set (``VmHWM``).
The service's log goes to a file, never to a pipe nobody reads (a busy service would block on it).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bot.sandbox.server import Emulator

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_env(emulator: Emulator, database_url: str, manifests: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``countersign`` process talking to ``emulator``; ours and Slack's variables replaced."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "COUNTERSIGN_"))}
    return {
        **keep,
        "SLACK_BOT_TOKEN": emulator.config.bot_token,
        "SLACK_SIGNING_SECRET": emulator.config.signing_secret,
        "SLACK_API_URL": emulator.api_url,
        "COUNTERSIGN_DATABASE_URL": database_url,
        "COUNTERSIGN_MANIFESTS": str(manifests),
        "COUNTERSIGN_SLACK_CHANNEL_RATE": "0",  # unpaced: the figures are of the service, not of Slack's 1/s
        **extra,
    }


@dataclass
class Proc:
    """A running subprocess and the base URL it serves on."""

    process: asyncio.subprocess.Process
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (0 once the process is gone)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / TICKS

    def max_rss_mib(self) -> float:
        """The peak resident set size so far (``VmHWM``), in MiB."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")


async def _ready(url: str, proc: asyncio.subprocess.Process, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                break
            try:
                async with http.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not become ready; its log ends with: {log.read_text()[-2000:]}")


@asynccontextmanager
async def process(args: list[str], env: Mapping[str, str], port: int, log: Path) -> AsyncIterator[Proc]:
    """``python ARGS`` in its own process, serving on ``port``; ready when ``/readyz`` answers 200."""
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *args, env=dict(env), stdout=asyncio.subprocess.DEVNULL, stderr=sink
        )
    url = f"http://127.0.0.1:{port}"
    try:
        await _ready(url, proc, log)
        yield Proc(proc, url, log)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
        await proc.wait()


@asynccontextmanager
async def serve(env: Mapping[str, str], log: Path) -> AsyncIterator[Proc]:
    """``countersign serve`` on a free port of 127.0.0.1."""
    port = free_port()
    async with process(["-m", "bot", "serve"], {**env, "COUNTERSIGN_PORT": str(port)}, port, log) as proc:
        yield proc


async def cli(env: Mapping[str, str], *args: str) -> str:
    """``countersign ARGS``; its standard output (raises if it exits non-zero)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"countersign {' '.join(args)} failed: {err.decode()[-2000:]}")
    return out.decode()


async def api_key(env: Mapping[str, str], tenant: str) -> str:
    """A new API key for ``tenant`` (the CLI migrates the database first if it must)."""
    return (await cli(env, "tenant", "key", "create", tenant)).strip().splitlines()[-1]


@asynccontextmanager
async def services(
    emulator: Emulator, database_url: str, count: int, logs: Path, manifests: Path
) -> AsyncIterator[tuple[list[Proc], str]]:
    """``count`` ``countersign serve`` processes on one database, and an ``acme-support`` API key.

    Started one after another: the first migrates a new database, the others find it migrated.
    """
    env = service_env(emulator, database_url, manifests)
    key = await api_key(env, "acme-support")
    async with AsyncExitStack() as stack:
        procs = [await stack.enter_async_context(serve(env, logs / f"replica-{n}.log")) for n in range(count)]
        yield procs, key


def machine_busy() -> tuple[float, float]:
    """``(busy, total)`` CPU ticks of the whole machine since boot, from /proc/stat (for a busy share)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return float(sum(fields) - idle), float(sum(fields))


def postgres_ticks(database: str) -> dict[int, int]:
    """CPU ticks used so far by each PostgreSQL backend serving ``database`` (its process title names it)."""
    ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().decode(errors="replace")
            if not title.startswith("postgres:") or f" {database} " not in title:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    return ticks


@dataclass
class CpuMeter:
    """CPU used over a phase by each of our processes, this one, the PostgreSQL backends of our database
    (those that lived to the end of the phase), and the share of the whole machine that was busy."""

    procs: Mapping[str, Proc]
    database: str | None = None
    wall: float = 0.0
    used: dict[str, float] = field(default_factory=dict)
    _start: dict[str, float] = field(default_factory=dict)
    _pg: dict[int, int] = field(default_factory=dict)

    def _sample(self) -> dict[str, float]:
        busy, total = machine_busy()
        times = os.times()
        sample = {name: p.cpu_seconds() for name, p in self.procs.items()}
        sample.update({"bench": times.user + times.system, "_busy": busy, "_total": total, "_wall": time.monotonic()})
        return sample

    def __enter__(self) -> CpuMeter:
        self._start = self._sample()
        self._pg = postgres_ticks(self.database) if self.database else {}
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        self.used = {k: end[k] - self._start[k] for k in end}
        if self.database:
            pg = postgres_ticks(self.database)
            self.used["postgres"] = sum(t - self._pg.get(pid, 0) for pid, t in pg.items()) / TICKS
        self.wall = self.used["_wall"]

    def summary(self, requests: int) -> str:
        """CPU ms per request of each process (``replica-1 3.1``...), then how busy the machine was."""
        if not self.used or self.wall <= 0 or not requests:
            return ""
        parts = [f"{k} {1000 * v / requests:.1f}" for k, v in self.used.items() if not k.startswith("_")]
        machine = 100 * self.used["_busy"] / self.used["_total"] if self.used["_total"] else float("nan")
        return ", ".join(parts) + f" (machine {machine:.0f}% busy)"
