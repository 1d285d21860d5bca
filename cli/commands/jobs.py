"""``merge``, ``diff``, ``jobs``: server-side computations and following them to the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from cli.client import RegistryClient
from cli.commands.push import directory_files, parse_base
from cli.context import AppContext, pass_app
from registry.errors import RegistryError
from registry.refs import RepoName, RepoRef

POLL_SECONDS = 0.5
FINISHED = ("succeeded", "failed", "cancelled")


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--into``, ``--device`` and ``--no-wait``: the options of every job that makes a version."""
    for option in reversed(
        (
            click.option(
                "--into", required=True, metavar="REPO[:TAG]", help="The repository (and tag) it goes to."
            ),
            click.option(
                "--device",
                type=click.Choice(["auto", "gpu", "cpu"]),
                default="auto",
                show_default=True,
                help="auto: a GPU worker when one is up.",
            ),
            click.option("--no-wait", is_flag=True, help="Print the job id and return at once."),
        )
    ):
        command = option(command)
    return command


def submit(app: AppContext, body: dict[str, Any], *, wait: bool) -> dict[str, Any]:
    """Submit a job; unless ``wait`` is off, follow it to its end, printing each change of state."""
    job = app.client.request("POST", "/api/v1/jobs", json=body)
    if not app.as_json:
        click.echo(
            f"job {job['id']} {'submitted' if job['created'] else 'already exists'} ({_kind(job['kind'])})",
            err=True,
        )
    return follow(app.client, job, quiet=app.as_json) if wait else job


def follow(client: RegistryClient, job: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    shown = None
    while True:
        state = (job["status"], job["worker"], job["device"], job["attempts"])
        if state != shown and not quiet:
            where = f" on {job['worker']}, {job['device']}" if job["status"] == "running" else ""
            again = f" (attempt {job['attempts']})" if job["attempts"] > 1 else ""
            click.echo(f"  {job['status']}{where}{again}", err=True)
            shown = state
        if job["status"] in FINISHED:
            return job
        time.sleep(POLL_SECONDS)
        job = client.request("GET", f"/api/v1/jobs/{job['id']}")


def _outcome(app: AppContext, job: dict[str, Any]) -> None:
    if job["status"] == "failed":
        raise RegistryError(f"job {job['id']} failed: {job['error']}", code="job_failed")
    if job["status"] == "cancelled":
        raise RegistryError(f"job {job['id']} was cancelled", code="job_cancelled")


@click.command()
@click.argument("refs", nargs=-1, required=True)
@click.option(
    "--method", default="svd", show_default=True, help="sum, cat, linear, svd, ties, dare_linear, …"
)
@click.option("--weights", help="Comma-separated, one per adapter [default: all 1].")
@click.option("--density", type=float, help="ties/dare/magnitude_prune: fraction of values kept.")
@click.option("--rank", "svd_rank", type=int, help="Output rank for the svd methods.")
@click.option("--svd-clamp", type=float, help="Quantile to clamp the SVD factors at.")
@click.option("--majority-sign", "majority_sign_method", type=click.Choice(["total", "frequency"]))
@click.option("--seed", type=int, help="DARE's random seed (reproducible masks).")
@output_options
@pass_app
def merge(
    app: AppContext,
    refs: tuple[str, ...],
    method: str,
    weights: str | None,
    into: str,
    device: str,
    no_wait: bool,
    **options: Any,
) -> None:
    """Merge the adapters REFS into a new version of --into (a job on the server's workers)."""
    params = {"method": method, **{k: v for k, v in options.items() if v is not None}}
    if weights:
        try:
            params["weights"] = [float(w) for w in weights.split(",")]
        except ValueError:
            raise click.BadParameter(
                f"{weights!r}: give numbers separated by commas", param_hint="--weights"
            ) from None
    job = submit(
        app,
        {"kind": "merge", "inputs": list(refs), "params": params, "into": into, "device": device},
        wait=not no_wait,
    )
    if no_wait:
        app.emit(job, job["id"])
        return
    _outcome(app, job)
    version = job["result"]["version"]
    report = job["result"]["report"]
    app.emit(
        job,
        f"merged into {version['repo']}#{version['number']} {version['digest']}"
        + (
            f" (max truncation error {report['max_error']:.3g})"
            if report.get("max_error") is not None
            else ""
        ),
    )


@click.command()
@click.argument("first")
@click.argument("second")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), help="Save the heatmap PNG here.")
@click.option(
    "--scale",
    type=click.Choice(["max", "fixed"]),
    default="max",
    show_default=True,
    help="The heatmap's colour range: max, 0 to its largest value; fixed, 0..√2 (plots compare).",
)
@click.option("--top", default=15, show_default=True, help="Modules to list, most changed first.")
@pass_app
def diff(app: AppContext, first: str, second: str, plot: Path | None, scale: str, top: int) -> None:
    """Compare two adapters module by module (a job; the same pair again answers from its stored report)."""
    job = submit(app, {"kind": "diff", "inputs": [first, second], "params": {"scale": scale}}, wait=True)
    _outcome(app, job)
    report = job["result"]["report"]
    if plot:
        heatmap = job["result"]["heatmap"]
        app.client.download(
            heatmap["url"], plot, digest=heatmap["digest"].removeprefix("sha256:"), size=heatmap["size"]
        )
    rows = sorted(report["modules"], key=lambda m: m["relative"], reverse=True)[:top]
    lines = [f"{'module':<48} {'‖ΔW₁‖':>10} {'‖ΔW₂‖':>10} {'‖ΔW₁−ΔW₂‖':>11} {'relative':>9} {'cosine':>7}"]
    lines += [
        f"{m['name']:<48} {m['norm_a']:>10.4g} {m['norm_b']:>10.4g} {m['distance']:>11.4g} "
        f"{m['relative']:>9.3f} {'-' if m['cosine'] is None else format(m['cosine'], '.3f'):>7}"
        for m in rows
    ]
    for side, names in (("only in first", report["only_in_a"]), ("only in second", report["only_in_b"])):
        if names:
            lines.append(f"{side}: {', '.join(names)}")
    if plot:
        lines.append(f"heatmap: {plot}")
    app.emit(job["result"], "\n".join(lines))


@click.command("merge-base")
@click.argument("ref")
@output_options
@pass_app
def merge_base(app: AppContext, ref: str, into: str, device: str, no_wait: bool) -> None:
    """Merge the adapter REF into its base model's weights: a full model version in --into (a job).

    The base's weights must be in the registry (`lorareg base register DIR --with-weights`)."""
    _run_to_version(app, {"kind": "merge_base", "inputs": [ref], "into": into, "device": device}, no_wait)


@click.command()
@click.argument("source")
@click.option("--rank", type=int, help="The LoRA rank of every module.")
@click.option("--energy", type=float, help="Instead of --rank: the smallest rank keeping this fraction.")
@click.option("--base", "base", metavar="BASE", help="With a directory SOURCE: the base it was tuned from.")
@output_options
@pass_app
def extract(
    app: AppContext,
    source: str,
    rank: int | None,
    energy: float | None,
    base: str | None,
    into: str,
    device: str,
    no_wait: bool,
) -> None:
    """Extract a LoRA adapter from a fine-tuned model against its base: an adapter version in --into (a job).

    SOURCE is a model version (ns/name[:tag], …) or a local model directory, which is first pushed as a model
    version to <into>-source (this needs --base)."""
    if (rank is None) == (energy is None):
        raise click.UsageError("give exactly one of --rank or --energy")
    if Path(source).is_dir():
        if base is None:
            raise click.UsageError(
                "a directory SOURCE needs --base NAME@SHA, the base it was fine-tuned from"
            )
        target = RepoRef.parse(into).repo
        entries, _ = app.client.upload_files(directory_files(Path(source)))
        pushed = app.client.request(
            "POST",
            f"{app.client.repo_path(RepoName(target.namespace, f'{target.name}-source'))}/versions",
            json={"kind": "model", "files": entries, "base": parse_base(base), "update_latest": True},
        )
        source = f"{pushed['repo']}@{pushed['digest']}"
        if not app.as_json:
            click.echo(f"pushed {source} (#{pushed['number']})", err=True)
    params = {"rank": rank} if rank is not None else {"energy": energy}
    _run_to_version(
        app,
        {"kind": "extract", "inputs": [source], "params": params, "into": into, "device": device},
        no_wait,
    )


def _run_to_version(app: AppContext, body: dict[str, Any], no_wait: bool) -> None:
    job = submit(app, body, wait=not no_wait)
    if no_wait:
        app.emit(job, job["id"])
        return
    _outcome(app, job)
    version = job["result"]["version"]
    app.emit(job, f"made {version['repo']}#{version['number']} {version['digest']}")


@click.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"]))
@click.option("--kind", type=click.Choice(["merge", "diff", "merge_base", "extract"]))
@click.pass_context
def jobs(ctx: click.Context, status: str | None, kind: str | None) -> None:
    """List jobs (newest first), or show / cancel one."""
    if ctx.invoked_subcommand is not None:
        return
    app: AppContext = ctx.obj
    params = {k: v for k, v in {"status": status, "kind": kind}.items() if v}
    found = app.client.request("GET", "/api/v1/jobs", params=params)
    app.emit(
        found,
        "\n".join(
            f"{j['id']}  {_kind(j['kind']):<10} {j['status']:<10} {_time(j['created_at'])}  "
            f"{', '.join(_ref(i) for i in j['inputs'])} -> {_output(j['output'])}"
            for j in found
        )
        or "no jobs",
    )


@jobs.command("show")
@click.argument("job_id")
@pass_app
def show_job(app: AppContext, job_id: str) -> None:
    """What job JOB_ID takes, does and made, its times and its error."""
    job = app.client.request("GET", f"/api/v1/jobs/{job_id}")
    app.emit(job, describe(job))


def describe(job: dict[str, Any]) -> str:
    """``jobs show``: one field a line."""
    rows = [("kind", _kind(job["kind"])), ("status", job["status"] + _progress(job))]
    rows += [
        ("inputs" if n == 0 else "", f"{_ref(i)}  (#{i['number']}, sha256:{i['digest']})")
        for n, i in enumerate(job["inputs"])
    ]
    params = "  ".join(f"{k}={_value(v)}" for k, v in sorted(job["params"].items()))
    rows += [("params", params or "-"), ("into", _output(job["output"]))]
    rows += [(name, _time(job[f"{name}_at"])) for name in ("created", "started", "finished")]
    rows.append(("duration", _duration(job)))
    if job["worker"]:
        rows.append(("worker", f"{job['worker']} ({job['device']}), attempts {job['attempts']}"))
    if job["result"]:
        rows.append(("result", _result(job["result"])))
    if job["error"]:
        rows.append(("error", job["error"]))
    return f"job {job['id']}\n" + "\n".join(
        f"  {label + ':' if label else '':<10}{text}" for label, text in rows
    )


def _kind(kind: str) -> str:
    return kind.replace("_", "-")  # merge_base is the merge-base command's job


def _ref(item: dict[str, Any]) -> str:
    """The input as the submitter named it (jobs from before refs were kept: by number)."""
    return item.get("ref") or f"{item['repo']}#{item['number']}"


def _output(output: dict[str, Any] | None) -> str:
    if output is None:
        return "- (a report)"
    return output["repo"] + (f":{output['tag']}" if output.get("tag") else "")


def _progress(job: dict[str, Any]) -> str:
    return f" ({job['progress']})" if job["progress"] and job["status"] == "running" else ""


def _value(value: Any) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _time(value: str | None) -> str:
    return "-" if value is None else datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(job: dict[str, Any]) -> str:
    if job["started_at"] is None:
        return "-"
    end = job["finished_at"]
    until = datetime.fromisoformat(end) if end else datetime.now(UTC)
    seconds = (until - datetime.fromisoformat(job["started_at"])).total_seconds()
    if seconds < 1:
        text = f"{seconds * 1000:.0f} ms"
    elif seconds < 60:
        text = f"{seconds:.1f} s"
    else:
        text = f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    return text if end else f"{text} so far"


def _result(result: dict[str, Any]) -> str:
    if "version" in result:
        version = result["version"]
        return f"{version['repo']}#{version['number']} {version['digest']}"
    modules = len(result["report"]["modules"])
    return (
        f"a report of {modules} modules; heatmap {result['heatmap']['digest']} (lorareg diff --plot saves it)"
    )


@jobs.command("cancel")
@click.argument("job_id")
@pass_app
def cancel_job(app: AppContext, job_id: str) -> None:
    job = app.client.request("POST", f"/api/v1/jobs/{job_id}/cancel")
    app.emit(
        job, f"job {job_id}: {'cancelled' if job['status'] == 'cancelled' else 'cancellation requested'}"
    )


@click.command()
@click.option("--queue", type=click.Choice(["gpu", "cpu"]), default="cpu", show_default=True)
@click.option("--concurrency", type=int, default=1, show_default=True, help="Jobs at once.")
@click.option(
    "--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork", show_default=True
)
@pass_app
def worker(app: AppContext, queue: str, concurrency: int, pool: str) -> None:
    """Run a Celery worker for jobs (LOREG_BROKER_URL; the database and blob store of the local settings)."""
    from registry.jobs.celery_app import run_worker

    click.echo(f"lorareg worker: queue {queue}, broker {app.settings.broker_url}", err=True)
    run_worker(app.settings, queue=queue, concurrency=concurrency, pool=pool)
    sys.exit(0)


COMMANDS = [merge, merge_base, extract, diff, jobs, worker]
