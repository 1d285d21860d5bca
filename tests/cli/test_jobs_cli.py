"""Jobs through the real CLI on the embedded default (jobs in the server's thread pool): what is refused
at submit, what `jobs` and `jobs show` print, and the diff heatmap's refs and colour scale."""

from __future__ import annotations

import copy
import re
import uuid
from pathlib import Path

import numpy
from make_tiny_adapter import make_adapter, make_base
from matplotlib.image import imread

from registry.adapters.base_manifest import read_base_manifest
from registry.compute.diff import adapter_diff, plot_heatmap
from registry.compute.lora import load_adapter
from tests.cli.test_cli import run, run_json
from tests.conftest import LiveServer, TinyBase
from tests.helpers import every_page

NO_REPR = re.compile(r"[{}\[\]']")  # what a Python dict or list printed as is would show


def jobs_into(server: LiveServer, prefix: str) -> list[dict]:
    """Every job whose output repository starts with ``prefix``."""
    listed = every_page(server.http, "/api/v1/jobs", limit=500)
    return [j for j in listed if j["output"] and j["output"]["repo"].startswith(prefix)]


def test_merge_base_and_extract_are_refused_at_submit_without_the_base_weights(
    server: LiveServer, repo: str, tmp_path: Path
) -> None:
    base_dir, name = tmp_path / "base", f"shapes-only-{uuid.uuid4().hex[:8]}"
    model = make_base(base_dir, seed=131)  # a base of this test's own: nobody uploads its weights
    digest = read_base_manifest(base_dir).content_digest
    run(server, "base", "register", str(base_dir), "--name", name)
    make_adapter(copy.deepcopy(model), tmp_path / "adapter", seed=3, r=4, base_name=name)
    run(server, "push", str(tmp_path / "adapter"), f"{repo}:v1", "--base", digest)
    run(server, "push", str(base_dir), f"{repo}-model:v1", "--model", "--base", digest)

    fix = f"`lorareg base register DIR --name {name} --with-weights`"
    for args in (
        ("merge-base", f"{repo}:v1", "--into", f"{repo}-merged:v1"),
        ("extract", f"{repo}-model:v1", "--rank", "4", "--into", f"{repo}-extracted"),
    ):
        refused = run(server, *args, check=1)
        assert fix in refused.stderr and digest in refused.stderr
        assert "submitted" not in refused.stderr
    api = server.http.post(
        "/api/v1/jobs", json={"kind": "merge_base", "inputs": [f"{repo}:v1"], "into": f"{repo}-merged"}
    )
    assert api.status_code == 409 and api.json()["error"]["code"] == "base_weights_missing"

    wrong = run(server, "extract", f"{repo}:v1", "--rank", "4", "--into", f"{repo}-x", check=1)
    assert f"{repo}#1 is an adapter version; extract takes model versions" in wrong.stderr
    assert "--model" in wrong.stderr
    wrong = run(server, "merge-base", f"{repo}-model:v1", "--into", f"{repo}-x", check=1)
    assert f"{repo}-model#1 is a model version; merge-base takes adapter versions" in wrong.stderr
    assert jobs_into(server, repo) == []  # nothing was queued

    command = re.search(r"`lorareg (base register DIR [^`]+)`", refused.stderr)
    assert command is not None
    run(server, *command.group(1).replace("DIR", str(base_dir)).split())  # the fix, as printed
    made = run_json(server, "merge-base", f"{repo}:v1", "--into", f"{repo}-merged:v1")
    assert made["status"] == "succeeded" and made["result"]["version"]["repo"] == f"{repo}-merged"


def push_pair(server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str) -> None:
    run(server, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    for name, seed, rank in (("a", 11, 8), ("b", 12, 4)):
        adapter = adapter_factory(seed=seed, r=rank)
        run(server, "push", str(adapter), f"{repo}-{name}:v1", "--base", tiny_base.content_digest)


def test_jobs_show_and_list_print_summaries_not_reprs(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str
) -> None:
    push_pair(server, tiny_base, adapter_factory, repo)
    merged = run_json(
        server,
        "merge",
        f"{repo}-a:v1",
        f"{repo}-b",
        "--method",
        "cat",
        "--weights",
        "0.7,0.3",
        "--into",
        f"{repo}-blend:v1",
    )
    first, second = merged["inputs"]

    shown = run(server, "jobs", "show", merged["id"]).stdout
    assert not NO_REPR.search(shown), shown
    lines = [line.split(None, 1) for line in shown.splitlines()]
    assert lines[0] == ["job", merged["id"]]
    fields = dict(line for line in lines[1:] if line[0].endswith(":"))
    assert fields["kind:"] == "merge" and fields["status:"] == "succeeded"
    assert fields["inputs:"] == f"{repo}-a:v1  (#1, sha256:{first['digest']})"
    assert [f"{repo}-b:latest", f"(#1, sha256:{second['digest']})"] in lines  # the ref as given, completed
    assert fields["params:"] == "method=cat  weights=0.7,0.3"
    assert fields["into:"] == f"{repo}-blend:v1"
    assert all(fields[f"{name}:"].endswith(" UTC") for name in ("created", "started", "finished"))
    assert re.fullmatch(r"\d+ ms|\d+\.\d s", fields["duration:"])
    assert fields["result:"] == f"{repo}-blend#1 {merged['result']['version']['digest']}"
    assert (
        run_json(server, "jobs", "show", merged["id"])
        == server.http.get(f"/api/v1/jobs/{merged['id']}").json()
    )

    failed = run(
        server,
        "merge",
        f"{repo}-a:v1",
        f"{repo}-b:v1",
        "--method",
        "svd",
        "--rank",
        "-3",
        "--into",
        f"{repo}-broken",
        check=1,
    )
    (broken,) = jobs_into(server, f"{repo}-broken")
    shown = run(server, "jobs", "show", broken["id"]).stdout
    assert "status:   failed" in shown and re.search(r"^  error:    .*svd_rank", shown, re.M), shown
    assert broken["id"] in failed.stderr

    listed = run(server, "jobs", "--kind", "merge").stdout.splitlines()
    (line,) = [line for line in listed if line.startswith(merged["id"])]
    assert not NO_REPR.search(line)
    assert line.split()[1:3] == ["merge", "succeeded"] and " UTC " in line
    assert line.endswith(f"{repo}-a:v1, {repo}-b:latest -> {repo}-blend:v1")


def test_diff_heatmap_names_the_refs_given_and_takes_a_fixed_scale(
    server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    push_pair(server, tiny_base, adapter_factory, repo)
    first, second = f"{repo}-a:v1", f"{repo}-b#1"
    plots = {scale: tmp_path / f"{scale}.png" for scale in ("max", "fixed")}
    for scale, path in plots.items():
        run(server, "diff", first, second, "--plot", str(path), "--scale", scale)
    jobs = [j for j in run_json(server, "jobs", "--kind", "diff") if j["inputs"][0]["repo"] == f"{repo}-a"]
    assert sorted(j["params"]["scale"] for j in jobs) == ["fixed", "max"]
    assert all([i["ref"] for i in j["inputs"]] == [first, second] for j in jobs)

    # the server's PNG is the one these refs and scale give, and not the one other names would
    a, b = (load_adapter(adapter_factory(seed=seed, r=rank)) for seed, rank in ((11, 8), (12, 4)))
    diff = adapter_diff(a, b)
    for scale, path in plots.items():
        plot_heatmap(diff, tmp_path / "expected.png", names=(first, second), scale=scale)
        assert numpy.array_equal(imread(path), imread(tmp_path / "expected.png")), scale
    plot_heatmap(diff, tmp_path / "unnamed.png", scale="fixed")
    assert not numpy.array_equal(imread(plots["fixed"]), imread(tmp_path / "unnamed.png"))
    assert not numpy.array_equal(imread(plots["fixed"]), imread(plots["max"]))

    fixed = next(j for j in jobs if j["params"]["scale"] == "fixed")
    shown = run(server, "jobs", "show", fixed["id"]).stdout
    assert "params:   scale=fixed" in shown and "into:     - (a report)" in shown
    assert f"result:   a report of 14 modules; heatmap {fixed['result']['heatmap']['digest']}" in shown

    bad = server.http.post(
        "/api/v1/jobs", json={"kind": "diff", "inputs": [first, second], "params": {"scale": "log"}}
    )
    assert bad.status_code == 400 and "scale must be max" in bad.json()["error"]["message"]
    assert (
        "'log' is not one of 'max', 'fixed'"
        in run(server, "diff", first, second, "--scale", "log", check=2).stderr
    )
    after = [j for j in run_json(server, "jobs", "--kind", "diff") if j["inputs"][0]["repo"] == f"{repo}-a"]
    assert len(after) == len(jobs)
