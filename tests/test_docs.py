"""The documentation stands alone: README.md and docs/*.md point only at files in the repository,
and docs/cli.md covers every command, option and environment variable the code has.

The CLI is read from the real parser (``bot.cli.build_parser``) and the variables from
``bot.config.ENVIRONMENT``, so a command or variable added without its documentation fails here.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import build_parser
from bot.config import ENVIRONMENT

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CLI_DOC = DOCS / "cli.md"

# [text](target) and ![alt](target), with an optional "title" after the target; the text may hold
# brackets one level deep ([`countersign check [DIR]`](#countersign-check)).
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# A backticked docs page, e.g. `docs/architecture.md` (read from the repository's root).
DOCS_PATH = re.compile(r"`(docs/[^`\s]*\.md)`")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# What the documentation must not lean on: files and discussions outside the repository.
FORBIDDEN = ("../shared", "DESIGN.md", "seed document", "the issues")
VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*")


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text without its fenced code blocks (a link in a code sample is not a link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return "\n".join(lines)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for line in prose(page.read_text(encoding="utf-8")).splitlines():
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            name, n = base, 0
            while name in found:
                n += 1
                name = f"{base}-{n}"
            found.add(name)
    return found


def local_links(page: Path) -> Iterator[tuple[str, Path, str]]:
    """(link as written, the file it names, its anchor) for every relative link of a page."""
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http(s)://, mailto:
            continue
        path, _, anchor = target.partition("#")
        yield target, (page.parent / path).resolve() if path else page, anchor


def test_the_pages_exist() -> None:
    names = {p.name for p in DOCS.glob("*.md")}
    assert {"manifests.md", "api.md", "cli.md"} <= names


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_relative_link_names_a_file_in_the_repository(page: Path) -> None:
    broken = [
        target
        for target, path, _ in local_links(page)
        if not path.exists() or not path.is_relative_to(ROOT)  # nothing outside the repository
    ]
    assert not broken, f"{page.name}: links to missing files: {broken}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_link_anchor_names_a_heading(page: Path) -> None:
    broken = [
        target
        for target, path, anchor in local_links(page)
        if anchor and path.suffix == ".md" and path.exists() and anchor not in anchors(path)
    ]
    assert not broken, f"{page.name}: links to headings that do not exist: {broken}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_every_backticked_docs_path_exists(page: Path) -> None:
    missing = [p for p in DOCS_PATH.findall(page.read_text(encoding="utf-8")) if not (ROOT / p).is_file()]
    assert not missing, f"{page.name}: names docs pages that do not exist: {missing}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.name)
def test_nothing_points_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8").lower()
    found = [word for word in FORBIDDEN if word.lower() in text]
    assert not found, f"{page.name} mentions {found}"


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
    tuple[tuple[str, ...], argparse.ArgumentParser]
]:  # fmt: skip
    """Every command of the parser, depth first, with its path (``("tenant", "key", "create")``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from subcommands(sub, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"]


COMMANDS = list(subcommands(build_parser()))


def test_the_parser_is_walked() -> None:
    # Guards the walk itself: if it found nothing, the tests below would pass on nothing.
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"check", "serve", "sandbox", "db upgrade", "audit verify", "tenant key create"} <= paths


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=" ".join)
def test_every_command_is_in_cli_md(path: tuple[str, ...]) -> None:
    command = "countersign " + " ".join(path)
    assert re.search(re.escape(command) + r"(?![\w-])", CLI_DOC.read_text(encoding="utf-8")), (
        f"docs/cli.md does not mention `{command}`"
    )


@pytest.mark.parametrize(
    ("path", "parser"),
    [
        pytest.param(path, sub, id=" ".join(("countersign", *path)))
        for path, sub in [((), build_parser()), *COMMANDS]
        if options(sub)
    ],
)
def test_every_option_is_in_cli_md(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    text = CLI_DOC.read_text(encoding="utf-8")
    missing = [o for o in options(parser) if not re.search(r"(?<![\w-])" + re.escape(o) + r"(?![\w-])", text)]
    assert not missing, f"docs/cli.md does not mention {missing} of `countersign {' '.join(path)}`"


def variables() -> list[str]:
    # ENVIRONMENT pairs a name (or "A / B" for two variables documented together) with its meaning.
    names = [name.strip() for entry, _ in ENVIRONMENT for name in entry.split("/")]
    assert names and all(VARIABLE.fullmatch(n) for n in names), f"unexpected ENVIRONMENT shape: {names}"
    return names


@pytest.mark.parametrize("name", variables())
def test_every_environment_variable_is_in_cli_md(name: str) -> None:
    assert re.search(rf"`{name}`", CLI_DOC.read_text(encoding="utf-8")), f"docs/cli.md does not document {name}"


def test_the_quick_start_installs_only_what_the_sandbox_needs() -> None:
    """Trying the sandbox installs the service's own dependencies: no test, lint or browser tools (the second
    command adds those), and the sandbox starts from what the first one installed."""
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    fence = quick_start.split("```sh\n", 1)[1].split("```", 1)[0]
    try_it, run_tests = fence.strip().splitlines()
    assert "pip install -e . " in try_it + " " and "[" not in try_it and try_it.endswith("countersign sandbox")
    assert "'.[dev]'" in run_tests and "pytest" in run_tests
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {re.split(r"[\[<>=;]", d, maxsplit=1)[0].strip().lower() for d in pyproject["project"]["dependencies"]}
    tools = {"pytest", "pytest-asyncio", "pytest-xdist", "ruff", "mypy", "import-linter", "hypothesis", "playwright"}
    assert not needed & tools, f"the quick start would install {sorted(needed & tools)}"
