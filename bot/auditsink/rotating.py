"""The file sink: JSON lines appended to a local file, fsynced before a batch counts as acknowledged,
rotated by size (``audit.jsonl`` -> ``audit.jsonl.1`` -> ... -> ``audit.jsonl.N``, the oldest dropped).

Not :class:`logging.handlers.RotatingFileHandler`: its ``emit`` swallows a failed write (it calls
``handleError``, which prints and returns), so the stream could not keep its cursor back on a full
disk; and it never fsyncs, so an acknowledged batch could still be lost with the page cache. Here
a batch is written, flushed and fsynced (and the directory fsynced after a rotation or a new file)
before :meth:`RotatingFileSink.send` returns; any ``OSError`` is :class:`SinkUnavailable`, and the
batch is written again later.

A line is never split across files; a file passes ``max_bytes`` only when one line alone is
longer. A crash in the middle of a write can leave a partial last line: it is cut off before this
process first appends, and the events it held are written again whole (the cursor never moved).
Read the files oldest first (``.N`` ... ``.1``, then the file itself) for the events in order.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from bot.service.auditstream import SinkUnavailable

log = logging.getLogger(__name__)

_FILE_MODE = 0o640  # the events name people and actions: not for every local user
_SCAN = 64 * 1024


class RotatingFileSink:
    def __init__(self, name: str, path: str | Path, *, max_bytes: int, backups: int) -> None:
        """
        Args:
            name: the sink's name (its cursor): the ``file://`` URL.
            path: the file appended to; its directory is created if missing.
            max_bytes: a file is rotated before a line would take it past this size.
            backups: rotated files kept (``.1`` is the newest); at least 1.
        """
        if backups < 1:
            raise ValueError("keep at least one rotated file")
        self._name = name
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._repaired = False

    @property
    def name(self) -> str:
        return self._name

    def rotated(self, n: int) -> Path:
        """The ``n``-th newest rotated file (``n`` from 1)."""
        return self.path.with_name(f"{self.path.name}.{n}")

    async def send(self, lines: Sequence[str]) -> None:
        encoded = [f"{line}\n".encode() for line in lines]
        try:
            # File I/O and fsync block: off the event loop.
            await asyncio.to_thread(self._append, encoded)
        except OSError as exc:
            # A write that failed part way (a full disk) may have left half a line: cut it before the retry.
            self._repaired = False
            raise SinkUnavailable(f"{self.path}: {exc}") from exc

    def _append(self, lines: list[bytes]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while lines:
            created = not self.path.exists()
            with open(self.path, "a+b", opener=_private) as out:
                size = out.seek(0, os.SEEK_END)
                if not self._repaired:
                    size = _cut_partial_line(out, size, self.path)
                    self._repaired = True
                taken = 0
                while taken < len(lines) and not (size and size + len(lines[taken]) > self.max_bytes):
                    size += len(lines[taken])
                    taken += 1
                out.write(b"".join(lines[:taken]))
                out.flush()
                os.fsync(out.fileno())
            if created:
                _fsync_dir(self.path.parent)
            lines = lines[taken:]
            if lines:
                self._rotate()

    def _rotate(self) -> None:
        for n in range(self.backups - 1, 0, -1):
            if self.rotated(n).exists():
                os.replace(self.rotated(n), self.rotated(n + 1))
        os.replace(self.path, self.rotated(1))
        _fsync_dir(self.path.parent)


def _cut_partial_line(out: BinaryIO, size: int, path: Path) -> int:
    """Truncate the file after its last newline (what a crash mid-write leaves); returns the new size."""
    end = size
    while end > 0:
        start = max(end - _SCAN, 0)
        out.seek(start)
        newline = out.read(end - start).rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            break
        end = start
    else:
        keep = 0
    if keep < size:
        log.warning("%s ended in a partial line (%d bytes, a write cut short): removed", path, size - keep)
        out.truncate(keep)
        out.flush()
        os.fsync(out.fileno())
    out.seek(0, os.SEEK_END)
    return keep


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, _FILE_MODE)


def _fsync_dir(directory: Path) -> None:
    """Make a created or renamed file's directory entry durable too."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
