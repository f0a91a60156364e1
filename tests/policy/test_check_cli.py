"""`countersign check`: the report a manifest author reads, and its exit code."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.cli import main


def test_example_manifests_pass(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(repo_root / "manifests")]) == 0
    out = capsys.readouterr().out
    assert "✓ acme-support: 5 action(s), 3 pool(s), 9/9 test(s) passed" in out
    assert "✓ platform: 5 action(s), 3 pool(s), 7/7 test(s) passed" in out
    assert out.rstrip().endswith("OK: 2 tenant(s), 0 error(s), 0 warning(s), 0 failed test(s)")


def test_errors_fail_with_their_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "good.yaml").write_text("tenant: good\ndefaults: {unknown_action: deny}\n")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "policy.yaml").write_text("actions:\n  refund:\n    reviewr: p1\n")
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "✗ bad: 1 error(s)"
    # Each tenant's problems right under its own line, not under the next tenant's.
    assert (
        out[1]
        == f"  error: {tmp_path}/bad/policy.yaml:3:5 [bad/refund]: actions.refund: unknown key 'reviewr'; did you mean 'reviewer'?"
    )
    assert out[2] == "✓ good: 0 action(s), 0 pool(s), 0/0 test(s) passed"
    assert out[-1] == "FAILED: 1 tenant(s), 1 error(s), 0 warning(s), 0 failed test(s)"


def test_failing_manifest_test_fails_the_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "t.yaml").write_text(
        "tenant: t\npools: {p: {channel: C1, members: [U1]}}\ndefaults: {default_pool: p}\n"
        "actions:\n  refund: {threshold: 500}\n"
        "tests:\n  - {action: refund, params: {amount: 600}, expect: {outcome: auto_approve}}\n"
    )
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "✗ t: 1 action(s), 1 pool(s), 0/1 test(s) passed" in out
    assert "test 1 (refund {'amount': 600}): expected outcome auto_approve, got review" in out


def test_warnings_do_not_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "t.yaml").write_text("tenant: t\nactions:\n  a: {reviewer_pool: ghost}\n")
    assert main(["check", str(tmp_path)]) == 0
    assert "warning: " in capsys.readouterr().out


def test_two_files_for_one_tenant(tmp_path: Path, capsys: pytest.CaptureFixture[str], repo_root: Path) -> None:
    shutil.copy(repo_root / "manifests" / "acme-support.yaml", tmp_path / "a.yaml")
    shutil.copy(repo_root / "manifests" / "acme-support.yaml", tmp_path / "b.yaml")
    assert main(["check", str(tmp_path)]) == 1
    assert "tenant 'acme-support' is already defined in" in capsys.readouterr().out


def test_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nope")]) == 1
    assert "no such manifests directory" in capsys.readouterr().out


def test_empty_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path)]) == 1
    assert "no manifests (*.yaml or */policy.yaml) found" in capsys.readouterr().out


def test_a_pool_one_character_off_is_an_error_with_the_pool_meant(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.yaml").write_text(
        "tenant: t\npools: {tier_1: {channel: C1, members: [U1]}}\nactions:\n  refund: {reviewer_pool: tier_l}\n"
        "  other: {reviewer_pool: made_in_slack}\n"
    )
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "no pool 'tier_l' here: did you mean 'tier_1'?" in out
    assert "warning:" in out and "pool 'made_in_slack' is not defined here" in out  # may be created from Slack


def test_one_manifest_file_can_be_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text("tenant: a\ndefaults: {unknown_action: deny}\n")
    (tmp_path / "b.yaml").write_text("tenant: b\nactions:\n  refund: {reviewr: p1}\n")
    assert main(["check", str(tmp_path / "a.yaml")]) == 0
    out = capsys.readouterr().out
    assert "✓ a:" in out and "b" not in out.split("OK:")[0].replace("✓ a:", "")
    assert main(["check", str(tmp_path / "b.yaml")]) == 1


def test_a_condition_syntax_error_reads_as_words_not_the_parsers_tokens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "t.yaml").write_text(
        "tenant: t\npools: {p: {channel: C1, members: [U1]}}\ndefaults: {default_pool: p}\n"
        'actions:\n  refund: {if: "amount > ", params: [amount]}\n'
    )
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "condition `amount > `: syntax error: the condition ends too early" in out and "expecting" not in out


def test_without_a_directory_check_reads_what_the_service_would(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ops.yaml").write_text("tenant: ops\ndefaults: {unknown_action: deny}\n")
    monkeypatch.setenv("COUNTERSIGN_MANIFESTS", str(tmp_path))
    assert main(["check"]) == 0
    assert "✓ ops: 0 action(s)" in capsys.readouterr().out
