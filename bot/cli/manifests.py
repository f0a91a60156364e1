"""Where the CLI finds the manifests, and the tenants they name.

The sandbox and the commands run beside it must agree: ``--manifests``, else
``$COUNTERSIGN_MANIFESTS``, else ``./manifests``, else (outside a clone) the example manifests
shipped with countersign, which is what ``countersign sandbox`` runs on there.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.resources
import os
from pathlib import Path

from bot.config import ConfigError
from policy import load_dir


def add_manifests(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifests",
        type=Path,
        default=None,
        metavar="DIR",
        help="manifests directory (default: $COUNTERSIGN_MANIFESTS, else ./manifests,"
        " else the example manifests shipped with countersign)",
    )


def shipped_examples() -> Path:
    # Found through the ``bot`` package, so that commands of the production path never import the emulator.
    return Path(str(importlib.resources.files("bot") / "sandbox" / "example_manifests"))


def manifests_dir(given: Path | None) -> tuple[Path, bool]:
    """The directory to read, and whether it is the shipped examples (so callers can say so)."""
    if given is not None:
        return given, False
    if os.environ.get("COUNTERSIGN_MANIFESTS"):
        return Path(os.environ["COUNTERSIGN_MANIFESTS"]), False
    here = Path("manifests")
    if here.is_dir():
        return here, False
    return shipped_examples(), True


def require_tenant(tenant: str, given: Path | None) -> None:
    """Raise ConfigError unless a manifest names ``tenant``: a key for a tenant the service does not
    serve would only ever answer 401, and a typo would go unnoticed until then."""
    directory, _ = manifests_dir(given)
    if not directory.exists():
        raise ConfigError(
            f"no manifests at {directory} to find tenant {tenant!r} in: name them with --manifests DIR"
            " (or set COUNTERSIGN_MANIFESTS)"
        )
    loaded = load_dir(directory)
    known = sorted(set(loaded.files) | set(loaded.tenants))
    if tenant in known:
        return
    close = difflib.get_close_matches(tenant, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    names = ", ".join(known) if known else "none"
    raise ConfigError(
        f"no tenant {tenant!r} in the manifests at {directory} (tenants there: {names}){hint}"
        " Add its manifest first, or name the manifests with --manifests DIR."
    )
