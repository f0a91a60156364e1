"""Async decision callbacks to agents: where they may go, and how they are signed.

The signature scheme is the server's contract with agents (docs/api.md, "Async callbacks"): the agent
client package verifies it with its own code (countersign_client.verify_signature), and the tests check the
two against each other, so neither end can drift alone.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Countersign-Signature"


def callback_url_problem(url: str, allowed_hosts: Sequence[str]) -> str | None:
    """Why a callback URL is refused, or None if it may be used.

    Only hosts the tenant listed in ``callbacks.allowed_hosts`` are called; an IP literal must
    be listed itself (so private addresses are never reached by accident), and credentials in
    the URL are refused. Redirects are never followed when delivering (see the outbox worker).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "callback_url is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "callback_url must be an http(s) URL with a host"
    if parts.username or parts.password:
        return "callback_url must not carry credentials"
    host = parts.hostname.lower().rstrip(".")
    allowed = {h.lower().rstrip(".") for h in allowed_hosts}
    if host not in allowed:
        if not allowed:
            return "this tenant has no callbacks.allowed_hosts, so no callback can be delivered"
        return f"callback host '{host}' is not in this tenant's callbacks.allowed_hosts"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_unspecified or address.is_multicast:
        return f"callback host '{host}' is not a usable address"
    return None


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Countersign-Signature`` value for a callback body: ``t=<unix time>,v1=<hex HMAC-SHA256>``
    of ``"<t>." + body`` under the tenant's callback secret."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signed_headers(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(secret, body, timestamp)}
