"""``countersign check [DIR]``: validate every manifest and run their ``tests:`` blocks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from policy import Severity, load_dir, run_tests


def register(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser("check", help="validate manifests and run their tests")
    parser.add_argument(
        "directory", nargs="?", default="manifests", type=Path, help="manifests directory (default: manifests)"
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return check(args.directory, sys.stdout)


def check(directory: Path, out: TextIO) -> int:
    """Print one line per tenant, then each problem with its place; 1 if anything failed."""
    result = load_dir(directory)
    failed_tests = 0
    tenants = sorted(set(result.files) | set(result.tenants) | {p.tenant for p in result.problems if p.tenant})
    for tenant in tenants:
        policy = result.tenants.get(tenant)
        errors = sum(1 for p in result.problems if p.tenant == tenant and p.severity is Severity.ERROR)
        warnings = sum(1 for p in result.problems if p.tenant == tenant and p.severity is Severity.WARNING)
        if policy is None:
            print(f"✗ {tenant}: {errors} error(s)", file=out)
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
    for problem in result.problems:
        print(f"  {problem}", file=out)
    errors = len(result.errors)
    verdict = "FAILED" if errors or failed_tests else "OK"
    counts = f"{len(result.tenants)} tenant(s), {errors} error(s), {len(result.warnings)} warning(s)"
    print(f"{verdict}: {counts}, {failed_tests} failed test(s)", file=out)
    return 1 if errors or failed_tests else 0
