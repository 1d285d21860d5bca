"""The real ``lorareg`` command against a live server: the round trip a user makes, and refusals."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import torch
from peft import PeftModel

from tests.bad_inputs import BAD_PUSHES, BadPush, prepare
from tests.cli_runner import LOREG, lorareg
from tests.conftest import LiveServer, TinyBase


def run(server: LiveServer, *args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    done = lorareg(*args, env={**os.environ, "LOREG_URL": server.url})
    if check is not None:
        assert done.returncode == check, (
            f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
        )
    return done


def run_json(server: LiveServer, *args: str) -> dict:
    return json.loads(run(server, "--json", *args).stdout)


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.arange(16).unsqueeze(0)).logits


def test_register_push_log_pull_load(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    registered = run_json(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    assert tiny_base.content_digest in registered["shas"]
    base_ref = f"tiny-llama@{tiny_base.content_digest}"
    adapter = adapter_factory(seed=3)

    pushed = run_json(server, "push", str(adapter), f"{repo}:v1", "--base", base_ref, "-m", "first cut")
    assert pushed["created"] is True and pushed["number"] == 1 and set(pushed["tags"]) == {"latest", "v1"}
    again = run_json(server, "push", str(adapter), f"{repo}:v1", "--base", base_ref)
    assert again["created"] is False and again["digest"] == pushed["digest"] and again["uploaded_bytes"] == 0

    log = run(server, "log", repo).stdout
    assert "#1" in log and pushed["digest"] in log and "first cut" in log and "v1" in log

    out = tmp_path / "pulled"
    for ref in (f"{repo}:v1", f"{repo}@{pushed['digest']}", f"{repo}@{pushed['digest'][7:19]}", f"{repo}#1"):
        pulled = run_json(server, "pull", ref, "-o", str(out), "--base", tiny_base.content_digest)
        assert pulled["digest"] == pushed["digest"]
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (out / name).read_bytes() == (adapter / name).read_bytes()

    original = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(adapter)).eval()
    loaded = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(out)).eval()
    assert torch.equal(logits(original), logits(loaded))
    assert not torch.allclose(logits(loaded), logits(tiny_base.model))  # the adapter does something


def test_pull_refuses_another_base(
    server: LiveServer, tiny_base: TinyBase, other_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    run(server, "base", "register", str(other_base.path), "--name", "other-llama")
    run(server, "push", str(adapter_factory()), repo, "--base", tiny_base.content_digest)
    refused = run(
        server, "pull", repo, "-o", str(tmp_path / "x"), "--base", other_base.content_digest, check=1
    )
    assert tiny_base.content_digest in refused.stderr and other_base.content_digest in refused.stderr
    assert not (tmp_path / "x").exists()


def test_tags_expect_history_and_yank(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    run(server, "push", str(adapter_factory(seed=1)), repo, "--base", tiny_base.content_digest)
    run(server, "push", str(adapter_factory(seed=2)), repo, "--base", tiny_base.content_digest)
    run(server, "tag", f"{repo}#1", "prod")
    stale = run(server, "tag", f"{repo}#2", "prod", "--expect", "#2", check=1)
    assert "stale" in stale.stderr.lower() or "points at #1" in stale.stderr
    run(server, "tag", f"{repo}#2", "prod", "--expect", "#1")
    history = run_json(server, "tags", repo, "--history", "prod")
    assert [(e["old_number"], e["new_number"]) for e in history] == [(1, 2), (None, 1)]
    run(server, "yank", f"{repo}#2", "--reason", "regressed")
    assert run_json(server, "show", f"{repo}:latest")["number"] == 1
    gone = run(server, "pull", f"{repo}:prod", check=1)
    assert "yanked" in gone.stderr and "regressed" in gone.stderr
    run(server, "untag", f"{repo}:prod")
    assert [t["name"] for t in run_json(server, "tags", repo)] == ["latest"]
    assert repo in run(server, "ls").stdout


@pytest.mark.parametrize("case", BAD_PUSHES, ids=lambda c: c.name)
def test_bad_push_exits_1_with_the_message(
    case: BadPush, server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    directory = prepare(case, adapter_factory(), tmp_path)
    base = case.push.get("base", tiny_base.content_digest)
    done = run(server, "push", str(directory), f"{repo}:v1", "--base", base, check=1)
    assert case.says.lower() in done.stderr.lower()
    assert run(server, "show", repo, check=1).stderr.startswith("Error: repository")


@pytest.mark.parametrize(
    "target", ["Acme/bot", "acme/../x", "acme/bot:..", "acme/bot:V1", "acme/" + "y" * 97]
)
def test_bad_names_exit_1(server: LiveServer, adapter_factory, target: str) -> None:
    done = run(server, "push", str(adapter_factory()), target, check=1)
    assert "name" in done.stderr


def test_exit_codes_for_usage_and_network(adapter_factory) -> None:
    usage = subprocess.run([LOREG, "push"], capture_output=True, text=True)
    assert usage.returncode == 2
    offline = subprocess.run([LOREG, "--url", "http://127.0.0.1:9", "ls"], capture_output=True, text=True)
    assert offline.returncode == 3 and "cannot reach" in offline.stderr


def test_serve_starts_on_the_embedded_default(tmp_path: Path) -> None:
    """`lorareg serve` with only LOREG_HOME: migrates a SQLite file, makes the blob directory, answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOREG_")}
    env.update(LOREG_HOME=str(tmp_path / "home"), LOREG_PORT=str(port))
    process = subprocess.Popen([LOREG, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/api/v1/health").json()["status"] == "ok"
                break
            except httpx.HTTPError:
                assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/repos").json() == []
        assert (tmp_path / "home" / "lorareg.db").is_file()
        assert (tmp_path / "home" / "blobs" / "sha256").is_dir()
    finally:
        process.terminate()
        process.wait(timeout=20)
