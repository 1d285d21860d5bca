"""The task every executor runs: claim the job, fetch its inputs, compute, upload, record.

Idempotent and safe to redeliver: a finished job is a no-op, a job running on a live worker (fresh
heartbeat) is left alone, and outputs are content-addressed, so a rerun after a crash commits the same
version as the first run would have. The outputs are uploaded to the blob store with no transaction
open (on SQLite a write transaction holds the database's one write lock); one short transaction then
records them and the version. A crash in between leaves only unreferenced blobs, which gc removes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from registry.adapters.model_card import Lineage
from registry.principal import REGISTRY
from registry.refs import RepoName
from registry.runtime import Runtime
from registry.services import bases, blobs, jobs, versions
from registry.services.blobs import FileEntry
from registry.services.push import PushRequest, push_version
from registry.storage import BlobStore
from registry.storage.base import CHUNK_SIZE

logger = logging.getLogger("lorareg.jobs")


class JobCancelled(Exception):
    """The job was cancelled while it ran."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(runtime: Runtime, job_id: str, *, worker: str | None = None) -> str | None:
    """Run one job to its end; return its final status (None when there was nothing to do)."""
    try:
        from registry.compute.device import select_device  # torch: workers only
    except ImportError as exc:
        with runtime.db.transaction() as session:
            jobs.finish_job(
                session,
                job_id,
                status="failed",
                error=f"this worker cannot compute ({exc}); install it with pip install 'lorareg[worker]'",
            )
        return "failed"
    settings = runtime.settings
    device = select_device(settings.device)
    device_name = f"cuda:{device.index or 0}" if device.type == "cuda" else device.type
    with runtime.db.transaction() as session:
        job = jobs.claim_job(
            session,
            job_id,
            worker=worker or worker_name(),
            device=device_name,
            stale_after=timedelta(seconds=3 * settings.job_heartbeat),
        )
        if job is None:
            return None
        kind, inputs, params, output = job.kind, job.inputs["versions"], job.params, job.output
    cancelled = threading.Event()
    stop = threading.Event()
    beats = threading.Thread(target=_heartbeat, args=(runtime, job_id, cancelled, stop), daemon=True)
    beats.start()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix=f"lorareg-job-{job_id}-") as scratch:
            work = Path(scratch)
            directories = _fetch_inputs(runtime, inputs, work)
            if cancelled.is_set():
                raise JobCancelled
            result = COMPUTE[kind](Task(runtime, inputs, directories, params, work, device))
            if cancelled.is_set():
                raise JobCancelled
            files = upload_outputs(runtime.store, work / "output", max_size=settings.max_blob_size)
            if cancelled.is_set():
                raise JobCancelled
            if time.monotonic() - started > settings.job_timeout:
                raise TimeoutError(f"the job ran {time.monotonic() - started:.0f} s, over LOREG_JOB_TIMEOUT")
            with runtime.db.transaction() as session:
                record = _publish(runtime, session, job_id, kind, inputs, params, output, files, result)
                jobs.finish_job(session, job_id, status="succeeded", result=record)
        return "succeeded"
    except JobCancelled:
        with runtime.db.transaction() as session:
            jobs.finish_job(session, job_id, status="cancelled", error="cancelled while running")
        return "cancelled"
    except Exception as exc:  # the job failed; the worker goes on
        logger.exception("job %s failed", job_id)
        with runtime.db.transaction() as session:
            jobs.finish_job(session, job_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        stop.set()
        beats.join()


def _heartbeat(runtime: Runtime, job_id: str, cancelled: threading.Event, stop: threading.Event) -> None:
    while not stop.wait(runtime.settings.job_heartbeat):
        with runtime.db.transaction() as session:
            if jobs.heartbeat(session, job_id):
                cancelled.set()


def _fetch_inputs(runtime: Runtime, inputs: list[dict[str, Any]], work: Path) -> list[Path]:
    directories = []
    with runtime.db.transaction(write=False) as session:
        for i, item in enumerate(inputs):
            version = versions.get_by_digest(session, item["repo"], item["digest"])
            directory = work / f"input-{i}"
            versions.export_version(version, runtime.store, directory)
            directories.append(directory)
    return directories


def _fetch_base(runtime: Runtime, base_digest: str, work: Path) -> tuple[Path, str]:
    """The base model's files, from the blob store, into ``work/base``; and the base's name."""
    with runtime.db.transaction(write=False) as session:
        base = bases.get_base(session, base_digest)
        name, stored = base.name, base.stored_files
    if not stored:
        raise RuntimeError(
            f"the weights of base model {name} (sha256:{base_digest}) are not in the registry; upload them "
            f"with `lorareg base register DIR --name {name} --with-weights`"
        )
    versions.export_files([(f["path"], f["digest"]) for f in stored], runtime.store, work / "base")
    return work / "base", name


@dataclass(frozen=True)
class Task:
    """What a compute step gets: the inputs (as resolved at submission) and their files, the params, a
    scratch directory (write outputs under ``work/output``) and the device."""

    runtime: Runtime
    inputs: list[dict[str, Any]]
    directories: list[Path]
    params: dict[str, Any]
    work: Path
    device: Any


def _merge(task: Task) -> dict[str, Any]:
    from registry.compute.lora import load_adapter, save_adapter
    from registry.compute.merge import merge_adapters

    adapters = [load_adapter(d, device=task.device) for d in task.directories]
    options = {k: v for k, v in task.params.items() if k not in ("method", "weights")}
    merged = merge_adapters(
        adapters, task.params["weights"], task.params["method"], device=task.device, **options
    )
    save_adapter(task.work / "output", merged.adapter)
    return {"report": merged.report}


def _diff(task: Task) -> dict[str, Any]:
    from registry.compute.diff import adapter_diff, plot_heatmap
    from registry.compute.lora import load_adapter

    first, second = (load_adapter(d, device=task.device) for d in task.directories)
    diff = adapter_diff(first, second)
    (task.work / "output").mkdir()
    first_ref, second_ref = (item.get("ref") or f"{item['repo']}#{item['number']}" for item in task.inputs)
    plot_heatmap(
        diff,
        task.work / "output" / "heatmap.png",
        names=(first_ref, second_ref),
        scale=task.params.get("scale", "max"),
    )
    return {"report": diff.to_json()}


def _merge_base(task: Task) -> dict[str, Any]:
    from registry.compute.base_merge import merge_into_base
    from registry.compute.lora import load_adapter

    (adapter_dir,) = task.directories
    base_dir, _ = _fetch_base(task.runtime, task.inputs[0]["base"], task.work)
    report = merge_into_base(
        load_adapter(adapter_dir, device=task.device), base_dir, task.work / "output", device=task.device
    )
    return {"report": report}


def _extract(task: Task) -> dict[str, Any]:
    from registry.compute.extract import extract_lora
    from registry.compute.lora import save_adapter

    (finetuned_dir,) = task.directories
    base_dir, base_name = _fetch_base(task.runtime, task.inputs[0]["base"], task.work)
    adapter, report = extract_lora(
        base_dir,
        finetuned_dir,
        rank=task.params.get("rank"),
        energy=task.params.get("energy"),
        base_model_name_or_path=base_name,
        device=task.device,
    )
    save_adapter(task.work / "output", adapter)
    return {"report": report}


COMPUTE: dict[str, Callable[[Task], dict[str, Any]]] = {
    "merge": _merge,
    "diff": _diff,
    "merge_base": _merge_base,
    "extract": _extract,
}
OUTPUT_KIND = {"merge": "adapter", "extract": "adapter", "merge_base": "model"}


def upload_outputs(store: BlobStore, directory: Path, *, max_size: int) -> list[FileEntry]:
    """Put every file of ``directory`` (what the job made) into the blob store; touch no database."""
    entries = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        hasher = hashlib.sha256()
        for chunk in _chunks(path):
            hasher.update(chunk)
        size = store.ingest(hasher.hexdigest(), _chunks(path), max_size=max_size)
        entries.append(FileEntry(path.relative_to(directory).as_posix(), hasher.hexdigest(), size))
    return entries


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield chunk


def _publish(
    runtime: Runtime,
    session: Any,
    job_id: str,
    kind: str,
    inputs: list[dict[str, Any]],
    params: dict[str, Any],
    output: dict[str, Any] | None,
    files: list[FileEntry],
    result: dict[str, Any],
) -> dict[str, Any]:
    """Record the uploaded outputs (and the version they make), in the transaction that marks the job
    succeeded."""
    for entry in files:
        blobs.record_upload(session, entry.digest, entry.size, REGISTRY)
    if kind == "diff":
        (heatmap,) = files
        return {
            **result,
            "heatmap": {
                "digest": f"sha256:{heatmap.digest}",
                "size": heatmap.size,
                "url": f"/api/v1/blobs/sha256:{heatmap.digest}",
            },
        }
    assert output is not None
    pushed = push_version(
        session,
        runtime.store,
        RepoName.parse(output["repo"]),
        PushRequest(
            files=files,
            base_sha=inputs[0]["base"],
            message=_message(kind, params, inputs, job_id),
            kind=OUTPUT_KIND[kind],
            author=f"job:{job_id}",
            provenance={"job": job_id, "kind": kind, "params": params},
            tags=[output["tag"]] if output.get("tag") else [],
            parents=[f"{item['repo']}@sha256:{item['digest']}" for item in inputs],
            lineage=Lineage(job=job_id, kind=kind, inputs=inputs, params=params, report=result["report"]),
        ),
        principal=REGISTRY,
        max_config_size=runtime.settings.max_config_size,
    )
    version = pushed.version
    return {
        **result,
        "version": {
            "repo": output["repo"],
            "number": version.number,
            "digest": f"sha256:{version.digest}",
            "created": pushed.created,
        },
    }


def _message(kind: str, params: dict[str, Any], inputs: list[dict[str, Any]], job_id: str) -> str:
    sources = ", ".join(f"{item['repo']}#{item['number']}" for item in inputs)
    what = {
        "merge": f"{params.get('method')} merge of",
        "merge_base": "merged into its base:",
        "extract": f"LoRA extracted ({', '.join(f'{k} {v}' for k, v in params.items())}) from",
    }[kind]
    return f"{what} {sources} (job {job_id})"
