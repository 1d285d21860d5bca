"""`lorareg serve` on a non-loopback interface with auth off warns on stderr before serving."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.commands.serve import exposure_warning
from cli.main import cli
from registry.config import Settings


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "[2001:db8::1]", "registry.internal"])
def test_open_registry_on_a_reachable_interface_is_warned_about(host: str) -> None:
    warning = exposure_warning(host, Settings(auth="off"))
    assert warning is not None and host in warning and "LOREG_AUTH=off" in warning


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST."])
def test_loopback_is_not_warned_about(host: str) -> None:
    assert exposure_warning(host, Settings(auth="off")) is None


def test_auth_required_is_not_warned_about() -> None:
    assert exposure_warning("0.0.0.0", Settings(auth="required")) is None


@pytest.mark.parametrize(
    ("args", "auth", "warned"),
    [
        (["--host", "0.0.0.0"], "off", True),
        ([], "off", False),
        (["--host", "0.0.0.0"], "required", False),
    ],
)
def test_serve_prints_the_warning_before_it_serves(
    args: list[str], auth: str, warned: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    served: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: served.append(kw))
    env = {"LOREG_HOME": str(tmp_path), "LOREG_AUTH": auth, "LOREG_HOST": "127.0.0.1"}

    result = CliRunner().invoke(cli, ["serve", *args], env=env, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert ("WARNING" in result.stderr and "LOREG_AUTH=off" in result.stderr) is warned
    assert "WARNING" not in result.stdout
    assert served and served[0]["host"] == (args[1] if args else "127.0.0.1")
    assert (tmp_path / "lorareg.db").exists()  # it migrated first
