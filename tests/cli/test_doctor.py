"""``lorareg doctor`` through the real CLI against real servers: what it finds and the fix it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from cli.commands.doctor import _clock
from registry.config import Settings
from registry.db import migrate
from registry.db.session import Database
from registry.principal import REGISTRY
from registry.services import tokens
from tests.conftest import LiveServer, start_server

LOREG = str(Path(sys.executable).parent / "lorareg")
LOCAL_CHECKS = ("cache", "credentials")


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A server with tokens required, and the secrets of a token expiring in two days and one that never
    does (limited to namespace ``acme``)."""
    home = tmp_path_factory.mktemp("doctor")
    url = f"sqlite:///{home / 'lorareg.db'}"
    migrate.upgrade(url)
    db = Database.connect(url)
    with db.transaction() as session:
        _, soon = tokens.create_token(
            session, REGISTRY, name="ci", scope="write", expires_in=timedelta(days=2)
        )
        _, lasting = tokens.create_token(session, REGISTRY, name="team", scope="read", namespaces=["acme"])
    db.dispose()
    for base in start_server(Settings(home=home, database_url=url, auth="required")):
        yield base, {"soon": soon, "lasting": lasting}


def doctor(url: str, tmp_path: Path, *args: str, **env: str) -> tuple[int, dict[str, dict], str]:
    """Run ``lorareg doctor`` with a cache and credentials file of its own; exit code, checks by name,
    and the human output of the same run's checks."""
    environment = {
        **{k: v for k, v in os.environ.items() if k != "LOREG_TOKEN"},
        "LOREG_URL": url,
        "LOREG_CACHE": str(tmp_path / "cache"),
        "LOREG_CREDENTIALS_FILE": str(tmp_path / "credentials.json"),
        **env,
    }
    machine = subprocess.run(
        [LOREG, "--json", "doctor", *args], capture_output=True, text=True, env=environment, timeout=60
    )
    human = subprocess.run(
        [LOREG, "doctor", *args], capture_output=True, text=True, env=environment, timeout=60
    )
    assert human.returncode == machine.returncode, (human.stdout, machine.stdout)
    checks = {c["name"]: c for c in json.loads(machine.stdout)}
    return machine.returncode, checks, human.stdout


def statuses(checks: dict[str, dict]) -> dict[str, str]:
    return {name: c["status"] for name, c in checks.items()}


def test_all_ok_on_an_open_registry(server: LiveServer, tmp_path: Path) -> None:
    code, checks, human = doctor(server.url, tmp_path)
    assert code == 0, checks
    assert statuses(checks) == dict.fromkeys(("url", "version", "clock", "token", *LOCAL_CHECKS), "ok")
    assert "LOREG_AUTH=off" in checks["token"]["message"]
    assert [line.split()[:2] for line in human.splitlines()] == [["ok", name] for name in checks]


def test_a_valid_token_shows_its_scope_namespaces_and_expiry(strict, tmp_path: Path) -> None:
    url, secrets = strict
    code, checks, _ = doctor(url, tmp_path, LOREG_TOKEN=secrets["lasting"])
    assert code == 0 and set(statuses(checks).values()) == {"ok"}, checks
    assert checks["token"]["message"] == "team: read scope, acme"
    assert checks["expiry"]["message"] == "the token does not expire"


def test_a_token_expiring_soon_is_a_warning(strict, tmp_path: Path) -> None:
    url, secrets = strict
    code, checks, human = doctor(url, tmp_path, LOREG_TOKEN=secrets["soon"])
    assert code == 0, checks  # warnings only
    assert checks["token"]["status"] == "ok" and "every namespace" in checks["token"]["message"]
    assert checks["expiry"]["status"] == "warn" and "expires in 1 d" in checks["expiry"]["message"]
    assert "lorareg login" in checks["expiry"]["fix"]
    assert any(line.startswith("warn  expiry") for line in human.splitlines())


def test_a_bad_token_fails_with_the_fix(strict, tmp_path: Path) -> None:
    url, _ = strict
    code, checks, human = doctor(url, tmp_path, LOREG_TOKEN="lrg_not-a-real-token")
    assert code == 1
    assert checks["token"]["status"] == "fail" and "unknown token" in checks["token"]["message"]
    assert "lorareg login --with-token" in checks["token"]["fix"]
    assert any(line.startswith("FAIL  token") and "fix: " in line for line in human.splitlines())
    assert checks["url"]["status"] == "ok"


def test_no_token_on_a_registry_that_requires_one_is_a_warning(strict, tmp_path: Path) -> None:
    url, _ = strict
    code, checks, _ = doctor(url, tmp_path)
    assert code == 0 and checks["token"]["status"] == "warn", checks
    assert "public repositories" in checks["token"]["message"]


def test_an_unreachable_registry_fails_and_local_checks_still_run(tmp_path: Path) -> None:
    code, checks, _ = doctor("http://127.0.0.1:9", tmp_path)
    assert code == 1
    assert checks["url"]["status"] == "fail" and "cannot reach http://127.0.0.1:9" in checks["url"]["message"]
    assert "lorareg serve" in checks["url"]["fix"] and "LOREG_URL" in checks["url"]["fix"]
    assert statuses(checks) == {
        "url": "fail",
        **dict.fromkeys(("version", "clock", "token"), "skip"),
        **dict.fromkeys(LOCAL_CHECKS, "ok"),
    }


def test_a_url_that_is_not_a_registry_fails(server: LiveServer, tmp_path: Path) -> None:
    code, checks, _ = doctor(f"{server.url}/api/v1", tmp_path)  # a path after the host: 404 on health
    assert code == 1 and checks["url"]["status"] == "fail"
    assert "not a lorareg registry" in checks["url"]["message"]


def test_an_unwritable_cache_fails(server: LiveServer, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, checks, _ = doctor(server.url, tmp_path, LOREG_CACHE=str(blocker / "cache"))
    assert code == 1
    assert checks["cache"]["status"] == "fail" and str(blocker / "cache") in checks["cache"]["message"]
    assert "LOREG_CACHE" in checks["cache"]["fix"]


def test_credentials_readable_by_others_fail(server: LiveServer, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({server.url: "lrg_x"}))
    credentials.chmod(0o644)
    code, checks, _ = doctor(server.url, tmp_path)
    assert code == 1
    assert checks["credentials"]["status"] == "fail" and "0644" in checks["credentials"]["message"]
    assert checks["credentials"]["fix"] == f"chmod 600 {credentials}"
    credentials.chmod(0o600)
    assert doctor(server.url, tmp_path)[1]["credentials"]["status"] == "ok"


@pytest.mark.parametrize(("offset", "status"), [(0, "ok"), (29, "ok"), (120, "warn"), (-120, "warn")])
def test_clock_skew_over_30_seconds_is_a_warning(offset: int, status: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    check = _clock(format_datetime(now + timedelta(seconds=offset), usegmt=True), now)
    assert check.status == status, check
    if status == "warn":
        assert ("behind" if offset > 0 else "ahead of") in check.message and check.fix
