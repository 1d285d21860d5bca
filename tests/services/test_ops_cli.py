"""``lorareg fsck`` and ``lorareg gc`` on local settings: in-process through click, and the real binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from cli.durations import parse_duration
from registry.adapters import WEIGHTS_FILE
from tests.conftest import TinyBase
from tests.services.conftest import LocalRegistry, Pushed

LOREG = str(Path(sys.executable).parent / "lorareg")


@pytest.fixture(scope="module")
def lorareg() -> click.Group:
    """The ``lorareg`` command group, for in-process runs."""
    from cli.main import cli

    return cli


@pytest.fixture
def pushed(sqlite_registry: LocalRegistry, tiny_base: TinyBase, adapter_factory) -> Pushed:
    return sqlite_registry.push("acme/bot", adapter_factory(seed=1), tiny_base)


def env_for(registry: LocalRegistry) -> dict[str, str]:
    """What an operator's shell holds: the server's home and database, no blob URL (the default)."""
    return {"LOREG_HOME": str(registry.home), "LOREG_DATABASE_URL": registry.url}


def invoke(lorareg: click.Group, registry: LocalRegistry, *args: str) -> Result:
    env: dict[str, str | None] = {**env_for(registry), "LOREG_BLOB_URL": None}
    return CliRunner().invoke(lorareg, list(args), env=env, catch_exceptions=False)


def break_everything(registry: LocalRegistry, pushed: Pushed) -> tuple[str, str, str]:
    """Delete one referenced blob, flip a byte in another, upload an orphan: return the three digests."""
    missing = pushed.files[WEIGHTS_FILE]
    registry.blob_path(missing).unlink()
    corrupt = pushed.files["adapter_config.json"]
    data = bytearray(registry.blob_path(corrupt).read_bytes())
    data[0] ^= 0x20
    registry.blob_path(corrupt).write_bytes(bytes(data))
    orphan = registry.upload(b"nobody pushed me")
    return missing, corrupt, orphan


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("30m", timedelta(minutes=30)),
        ("7d", timedelta(days=7)),
        ("0s", timedelta(0)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 45S ", timedelta(seconds=45)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "-1h", "1y", "24 h", "1h-"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_fsck_exits_0_on_a_clean_registry(
    lorareg: click.Group, sqlite_registry: LocalRegistry, pushed: Pushed
) -> None:
    result = invoke(lorareg, sqlite_registry, "fsck")
    assert result.exit_code == 0, result.output
    assert "fsck: ok" in result.stdout
    report = json.loads(invoke(lorareg, sqlite_registry, "--json", "fsck").stdout)
    assert report["ok"] is True and report["stored"] == len(set(pushed.files.values()))


def test_fsck_lists_each_problem_and_exits_1(
    lorareg: click.Group, sqlite_registry: LocalRegistry, pushed: Pushed
) -> None:
    missing, corrupt, orphan = break_everything(sqlite_registry, pushed)

    result = invoke(lorareg, sqlite_registry, "fsck")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"missing sha256:{missing}") and "acme/bot#1" in line for line in lines)
    assert any(line.startswith(f"corrupt sha256:{corrupt}") and "acme/bot#1" in line for line in lines)
    assert any(line.startswith(f"unreferenced sha256:{orphan}") for line in lines)
    assert "1 missing, 1 corrupt, 1 unreferenced" in result.stdout

    as_json = invoke(lorareg, sqlite_registry, "--json", "fsck")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert [p["digest"] for p in report["missing"]] == [f"sha256:{missing}"]
    assert report["missing"][0]["referenced_by"] == ["acme/bot#1"]
    assert [p["digest"] for p in report["corrupt"]] == [f"sha256:{corrupt}"]
    assert [p["digest"] for p in report["unreferenced"]] == [f"sha256:{orphan}"]


def test_gc_dry_run_then_gc(lorareg: click.Group, sqlite_registry: LocalRegistry, pushed: Pushed) -> None:
    orphan = sqlite_registry.upload(b"nobody pushed me")

    fresh = json.loads(invoke(lorareg, sqlite_registry, "--json", "gc").stdout)
    assert fresh["removed"] == [] and fresh["kept_recent"] == [f"sha256:{orphan}"]  # default grace 24h

    dry = invoke(lorareg, sqlite_registry, "gc", "--grace", "0s", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"would remove sha256:{orphan} (16 bytes" in dry.stdout and "would free 16 bytes" in dry.stdout
    assert sqlite_registry.blob_path(orphan).exists() and sqlite_registry.has_row(orphan)

    done = invoke(lorareg, sqlite_registry, "--json", "gc", "--grace", "0s")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert [b["digest"] for b in report["removed"]] == [f"sha256:{orphan}"] and report["bytes_freed"] == 16
    assert "may remove the blobs of a push in progress" in done.stderr
    assert not sqlite_registry.blob_path(orphan).exists() and not sqlite_registry.has_row(orphan)
    assert all(sqlite_registry.blob_path(d).exists() for d in pushed.files.values())
    assert invoke(lorareg, sqlite_registry, "fsck").exit_code == 0


def test_gc_refuses_a_bad_grace_with_usage_exit(
    lorareg: click.Group, sqlite_registry: LocalRegistry, pushed: Pushed
) -> None:
    result = invoke(lorareg, sqlite_registry, "gc", "--grace", "tomorrow")
    assert result.exit_code == 2 and "invalid duration 'tomorrow'" in result.output


def test_ops_refuse_a_missing_database(lorareg: click.Group, tmp_path: Path) -> None:
    env = {"LOREG_HOME": str(tmp_path / "nowhere"), "LOREG_DATABASE_URL": None, "LOREG_BLOB_URL": None}
    for command in ("fsck", "gc"):
        result = CliRunner().invoke(lorareg, [command], env=env, catch_exceptions=False)
        assert result.exit_code == 1 and "no registry database at sqlite:///" in result.output
    assert not (tmp_path / "nowhere" / "lorareg.db").exists()


# The installed `lorareg` binary: what a cron job or a Kubernetes job runs. ---------------------------


def run(registry: LocalRegistry, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LOREG_BLOB_URL"} | env_for(registry)
    return subprocess.run([LOREG, *args], capture_output=True, text=True, env=env, timeout=120)


def test_the_binary_fsck_and_gc(sqlite_registry: LocalRegistry, pushed: Pushed) -> None:
    missing, corrupt, orphan = break_everything(sqlite_registry, pushed)

    broken = run(sqlite_registry, "--json", "fsck")
    assert broken.returncode == 1, broken.stderr
    report = json.loads(broken.stdout)
    assert {p["digest"] for p in report["missing"]} == {f"sha256:{missing}"}
    assert {p["digest"] for p in report["corrupt"]} == {f"sha256:{corrupt}"}
    assert {p["digest"] for p in report["unreferenced"]} == {f"sha256:{orphan}"}

    dry = run(sqlite_registry, "gc", "--grace", "0s", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would remove sha256:{orphan}" in dry.stdout and sqlite_registry.blob_path(orphan).exists()

    gc = run(sqlite_registry, "--json", "gc", "--grace", "0s")
    assert gc.returncode == 0, gc.stderr
    assert [b["digest"] for b in json.loads(gc.stdout)["removed"]] == [f"sha256:{orphan}"]
    assert not sqlite_registry.blob_path(orphan).exists()
    assert sqlite_registry.blob_path(corrupt).exists()  # referenced, even if damaged: never collected

    after = json.loads(run(sqlite_registry, "--json", "fsck").stdout)
    assert after["unreferenced"] == [] and len(after["missing"]) == len(after["corrupt"]) == 1


def test_the_binary_fsck_is_clean_after_a_push(sqlite_registry: LocalRegistry, pushed: Pushed) -> None:
    clean = run(sqlite_registry, "fsck")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "fsck: ok" in clean.stdout
