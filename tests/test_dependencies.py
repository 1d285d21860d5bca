"""What each install needs: the CLI runs on the base install (no server or worker packages), the API on
the server extra (no torch). Checked by importing them with the other packages made unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER_ONLY = ("torch", "numpy", "safetensors", "matplotlib", "peft", "transformers")
SERVER_ONLY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "minio",
    "celery",
    "redis",
)


def import_without(blocked: tuple[str, ...], code: str) -> subprocess.CompletedProcess[str]:
    script = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked) + code
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("blocked", "code"),
    [
        (WORKER_ONLY + SERVER_ONLY, "from cli.main import cli; cli.main(['--help'], standalone_mode=False)"),
        (WORKER_ONLY, "from registry.api.app import create_app; create_app()"),
    ],
    ids=["cli-on-the-base-install", "api-without-torch"],
)
def test_imports_without(blocked: tuple[str, ...], code: str) -> None:
    done = import_without(blocked, code)
    assert done.returncode == 0, done.stderr[-2000:]
