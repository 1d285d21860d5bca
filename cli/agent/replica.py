"""The base check on the replica: the engine must serve the deployment's base before any adapter loads.

In order of strength: ``--served-base`` (a SHA the registry resolved to its base's content digest);
else, when the engine's base is a directory on this machine, that directory's content digest, computed
from its safetensors headers and file hashes as ``lorareg base register`` does (once per directory
and process); else the engine's served name or root against the base's registered name.
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cli.agent.engines import DEFAULT_PORTS, Engine, ServedModels
from registry import errors
from registry.adapters.base_manifest import read_base_manifest
from registry.errors import InvalidInput

MAX_REPLICA_ID = 128
REPLICA_ID = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_REPLICA_ID}}}")
REPLICA_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class BaseMismatch(errors.BaseMismatch):
    """The engine serves another base than the deployment's: the agent must not load anything."""

    code = "engine_base_mismatch"


@dataclass(frozen=True)
class DeploymentBase:
    name: str
    content_digest: str  # 64 hex


class BaseCheck:
    """Checks an engine's base against a deployment's; ``served_digest`` is ``--served-base``'s content
    digest (64 hex), already resolved by the registry."""

    def __init__(self, served_digest: str | None = None) -> None:
        self.served_digest = served_digest
        self._local: dict[Path, str] = {}
        self._hashing = threading.Lock()

    def check(self, engine: Engine, models: ServedModels, base: DeploymentBase) -> str:
        """How the engine was found to serve ``base`` (for the log); raise :class:`BaseMismatch`."""
        wanted = f"{base.name} (sha256:{base.content_digest[:12]})"
        if self.served_digest is not None:
            if self.served_digest != base.content_digest:
                raise BaseMismatch(
                    f"--served-base is sha256:{self.served_digest[:12]}, but the deployment is for base "
                    f"{wanted}; nothing was loaded into {engine.kind} at {engine.url}"
                )
            return f"by --served-base sha256:{self.served_digest[:12]}"
        path = engine.base_path()
        directory = Path(path)
        if directory.is_dir():
            digest = self._digest(directory)
            if digest != base.content_digest:
                raise BaseMismatch(
                    f"{engine.kind} at {engine.url} serves {directory}, whose base content digest is "
                    f"sha256:{digest[:12]}, but the deployment is for base {wanted}; nothing was loaded"
                )
            return f"by the content digest of {directory}"
        if base.name in (models.base_name, models.base_root, path):
            return f"by name {base.name}"
        raise BaseMismatch(
            f"{engine.kind} at {engine.url} serves {models.base_name!r} (from {path!r}), not the "
            f"deployment's base {wanted}; nothing was loaded. If it is the same model under another "
            "name, pass --served-base with the base's SHA"
        )

    def _digest(self, directory: Path) -> str:
        with self._hashing:  # hashes every weight file: once per directory
            if directory not in self._local:
                try:
                    self._local[directory] = read_base_manifest(directory).content_digest
                except InvalidInput as error:
                    raise BaseMismatch(
                        f"cannot compute the base digest of {directory}, which the engine serves: "
                        f"{error.message} Pass --served-base with the base's SHA"
                    ) from None
            return self._local[directory]


def default_replica_id(engine_url: str, kind: str) -> str:
    """``<hostname>:<engine port>``, the id a replica heartbeats under unless given one."""
    url = urlsplit(engine_url)
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, DEFAULT_PORTS.get(kind, 0))
    host = REPLICA_UNSAFE.sub("-", socket.gethostname())
    return f"{host[: MAX_REPLICA_ID - 6]}:{port}"


def check_replica_id(value: str) -> str:
    """``value`` if it is 1 to 128 of ``[A-Za-z0-9._:-]``, else InvalidInput."""
    if not REPLICA_ID.fullmatch(value):
        raise InvalidInput(f"invalid replica id {value!r}: 1 to {MAX_REPLICA_ID} of [A-Za-z0-9._:-]")
    return value
