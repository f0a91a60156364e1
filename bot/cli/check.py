"""``countersign check [DIR]``: validate every manifest and run their ``tests:`` blocks."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from policy import Problem, Severity, load_dir, run_tests


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("check", help="validate manifests and run their tests")
    parser.add_argument(
        "directory",
        nargs="?",
        default=None,
        type=Path,
        help="manifests directory, or one manifest file (default: $COUNTERSIGN_MANIFESTS, else manifests)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    # The service's own rule, so that `check` reads what `serve` would.
    directory = args.directory or Path(os.environ.get("COUNTERSIGN_MANIFESTS") or "manifests")
    return check(directory, sys.stdout)


def check(directory: Path, out: TextIO) -> int:
    """Print one line per tenant with its problems under it; 1 if anything failed. A file checks that
    manifest alone (read with the others in its directory, as the service would)."""
    only = directory if directory.is_file() else None
    result = load_dir(directory.parent if only is not None else directory)
    if only is not None:
        here = only.resolve()
        mine = {t for t, f in result.files.items() if Path(f).resolve() == here}
        mine |= {p.tenant for p in result.problems if p.tenant and p.file and Path(p.file).resolve() == here}
        result.tenants = {t: p for t, p in result.tenants.items() if t in mine}
        result.files = {t: f for t, f in result.files.items() if t in mine}
        result.problems = [
            p for p in result.problems if p.tenant in mine or (p.file is not None and Path(p.file).resolve() == here)
        ]
    failed_tests = 0
    tenants = sorted(set(result.files) | set(result.tenants) | {p.tenant for p in result.problems if p.tenant})
    for tenant in tenants:
        policy = result.tenants.get(tenant)
        errors = sum(1 for p in result.problems if p.tenant == tenant and p.severity is Severity.ERROR)
        warnings = sum(1 for p in result.problems if p.tenant == tenant and p.severity is Severity.WARNING)
        if policy is None:
            print(f"✗ {tenant}: {errors} error(s)", file=out)
            _problems(out, [p for p in result.problems if p.tenant == tenant])
            continue
        outcomes = run_tests(policy)
        failed = [o for o in outcomes if not o.passed]
        failed_tests += len(failed)
        m = policy.manifest
        mark = "✗" if failed else "✓"
        line = f"{mark} {tenant}: {len(m.actions)} action(s), {len(m.pools)} pool(s), "
        line += f"{len(outcomes) - len(failed)}/{len(outcomes)} test(s) passed"
        if warnings:
            line += f", {warnings} warning(s)"
        print(line, file=out)
        for o in failed:
            for f in o.failures:
                print(f"  test {o.index} ({o.name}): {f}", file=out)
        _problems(out, [p for p in result.problems if p.tenant == tenant])
    _problems(out, [p for p in result.problems if p.tenant not in tenants])
    errors = len(result.errors)
    verdict = "FAILED" if errors or failed_tests else "OK"
    counts = f"{len(result.tenants)} tenant(s), {errors} error(s), {len(result.warnings)} warning(s)"
    print(f"{verdict}: {counts}, {failed_tests} failed test(s)", file=out)
    return 1 if errors or failed_tests else 0


def _problems(out: TextIO, problems: list[Problem]) -> None:
    for problem in problems:
        print(f"  {problem}", file=out)
