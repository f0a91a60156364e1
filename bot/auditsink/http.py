"""The HTTP sink: each batch is one POST of JSON lines (``application/x-ndjson``); a 2xx acknowledges it."""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from bot.service.auditstream import SinkUnavailable

# Seconds for one batch's POST, answer included; past it the batch is sent again.
AUDIT_SINK_TIMEOUT = 30
CONTENT_TYPE = "application/x-ndjson"


class HttpSink:
    def __init__(self, url: str, http: aiohttp.ClientSession, *, token: str | None = None) -> None:
        """
        Args:
            url: the collector's URL; also the sink's name (its cursor), so it carries no credentials.
            http: the session (its timeout bounds a POST).
            token: sent as ``Authorization: Bearer``.
        """
        self.url = url
        self.http = http
        self._headers = {"Content-Type": CONTENT_TYPE}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    @property
    def name(self) -> str:
        return self.url

    async def send(self, lines: Sequence[str]) -> None:
        body = "".join(f"{line}\n" for line in lines).encode()
        try:
            # A redirect is not followed: the events, and the token, go to the configured URL only.
            async with self.http.post(self.url, data=body, headers=self._headers, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return
                answer = (await resp.text(errors="replace"))[:200]
                raise SinkUnavailable(f"HTTP {resp.status}: {answer}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SinkUnavailable(f"{type(exc).__name__}: {exc}") from exc
