"""``/metrics`` on a live server: requests by route template, lookups by result, pushes and pulls through the
real CLI, blob bytes, jobs and webhook deliveries read from the database, the metrics token, the sample
dashboard, and ``lorareg serve --workers 2`` adding its workers' counts up."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from registry.config import Settings
from registry.db import migrate, models
from registry.db.models import utcnow
from registry.db.session import MAX_CONNECTIONS, Database
from tests.cli.test_cli import run, run_json
from tests.conftest import LiveServer, TinyBase, start_server
from tests.helpers import file_entries
from tests.server_process import running_server

DOCS = Path(__file__).resolve().parents[2] / "docs"
RESOLVE = "/api/v1/repos/{namespace}/{name}/resolve/{ref}"
TOKEN = "metrics-secret"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(http: httpx.Client, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grown(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_requests_are_counted_by_route_template_never_by_path(server: LiveServer, repo: str) -> None:
    before = scrape(server.http)
    for _ in range(2):
        assert server.http.get(f"/api/v1/repos/{repo}/resolve/latest").status_code == 404
    assert server.http.get(f"/no/such/{repo}").status_code == 404
    assert server.http.request("PROPFIND", "/api/v1/health").status_code == 405
    exposition = server.http.get("/metrics").text
    after = scrape(server.http)

    labels = {"method": "GET", "route": RESOLVE, "status": "404"}
    assert grown(before, after, "lorareg_http_requests_total", **labels) == 2
    assert grown(before, after, "lorareg_http_request_duration_seconds_count", **labels) == 2
    assert grown(before, after, "lorareg_http_request_duration_seconds_bucket", **labels, le="+Inf") == 2
    assert (
        grown(before, after, "lorareg_http_requests_total", method="GET", route="unmatched", status="404")
        == 1
    )
    assert grown(before, after, "lorareg_resolves_total", api="rest", result="404") == 2
    other = {"method": "other", "route": "/api/v1/health", "status": "405"}  # methods are a closed set
    assert grown(before, after, "lorareg_http_requests_total", **other) == 1
    assert repo.split("/")[0] not in exposition  # no label holds a name


def test_pushes_pulls_lookups_and_blob_bytes(
    server: LiveServer,
    tiny_base: TinyBase,
    other_base: TinyBase,
    adapter_factory,
    repo: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    run(server, "base", "register", str(other_base.path), "--name", "other-llama")
    adapter = adapter_factory(seed=1313)
    files = file_entries(adapter)
    size = sum(f["size"] for f in files)
    before = scrape(server.http)

    uploaded = run_json(server, "push", str(adapter), repo, "--base", tiny_base.content_digest)[
        "uploaded_bytes"
    ]
    run_json(server, "push", str(adapter), repo, "--base", tiny_base.content_digest)
    monkeypatch.setenv("LOREG_CACHE", str(tmp_path / "cache"))  # nothing cached: every file downloaded
    run_json(server, "pull", repo, "-o", str(tmp_path / "pulled"), "--base", tiny_base.content_digest)
    after_pull = scrape(server.http)

    assert grown(before, after_pull, "lorareg_pushes_total", result="created") == 1
    assert grown(before, after_pull, "lorareg_pushes_total", result="unchanged") == 1
    # what the push uploaded: files other tests pushed already (the same config, say) are not sent again
    assert uploaded > 0
    assert grown(before, after_pull, "lorareg_blob_bytes_total", direction="in") == uploaded
    assert grown(before, after_pull, "lorareg_blob_bytes_total", direction="out") == size
    assert grown(before, after_pull, "lorareg_pulls_total", api="rest") == len(files)
    assert grown(before, after_pull, "lorareg_resolves_total", api="rest", result="200") == 1

    http = server.http
    path = f"/api/v1/repos/{repo}/resolve"
    etag = http.get(f"{path}/latest").headers["etag"]
    assert http.get(f"{path}/latest", headers={"If-None-Match": etag}).status_code == 304
    assert http.get(f"{path}/latest", params={"base": other_base.content_digest}).status_code == 409
    batch = http.post("/api/v1/resolve", json={"refs": [repo, f"{repo}-missing:latest", repo]})
    assert [r["error"] is None for r in batch.json()["results"]] == [True, False, True]
    assert http.get(f"/hf/api/models/{repo}/revision/main").status_code == 200
    run(server, "yank", f"{repo}#1")
    assert http.get(f"{path}/%231").status_code == 410
    after = scrape(http)

    for api, result, count in [
        ("rest", "200", 1),
        ("rest", "304", 1),
        ("rest", "409", 1),
        ("rest", "410", 1),
        ("batch", "200", 2),
        ("batch", "404", 1),
        ("hf", "200", 1),
    ]:
        grew = grown(after_pull, after, "lorareg_resolves_total", api=api, result=result)
        assert grew == count, f"{api} {result}: {grew}"
    assert grown(after_pull, after, "lorareg_pulls_total", api="rest") == 0  # lookups are not downloads


def test_a_finished_job_joins_the_durations(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    for seed in (1314, 1315):
        run(server, "push", str(adapter_factory(seed=seed)), repo, "--base", tiny_base.content_digest)
    labels = {"kind": "diff", "status": "succeeded"}
    before = scrape(server.http)
    run_json(server, "diff", f"{repo}#1", f"{repo}#2")
    after = scrape(server.http)
    assert grown(before, after, "lorareg_job_duration_seconds_count", **labels) == 1
    assert grown(before, after, "lorareg_job_duration_seconds_bucket", **labels, le="+Inf") == 1
    assert grown(before, after, "lorareg_job_duration_seconds_sum", **labels) > 0


# A server of its own, its database filled by hand: exact values -----------------------------------


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with ``LOREG_METRICS_TOKEN`` set, on a database no other test writes."""
    home = tmp_path_factory.mktemp("metrics")
    database_url = f"sqlite:///{home / 'lorareg.db'}"
    migrate.upgrade(database_url)
    settings = Settings(home=home, database_url=database_url, metrics_token=TOKEN)
    for url in start_server(settings):
        with httpx.Client(base_url=url, timeout=30) as http:
            yield LiveServer(url=url, settings=settings, http=http)


def _job(kind: str, status: str, seconds: float | None = None) -> models.Job:
    now = utcnow()
    return models.Job(
        id=uuid.uuid4().hex,
        kind=kind,
        key=uuid.uuid4().hex * 2,
        inputs={},
        params={},
        queue="cpu",
        status=status,
        started_at=None if seconds is None else now - timedelta(seconds=seconds),
        finished_at=None if seconds is None else now,
    )


def test_jobs_and_deliveries_are_read_from_the_database(guarded: LiveServer) -> None:
    db = Database.connect(guarded.settings.resolved_database_url)
    later = utcnow() + timedelta(days=1)  # the dispatcher leaves the pending delivery alone
    with db.transaction() as session:
        session.add_all(
            [
                _job("merge", "queued"),
                _job("merge", "queued"),
                _job("merge", "running"),
                _job("merge", "cancelled"),  # cancelled before it started: no run time
                *(_job("diff", "succeeded", s) for s in (0.5, 3.0, 100.0)),
                _job("diff", "failed", 7200.0),
            ]
        )
        hook = models.Webhook(url="http://127.0.0.1:9/hook", secret="s", events=["version.pushed"])
        session.add(hook)
        session.flush()
        for status in ("delivered", "delivered", "failed", "pending"):
            session.add(
                models.WebhookDelivery(
                    webhook_id=hook.id,
                    event="version.pushed",
                    payload={},
                    status=status,
                    next_attempt_at=later,
                )
            )
    db.dispose()
    samples = scrape(guarded.http, TOKEN)

    depth = {
        (k, s): value(samples, "lorareg_job_queue_depth", kind=k, status=s)
        for k in ("merge", "diff")
        for s in ("queued", "running")
    }
    assert depth == {
        ("merge", "queued"): 2,
        ("merge", "running"): 1,
        ("diff", "queued"): 0,
        ("diff", "running"): 0,
    }

    def bucket(status: str, le: str) -> float:
        return value(samples, "lorareg_job_duration_seconds_bucket", kind="diff", status=status, le=le)

    assert [bucket("succeeded", le) for le in ("1.0", "5.0", "60.0", "300.0", "+Inf")] == [1, 2, 2, 3, 3]
    assert value(samples, "lorareg_job_duration_seconds_count", kind="diff", status="succeeded") == 3
    assert value(
        samples, "lorareg_job_duration_seconds_sum", kind="diff", status="succeeded"
    ) == pytest.approx(103.5, abs=0.01)
    assert [bucket("failed", le) for le in ("3600.0", "14400.0", "+Inf")] == [0, 1, 1]
    assert value(samples, "lorareg_job_duration_seconds_count", kind="merge", status="cancelled") == 0
    assert (
        "lorareg_job_duration_seconds_count",
        frozenset({"kind": "merge", "status": "queued"}.items()),
    ) not in samples

    assert value(samples, "lorareg_webhook_deliveries_total", result="delivered") == 2
    assert value(samples, "lorareg_webhook_deliveries_total", result="failed") == 1
    assert value(samples, "lorareg_webhook_deliveries_pending") == 1
    assert value(samples, "lorareg_db_pool_connections_in_use") >= 1  # the scrape's own connection
    assert value(samples, "lorareg_db_pool_connections_max") >= MAX_CONNECTIONS


def test_the_metrics_token_is_required_when_set(guarded: LiveServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = guarded.http.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json()["error"]["code"] == "unauthorized"
        assert "LOREG_METRICS_TOKEN" in refused.json()["error"]["message"]
        assert "lorareg_" not in refused.text
    assert value(scrape(guarded.http, TOKEN), "lorareg_webhook_deliveries_pending") >= 0


# The documentation's names are the server's ---------------------------------------------------------


SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}


def _exposed(http: httpx.Client) -> dict[str, set[str]]:
    """Each metric family /metrics declares, with the names its series may have."""
    families = text_string_to_metric_families(http.get("/metrics").text)
    return {f.name: {f.name + suffix for suffix in SUFFIXES[f.type]} for f in families}


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, child in node.items():
            if key == "expr" and isinstance(child, str):
                yield child
            else:
                yield from _exprs(child)
    elif isinstance(node, list):
        for child in node:
            yield from _exprs(child)


def test_the_dashboard_and_the_docs_name_only_exposed_metrics(server: LiveServer) -> None:
    """Every PromQL expression of the dashboard names only series /metrics has, and shows every family;
    docs/monitoring.md describes every family and nothing else."""
    families = _exposed(server.http)
    series = set().union(*families.values())
    exprs = list(_exprs(json.loads((DOCS / "grafana-dashboard.json").read_text())["panels"]))
    used = {name for expr in exprs for name in re.findall(r"\blorareg_[a-z0-9_]+", expr)}
    assert used <= series, f"not exposed: {used - series}"
    assert [f for f, names in families.items() if not names & used] == [], "families without a panel"
    documented = set(re.findall(r"`(lorareg_[a-z0-9_]+)`", (DOCS / "monitoring.md").read_text()))
    assert documented <= series | families.keys(), f"not exposed: {documented - series - families.keys()}"
    missing = [f for f, names in families.items() if not (names | {f}) & documented]
    assert missing == [], "families docs/monitoring.md does not describe"


# Several workers --------------------------------------------------------------------------------


def test_several_workers_add_up(tmp_path: Path) -> None:
    """``serve --workers 2``: each scrape, whichever worker answers it, reports every worker's requests;
    the shared directory is private to the run and removed after it."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    with running_server(tmp_path / "home", {"TMPDIR": str(temp)}, workers=2) as url:
        (shared,) = temp.glob("lorareg-metrics-*")
        assert shared.stat().st_mode & 0o077 == 0
        sent = 0
        while len({p.stem.rsplit("_", 1)[1] for p in shared.glob("counter_*.db")}) < 2:  # both have counted
            assert sent < 500, "one worker took every connection"
            for _ in range(20):  # a new connection each: the workers take turns accepting them
                assert httpx.get(f"{url}/api/v1/repos", params={"limit": 1}).status_code == 200
            sent += 20
        for _ in range(6):
            with httpx.Client(base_url=url) as http:
                samples = scrape(http)
            counted = value(
                samples, "lorareg_http_requests_total", method="GET", route="/api/v1/repos", status="200"
            )
            assert counted == sent
            assert value(samples, "lorareg_db_pool_connections_max") == 2 * MAX_CONNECTIONS
    assert list(temp.glob("lorareg-metrics-*")) == []
