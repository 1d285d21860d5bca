"""The README's quickstart, run as written: every command of its first ``bash`` block under the
"Quickstart" heading, one after another in one shell, against a live server (``make serve`` is the
fixture here: a server of its own on a fresh SQLite database, the embedded default, so names the
quickstart uses meet nothing other tests made). A command the README shows that stops working fails
this test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from registry.config import Settings
from registry.db import migrate
from tests.conftest import start_server

ROOT = Path(__file__).resolve().parents[1]
SETUP = ("source ", "pip ", "make ")  # setting up the environment: the test runs inside it already


def quickstart_commands() -> list[str]:
    """The quickstart's shell commands (continuation lines joined, comments kept for bash to drop)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the README's quickstart has no ```bash block"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    return [line for line in commands if not line.startswith(SETUP)]


def test_quickstart_runs_as_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{tmp_path / 'lorareg.db'}"
    migrate.upgrade(url)
    work = tmp_path / "work"
    work.mkdir()
    for server_url in start_server(Settings(home=home, database_url=url)):
        _run_quickstart(server_url, work)
        _check_the_web_ui(server_url)
    assert (work / "pulled" / "adapter_model.safetensors").is_file()


def _check_the_web_ui(server_url: str) -> None:
    """What the README says opening http://127.0.0.1:8000/ after the quickstart shows: the pushed adapter
    with its card, versions and lineage (the merge's parents in both repositories), and a compare page
    with the quickstart's diff."""
    with httpx.Client(base_url=server_url, timeout=30) as http:
        assert "acme/tiny-bot" in http.get("/").text
        repository = http.get("/acme/tiny-bot").text
        assert 'data-testid="card"' in repository and 'data-version="1"' in repository
        blend = http.get("/acme/tiny-blend").text
        assert 'class="lineage"' in blend and "acme/tiny-bot#1" in blend and "acme/tiny-bot-2#1" in blend
        compare = http.get("/acme/tiny-bot/compare/v1...acme/tiny-bot-2:v1")
        assert compare.status_code == 200 and 'data-testid="heatmap"' in compare.text, compare.text[-2000:]


def _run_quickstart(server_url: str, work: Path) -> None:
    (work / "examples").symlink_to(ROOT / "examples")
    script = "set -euo pipefail\n" + "\n".join(quickstart_commands()) + "\n"
    env = {
        **os.environ,
        "LOREG_URL": server_url,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"the quickstart failed:\n{done.stdout}\n{done.stderr}"
