"""The audit sink's settings and the file sink's edges (a crash mid-write, a full rotation, a failed write)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.auditsink import RotatingFileSink
from bot.config import ConfigError, Settings
from bot.service.auditstream import SinkUnavailable


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"COUNTERSIGN_AUDIT_SINK": "ftp://siem.example/in"}, "COUNTERSIGN_AUDIT_SINK"),
        ({"COUNTERSIGN_AUDIT_SINK": "file://relative/audit.jsonl"}, "COUNTERSIGN_AUDIT_SINK"),
        ({"COUNTERSIGN_AUDIT_SINK": "https://user:pw@siem.example/in"}, "COUNTERSIGN_AUDIT_SINK"),
        ({"COUNTERSIGN_AUDIT_SINK": "not a url"}, "COUNTERSIGN_AUDIT_SINK"),
        ({"COUNTERSIGN_AUDIT_SINK_TOKEN": "t"}, "COUNTERSIGN_AUDIT_SINK_TOKEN"),
        ({"COUNTERSIGN_AUDIT_SINK": "file:///var/log/a.jsonl", "COUNTERSIGN_AUDIT_SINK_MAX_BYTES": "10"},
         "COUNTERSIGN_AUDIT_SINK_MAX_BYTES"),
        ({"COUNTERSIGN_AUDIT_SINK_BACKUPS": "0"}, "COUNTERSIGN_AUDIT_SINK_BACKUPS"),
    ],
)  # fmt: skip
def test_a_sink_that_cannot_work_is_refused_naming_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_sink_settings_from_the_environment() -> None:
    assert Settings.from_env({}).audit_sink is None
    http = Settings.from_env({"COUNTERSIGN_AUDIT_SINK": "https://siem.example/in", "COUNTERSIGN_AUDIT_SINK_TOKEN": "t"})
    assert str(http.audit_sink) == "https://siem.example/in" and http.audit_sink_token is not None
    path = Settings.from_env({"COUNTERSIGN_AUDIT_SINK": "file:///var/log/audit.jsonl"})
    assert path.audit_sink is not None and path.audit_sink.path == "/var/log/audit.jsonl"
    assert (path.audit_sink_max_bytes, path.audit_sink_backups) == (100 * 1024 * 1024, 5)


async def test_a_partial_last_line_left_by_a_crash_is_cut_before_the_next_batch(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b'{"seq":1}\n{"seq":2}\n{"se')  # the write of seq 3 cut short; its cursor never moved
    sink = RotatingFileSink("file://" + str(path), path, max_bytes=4096, backups=1)
    await sink.send(['{"seq":3}', '{"seq":4}'])
    assert path.read_text() == '{"seq":1}\n{"seq":2}\n{"seq":3}\n{"seq":4}\n'


async def test_rotation_keeps_the_newest_files_and_never_splits_a_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    sink = RotatingFileSink("file://" + str(path), path, max_bytes=30, backups=2)
    lines = [f'{{"seq":{n:02d}}}' for n in range(1, 11)]  # 11 bytes with the newline: two to a file
    for n in range(0, 10, 3):
        await sink.send(lines[n : n + 3])
    files = [sink.rotated(2), sink.rotated(1), path]
    assert [f.read_text().splitlines() for f in files] == [lines[4:6], lines[6:8], lines[8:10]]
    assert not sink.rotated(3).exists()


async def test_a_write_that_fails_is_not_acknowledged(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.mkdir()  # not a file: every open fails
    sink = RotatingFileSink("file://" + str(path), path, max_bytes=4096, backups=1)
    with pytest.raises(SinkUnavailable, match=r"audit\.jsonl"):
        await sink.send(['{"seq":1}'])
