"""Where the service is: ``--url`` / ``--key`` flags, else ``COUNTERSIGN_URL`` / ``COUNTERSIGN_API_KEY``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from countersign_client.errors import ConfigurationError

URL_VARIABLE = "COUNTERSIGN_URL"
KEY_VARIABLE = "COUNTERSIGN_API_KEY"


@dataclass(frozen=True)
class Endpoint:
    url: str
    api_key: str


def endpoint(url: str | None = None, api_key: str | None = None, env: Mapping[str, str] | None = None) -> Endpoint:
    """The service's URL and an API key: the arguments win over the environment.

    Raises:
        ConfigurationError: one of them is missing, naming the flag and the variable that give it.
    """
    env = os.environ if env is None else env
    url = url or env.get(URL_VARIABLE)
    api_key = api_key or env.get(KEY_VARIABLE)
    missing = [
        f"{what} (--{flag} or ${variable})"
        for what, flag, variable, value in (
            ("the service's URL", "url", URL_VARIABLE, url),
            ("an API key", "key", KEY_VARIABLE, api_key),
        )
        if not value
    ]
    if missing or url is None or api_key is None:
        raise ConfigurationError("Countersign needs " + " and ".join(missing))
    if not url.startswith(("http://", "https://")):
        raise ConfigurationError(f"{URL_VARIABLE} must be an http(s) URL, not {url!r}")
    return Endpoint(url.rstrip("/"), api_key)
