"""Tokens saved by ``lorareg login``: a JSON map of registry URL → token, readable only by its owner."""

from __future__ import annotations

import json
import os
from pathlib import Path


def load_token(path: Path, url: str) -> str | None:
    try:
        return json.loads(path.read_text()).get(url.rstrip("/"))
    except (FileNotFoundError, ValueError, AttributeError):
        return None


def save_token(path: Path, url: str, token: str) -> None:
    """Store ``token`` for ``url``; the file is created with mode 0600 and rewritten atomically."""
    try:
        saved = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        saved = {}
    saved[url.rstrip("/")] = token
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = path.with_suffix(".tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(saved, handle, indent=2)
    os.chmod(staging, 0o600)
    os.replace(staging, path)
