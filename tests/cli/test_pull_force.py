"""`pull -o DIR` into a directory that already holds something: a previous pull of the same repository
is updated, anything else is refused (and left untouched) unless --force."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_cli import run, run_json
from tests.conftest import LiveServer, TinyBase

WEIGHTS = "adapter_model.safetensors"


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every entry under ``directory``: its bytes (files) and modification time."""
    return {
        str(p.relative_to(directory)): (p.read_bytes() if p.is_file() else b"", p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
    }


def test_pull_updates_its_own_directory_and_refuses_others_unless_forced(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    first, second = adapter_factory(seed=21), adapter_factory(seed=22)
    for adapter in (first, second):
        run(server, "push", str(adapter), repo, "--base", tiny_base.content_digest)
    run(server, "push", str(first), f"{repo}-other", "--base", tiny_base.content_digest)

    out = tmp_path / "out"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "todo.txt").write_text("mine")
    (out / WEIGHTS).write_bytes(b"someone else's weights")
    before = snapshot(out)
    refused = run(server, "pull", f"{repo}#1", "-o", str(out), check=1)
    assert "--force" in refused.stderr and f"not a pull of {repo}" in refused.stderr
    assert WEIGHTS in refused.stderr and "notes" in refused.stderr
    assert snapshot(out) == before

    forced = run_json(server, "pull", f"{repo}#1", "-o", str(out), "--force")
    assert forced["number"] == 1 and (out / WEIGHTS).read_bytes() == (first / WEIGHTS).read_bytes()
    assert (out / "notes" / "todo.txt").read_text() == "mine"  # what the version lacks is left

    updated = run_json(server, "pull", f"{repo}#2", "-o", str(out))  # its own pull: no --force needed
    assert updated["number"] == 2 and (out / WEIGHTS).read_bytes() == (second / WEIGHTS).read_bytes()

    before = snapshot(out)
    other = run(server, "pull", f"{repo}-other", "-o", str(out), check=1)
    assert f"not a pull of {repo}-other" in other.stderr and snapshot(out) == before

    empty = tmp_path / "empty"
    empty.mkdir()
    run(server, "pull", repo, "-o", str(empty))
    assert (empty / WEIGHTS).read_bytes() == (second / WEIGHTS).read_bytes()
