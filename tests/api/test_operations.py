"""What operators watch: liveness and readiness probes, request ids in answers and in the server's log
lines (text or JSON), and API docs that work with no internet access."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from registry.api import docs
from registry.config import Settings
from registry.db import migrate
from tests.conftest import LiveServer, start_server
from tests.server_process import running_server

ROOT = Path(__file__).resolve().parents[2]
VENDORED = sorted(p.relative_to(ROOT) for p in (ROOT / "registry/api/static/vendor").glob("*/*"))


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server with tokens required, on a SQLite database of its own."""
    home = tmp_path_factory.mktemp("strict")
    url = f"sqlite:///{home / 'lorareg.db'}"
    migrate.upgrade(url)
    for base in start_server(Settings(home=home, database_url=url, auth="required")):
        with httpx.Client(base_url=base, timeout=30) as http:
            yield http


def fresh_server(home: Path, *, revision: str = "head") -> Iterator[httpx.Client]:
    """A server on a new SQLite database migrated to ``revision`` (``-1``: one behind head)."""
    url = f"sqlite:///{home / 'lorareg.db'}"
    migrate.upgrade(url)
    if revision != "head":
        migrate.downgrade(url, revision)
    for base in start_server(Settings(home=home, database_url=url)):
        with httpx.Client(base_url=base, timeout=30) as http:
            yield http


# Probes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/health", "/healthz", "/api/v1/health", "/readyz"])
def test_probes_answer_without_a_token(strict: httpx.Client, path: str) -> None:
    answer = strict.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] in ("ok", "ready")
    assert strict.get("/api/v1/repos/acme/x").status_code == 401  # the server does require tokens


def test_liveness_says_the_server_version(server: LiveServer) -> None:
    assert server.http.get("/healthz").json() == {"status": "ok", "version": version("lorareg")}


def test_ready_reports_each_check_and_no_secret(server: LiveServer) -> None:
    answer = server.http.get("/readyz")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "ready"
    assert {c["name"]: c["ok"] for c in body["checks"]} == {
        "database": True,
        "migrations": True,
        "blob_store": True,
    }
    assert answer.headers["cache-control"] == "no-store"
    assert server.settings.resolved_database_url not in answer.text
    assert str(server.settings.home) not in answer.text


def test_not_ready_when_the_database_is_behind_the_migrations(tmp_path: Path) -> None:
    head = migrate.head_revision("sqlite://")
    for http in fresh_server(tmp_path, revision="-1"):
        answer = http.get("/readyz")
        assert answer.status_code == 503, answer.text
        checks = {c["name"]: c for c in answer.json()["checks"]}
        assert answer.json()["status"] == "not_ready"
        assert checks["database"]["ok"] and checks["blob_store"]["ok"]
        assert not checks["migrations"]["ok"]
        assert f"expects {head}" in checks["migrations"]["detail"]
        assert "lorareg db upgrade" in checks["migrations"]["detail"]
        assert http.get("/healthz").status_code == 200  # alive, only not ready


def test_not_ready_when_the_blob_directory_is_gone(tmp_path: Path) -> None:
    for http in fresh_server(tmp_path):
        assert http.get("/readyz").status_code == 200
        shutil.rmtree(tmp_path / "blobs")
        answer = http.get("/readyz")
        assert answer.status_code == 503, answer.text
        checks = {c["name"]: c for c in answer.json()["checks"]}
        assert checks["database"]["ok"] and checks["migrations"]["ok"]
        assert not checks["blob_store"]["ok"]
        assert "is missing" in checks["blob_store"]["detail"]


# Request ids --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/api/v1/repos/nobody/nothing", 404),
        ("GET", "/no/such/route", 404),
        ("DELETE", "/healthz", 405),
        ("GET", "/api/v1/repos?namespace=%00", 400),  # refused by a middleware, before any route
        ("POST", "/api/v1/repos", 422),
        ("HEAD", "/api/v1/blobs/sha256:" + "0" * 64, 404),
    ],
)
def test_every_answer_carries_the_request_id_it_was_sent(
    server: LiveServer, method: str, path: str, status: int
) -> None:
    answer = server.http.request(method, path, headers={"X-Request-ID": "ci-run-42/step.7"})
    assert answer.status_code == status, answer.text
    assert answer.headers["x-request-id"] == "ci-run-42/step.7"


@pytest.mark.parametrize("sent", [None, "", "x" * 129, "two words", "caf\xe9"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(
    server: LiveServer, sent: str | None
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent.encode("latin-1")}
    ids = {server.http.get("/healthz", headers=headers).headers["x-request-id"] for _ in range(2)}
    assert len(ids) == 2 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids), ids


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_lorareg_serve_logs_carry_the_request_id(tmp_path: Path, log_format: str) -> None:
    home = tmp_path / "home"
    with running_server(home, {"LOREG_LOG_FORMAT": log_format}) as url:
        for path in ("/api/v1/repos/acme/missing", "/healthz"):
            httpx.get(url + path, headers={"X-Request-ID": f"probe-{log_format}"})
    lines = (home / "serve.log").read_text().splitlines()
    if log_format == "text":
        access = [line for line in lines if "uvicorn.access [probe-text]" in line]
        assert any('"GET /api/v1/repos/acme/missing HTTP/1.1" 404' in line for line in access), lines
        assert any('"GET /healthz HTTP/1.1" 200' in line for line in access), lines
        return
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message", "request_id"} <= r.keys() for r in records)
    access = [r for r in records if r["logger"] == "uvicorn.access" and r["request_id"] == "probe-json"]
    assert [(r["method"], r["path"], r["status"]) for r in access] == [
        ("GET", "/api/v1/repos/acme/missing", 404),
        ("GET", "/healthz", 200),
    ]
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0 for r in access)
    started = [r for r in records if r["logger"] == "lorareg" and r["message"].startswith("database ")]
    assert started and started[0]["request_id"] is None  # logged outside any request


# Offline docs -------------------------------------------------------------------------------------


EXTERNAL = re.compile(r"(https?:)?//[a-z0-9.-]+", re.IGNORECASE)
REFERENCE = re.compile(r"""(?:src|href)=["']([^"']+)["']|url: ?['"]([^"']+)['"]|spec-url=["']([^"']+)""")
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_api_docs_reference_only_assets_the_server_serves(strict: httpx.Client, page: str) -> None:
    answer = strict.get(page)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    html = answer.text
    assert EXTERNAL.search(html) is None, EXTERNAL.search(html)
    references = {next(g for g in m.groups() if g) for m in REFERENCE.finditer(html)}
    assert len(references) >= 3, references  # a script, the favicon, the OpenAPI document (+ css)
    for reference in references:
        asset = strict.get(urljoin(page, reference))
        assert asset.status_code == 200, reference
        suffix = Path(reference).suffix or ".json"
        assert CONTENT_TYPES[suffix] in asset.headers["content-type"], (reference, asset.headers)
        assert len(asset.content) > (500 if suffix == ".png" else 10_000), reference
        if reference.startswith(docs.PREFIX):
            assert asset.headers["cache-control"] == docs.IMMUTABLE


def test_vendored_assets_carry_their_licences() -> None:
    for directory in {p.parent for p in VENDORED}:
        assert (ROOT / directory / "LICENSE").is_file(), directory


def test_the_wheel_ships_the_docs_assets(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for part in ("registry", "cli", "migrations"):
        shutil.copytree(ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            tmp_path,
            source,
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("lorareg-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {str(p) for p in VENDORED} - shipped == set(), "add them to [tool.setuptools.package-data]"
