"""Jobs end to end, on both executors: submit over the API, compute on a worker, use the result."""

from __future__ import annotations

import copy
from pathlib import Path

import redis
import torch
from make_tiny_adapter import make_adapter
from peft import PeftModel
from transformers import AutoModelForCausalLM

from registry.jobs.celery_app import GPU_QUEUE_KEY
from tests.cli.test_cli import logits, run, run_json
from tests.conftest import LiveServer, TinyBase
from tests.helpers import push, register_base
from tests.jobs.conftest import Pushed, wait_for


def test_merge_job_makes_a_version_that_loads_in_peft(
    job_server: LiveServer, two_adapters: list[Pushed], tiny_base: TinyBase, repo: str, tmp_path: Path
) -> None:
    a, b = two_adapters
    body = {
        "kind": "merge",
        "inputs": [f"{a.repo}:latest", f"{b.repo}@{b.digest}"],
        "params": {"method": "cat", "weights": [0.7, 0.3]},
        "into": f"{repo}-blend:candidate",
    }
    submitted = job_server.http.post("/api/v1/jobs", json=body)
    assert submitted.status_code == 202, submitted.text
    job = wait_for(job_server.http, submitted.json()["id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["attempts"] == 1 and job["worker"] and job["device"] == "cpu"
    assert [i["digest"] for i in job["inputs"]] == [
        a.digest.removeprefix("sha256:"),
        b.digest.removeprefix("sha256:"),
    ]
    version = job["result"]["version"]

    shown = job_server.http.get(f"/api/v1/repos/{repo}-blend/versions/candidate").json()
    assert shown["digest"] == version["digest"]
    assert shown["parents"] == [f"{a.repo}@{a.digest}", f"{b.repo}@{b.digest}"]
    assert shown["provenance"]["job"] == job["id"] and shown["provenance"]["params"]["method"] == "cat"

    out = tmp_path / "merged"
    run(job_server, "pull", f"{repo}-blend:candidate", "-o", str(out))
    for name, pushed in (("a", a), ("b", b)):
        run(job_server, "pull", f"{pushed.repo}@{pushed.digest}", "-o", str(tmp_path / name))
    reference = PeftModel.from_pretrained(
        copy.deepcopy(tiny_base.model), str(tmp_path / "a"), adapter_name="a"
    )
    reference.load_adapter(str(tmp_path / "b"), adapter_name="b")
    reference.add_weighted_adapter(["a", "b"], [0.7, 0.3], "blend", combination_type="cat")
    reference.set_adapter("blend")
    merged = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(out)).eval()
    assert torch.allclose(logits(merged), logits(reference.eval()), atol=1e-5)


def test_identical_job_returns_the_existing_one(
    job_server: LiveServer, two_adapters: list[Pushed], repo: str
) -> None:
    a, b = two_adapters
    body = {
        "kind": "merge",
        "inputs": [f"{a.repo}@{a.digest}", f"{b.repo}@{b.digest}"],
        "params": {"method": "sum"},
        "into": f"{repo}-sum",
    }
    first = job_server.http.post("/api/v1/jobs", json=body).json()
    wait_for(job_server.http, first["id"])
    again = job_server.http.post("/api/v1/jobs", json=body)
    assert again.status_code == 200 and again.json()["id"] == first["id"] and again.json()["created"] is False
    assert len(job_server.http.get(f"/api/v1/repos/{repo}-sum/versions").json()) == 1


def test_diff_job_reports_and_is_answered_from_the_stored_report(
    job_server: LiveServer, two_adapters: list[Pushed], tmp_path: Path
) -> None:
    a, b = two_adapters
    report = run_json(
        job_server, "diff", f"{a.repo}:latest", f"{b.repo}:latest", "--plot", str(tmp_path / "d.png")
    )
    assert len(report["report"]["modules"]) == 14
    assert all(m["relative"] >= 0 for m in report["report"]["modules"])
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    listed = job_server.http.get("/api/v1/jobs", params={"kind": "diff"}).json()
    again = run(job_server, "diff", f"{a.repo}:latest", f"{b.repo}:latest")
    assert "already exists" in again.stderr and "self_attn.q_proj" in again.stdout
    assert len(job_server.http.get("/api/v1/jobs", params={"kind": "diff"}).json()) == len(listed)


def test_bad_jobs_are_refused_or_fail_clearly(
    job_server: LiveServer, two_adapters: list[Pushed], other_base: TinyBase, adapter_factory, repo: str
) -> None:
    a, b = two_adapters
    unknown = job_server.http.post(
        "/api/v1/jobs",
        json={"kind": "merge", "inputs": [a.repo], "into": f"{repo}-x", "params": {"method": "average"}},
    )
    assert unknown.status_code == 400 and "unknown merge method" in unknown.json()["error"]["message"]
    weights = job_server.http.post(
        "/api/v1/jobs",
        json={"kind": "merge", "inputs": [a.repo, b.repo], "into": f"{repo}-x", "params": {"weights": [1.0]}},
    )
    assert weights.status_code == 400 and "one weight per adapter" in weights.json()["error"]["message"]
    failing = job_server.http.post(
        "/api/v1/jobs",
        json={
            "kind": "merge",
            "inputs": [a.repo, b.repo],
            "into": f"{repo}-x",
            "params": {"method": "svd", "svd_rank": -3},
        },
    )
    job = wait_for(job_server.http, failing.json()["id"])
    assert job["status"] == "failed" and "svd_rank" in job["error"]
    assert job_server.http.get(f"/api/v1/repos/{repo}-x").status_code == 404
    done = run(
        job_server, "merge", a.repo, b.repo, "--method", "svd", "--rank", "-3", "--into", f"{repo}-x", check=1
    )
    assert "failed" in done.stderr


def test_cli_merge_follows_the_job(job_server: LiveServer, two_adapters: list[Pushed], repo: str) -> None:
    a, b = two_adapters
    done = run(
        job_server,
        "merge",
        a.repo,
        b.repo,
        "--method",
        "ties_svd",
        "--density",
        "0.5",
        "--weights",
        "1,0.5",
        "--into",
        f"{repo}-ties:v1",
    )
    assert "queued" in done.stderr or "running" in done.stderr
    assert "succeeded" in done.stderr and f"merged into {repo}-ties#1" in done.stdout
    listed = run_json(job_server, "jobs", "--status", "succeeded", "--kind", "merge")
    assert any(j["output"]["repo"] == f"{repo}-ties" for j in listed)
    job_id = next(j["id"] for j in listed if j["output"]["repo"] == f"{repo}-ties")
    assert "succeeded" in run(job_server, "jobs", "show", job_id).stdout
    assert "already succeeded" in run(job_server, "jobs", "cancel", job_id, check=1).stderr


def test_merge_base_makes_a_model_that_equals_peft_merge_and_unload(
    job_server: LiveServer, two_adapters: list[Pushed], tiny_base: TinyBase, repo: str, tmp_path: Path
) -> None:
    a, _ = two_adapters
    run(job_server, "base", "register", str(tiny_base.path), "--name", "tiny-llama", "--with-weights")
    made = run_json(job_server, "merge-base", f"{a.repo}@{a.digest}", "--into", f"{repo}-model:v1")
    version = made["result"]["version"]
    shown = run_json(job_server, "show", f"{repo}-model:v1")
    assert shown["config"]["kind"] == "model" and shown["parents"] == [f"{a.repo}@{a.digest}"]

    out = tmp_path / "model"
    run(job_server, "pull", f"{repo}-model@{version['digest']}", "-o", str(out))
    run(job_server, "pull", f"{a.repo}@{a.digest}", "-o", str(tmp_path / "adapter"))
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    reference = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(tmp_path / "adapter"))
    assert torch.allclose(logits(merged), logits(reference.merge_and_unload().eval()), atol=1e-5)


def test_merge_base_without_stored_weights_fails_clearly(
    job_server: LiveServer, other_base: TinyBase, repo: str, tmp_path: Path
) -> None:
    register_base(job_server.http, other_base.path, name="other-llama")
    make_adapter(copy.deepcopy(other_base.model), tmp_path / "adapter", seed=5, r=4, base_name="other-llama")
    pushed = push(job_server.http, f"{repo}-other", tmp_path / "adapter", base=other_base.content_digest)
    assert pushed.status_code == 201, pushed.text
    failed = run(job_server, "merge-base", f"{repo}-other", "--into", f"{repo}-other-model", check=1)
    assert "--with-weights" in failed.stderr
    assert job_server.http.get(f"/api/v1/repos/{repo}-other-model").status_code == 404


def test_extract_recovers_the_adapter_from_a_fine_tune(
    job_server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    register_base(job_server.http, tiny_base.path)
    run(job_server, "base", "register", str(tiny_base.path), "--name", "tiny-llama", "--with-weights")
    adapter = adapter_factory(seed=61, r=8)
    finetuned = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(adapter)).merge_and_unload()
    finetuned.save_pretrained(tmp_path / "finetuned", safe_serialization=True)
    pushed = run_json(
        job_server,
        "push",
        str(tmp_path / "finetuned"),
        f"{repo}-ft:v1",
        "--model",
        "--base",
        tiny_base.content_digest,
    )
    assert pushed["created"]
    refused = run(job_server, "extract", f"{repo}-ft:v1", "--into", f"{repo}-x", check=2)
    assert "--rank or --energy" in refused.stderr

    made = run_json(job_server, "extract", f"{repo}-ft:v1", "--rank", "8", "--into", f"{repo}-extracted:v1")
    from_dir = run_json(
        job_server,
        "extract",
        str(tmp_path / "finetuned"),
        "--base",
        tiny_base.content_digest,
        "--rank",
        "8",
        "--into",
        f"{repo}-extracted:v1",
    )
    assert from_dir["result"]["version"]["digest"] == made["result"]["version"]["digest"]  # same content
    assert from_dir["inputs"][0]["repo"] == f"{repo}-extracted-source"
    out = tmp_path / "extracted"
    run(job_server, "pull", f"{made['result']['version']['repo']}:v1", "-o", str(out))
    extracted = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(out)).eval()
    original = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(adapter)).eval()
    assert torch.allclose(logits(extracted), logits(original), atol=1e-4)
    assert not torch.allclose(logits(extracted), logits(tiny_base.model), atol=1e-3)


def test_routing_to_a_gpu_queue_and_cancelling_a_queued_job(
    job_server: LiveServer, two_adapters: list[Pushed], repo: str
) -> None:
    a, b = two_adapters
    body = {"kind": "merge", "inputs": [a.repo, b.repo], "params": {"method": "cat"}, "into": f"{repo}-gpu"}
    if job_server.settings.executor == "celery":  # a gpu worker advertises itself in Redis
        redis.Redis.from_url(job_server.settings.broker_url).set(GPU_QUEUE_KEY, "1", ex=30)
        auto = job_server.http.post("/api/v1/jobs", json=body).json()
        assert auto["queue"] == "gpu"  # no gpu worker really consumes it here: it stays queued
        redis.Redis.from_url(job_server.settings.broker_url).delete(GPU_QUEUE_KEY)
        cancelled = run_json(job_server, "jobs", "cancel", auto["id"])
        assert cancelled["status"] == "cancelled"
        assert wait_for(job_server.http, auto["id"])["status"] == "cancelled"
        assert job_server.http.get(f"/api/v1/repos/{repo}-gpu").status_code == 404
    on_cpu = job_server.http.post("/api/v1/jobs", json={**body, "device": "cpu"}).json()
    assert on_cpu["queue"] == "cpu" and wait_for(job_server.http, on_cpu["id"])["status"] == "succeeded"
