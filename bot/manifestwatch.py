"""Reload the manifests when a file in their directory changes, or when asked (SIGHUP).

The directory is polled twice a second for the content of its manifest files, not watched for
file events: a Kubernetes ConfigMap is updated by swapping a symlink and network filesystems send
no events at all, and a poller that compares modification times (watchfiles' polling watcher
does) misses a second save within the same second. Reading and hashing a handful of small files
twice a second costs nothing. A change is taken once two polls in a row read the same content, so a
file being written is not read half-way. Reloads run one at a time; a change or a SIGHUP during one brings
another right after it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path

from bot.service.manifests import ManifestReloads
from policy.loader import manifest_files

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5


def fingerprint(directory: Path) -> dict[str, str]:
    """Each manifest file of ``directory`` and the SHA-256 of its content (a file gone missing is left out)."""
    found = {}
    for path in manifest_files(directory):
        try:
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:  # removed or replaced between the listing and the read: the next poll sees it
            continue
    return found


class ManifestWatcher:
    def __init__(self, reloads: ManifestReloads, directory: Path, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.reloads = reloads
        self.directory = directory
        self.poll_seconds = poll_seconds
        self._asked = asyncio.Event()

    def poke(self) -> None:
        """Reload now (SIGHUP): safe to call from a signal handler on the event loop."""
        self._asked.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``: reload after every change of a manifest file's content (unless ``poll_seconds``
        is 0) and every :meth:`poke`."""
        polling = self.poll_seconds > 0
        seen = await asyncio.to_thread(fingerprint, self.directory) if polling else {}
        pending = seen  # a content seen once: reloaded when the next poll reads it unchanged
        while not stop.is_set():
            asked = asyncio.ensure_future(self._asked.wait())
            stopping = asyncio.ensure_future(stop.wait())
            try:
                timeout = self.poll_seconds if polling else None
                await asyncio.wait({asked, stopping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                asked.cancel()
                stopping.cancel()
            if stop.is_set():
                break
            now = await asyncio.to_thread(fingerprint, self.directory) if polling else {}
            if not self._asked.is_set():
                if now == seen:
                    continue
                if now != pending:  # changed since the last poll: maybe half written, read it again first
                    pending = now
                    continue
            self._asked.clear()
            seen = pending = now
            await self.reloads.reload()
