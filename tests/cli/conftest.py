"""Fixtures the CLI tests share."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import run, run_json
from tests.conftest import LiveServer, TinyBase


@pytest.fixture
def two_versions(server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str) -> list[dict]:
    """``repo`` with #1 and #2 (``latest`` on #2)."""
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    return [
        run_json(server, "push", str(adapter_factory(seed=seed)), repo, "--base", tiny_base.content_digest)
        for seed in (1, 2)
    ]
