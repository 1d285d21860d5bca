"""Push and pull throughput through a running lorareg server, next to a plain file copy.

    python bench/transfer.py [--sizes 1,16,128] [--stores filesystem,s3] [--database-url URL]

For each blob store (the local directory, and S3 through ``rclone serve s3``), starts ``lorareg
serve`` on a free port (SQLite in a temporary LOREG_HOME unless told otherwise), registers a synthetic
base model (shape manifest only), builds LoRA adapters of about 1, 16 and 128 MB, and for each
measures, in this process through the real CLI commands:
push (hash + batch check + upload + commit), a cold pull (an empty client cache: download + verify +
write), a warm pull (every blob already in the client cache: no bytes fetched), a plain
``shutil.copyfile`` of the same bytes (the baseline), sha256 of the same bytes (what verifying a
pull costs at least), and a re-push of unchanged content. The client cache lives in the run's
temporary directory, never in the user's.
Targets: a cold pull of ≥ 16 MB within 3× of the plain copy; a re-push moves 0 blob bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' helpers, dev-only

import httpx
import numpy as np
from safetensors.numpy import save_file

from cli.main import cli
from registry.adapters.base_manifest import content_digest
from tests.server_process import running_server

HIDDEN = 4096
RANK = 64
MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MODULE_BYTES = RANK * (HIDDEN + HIDDEN) * 4  # one LoRA pair in F32: 2 MiB


def synthetic_base(layers: int) -> dict:
    """A shape manifest of a Llama-like base (weights never exist; the registry only needs shapes)."""
    weights = {
        f"model.layers.{i}.self_attn.{m}.weight": {"shape": [HIDDEN, HIDDEN], "dtype": "BF16"}
        for i in range(layers)
        for m in MODULES
    }
    files = {"model.safetensors": "0" * 63 + "1"}
    return {"weights": weights, "files": files, "content_digest": content_digest(files)}


def make_adapter(directory: Path, megabytes: int, seed: int) -> int:
    """Write a PEFT adapter of about ``megabytes`` MB; return the weights file's size."""
    directory.mkdir(parents=True)
    pairs = max(1, round(megabytes * 1024 * 1024 / MODULE_BYTES))
    rng = np.random.default_rng(seed)
    tensors = {}
    for k in range(pairs):
        layer, module = divmod(k, len(MODULES))
        key = f"base_model.model.model.layers.{layer}.self_attn.{MODULES[module]}"
        tensors[f"{key}.lora_A.weight"] = rng.standard_normal((RANK, HIDDEN), dtype=np.float32)
        tensors[f"{key}.lora_B.weight"] = rng.standard_normal((HIDDEN, RANK), dtype=np.float32)
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": RANK,
        "lora_alpha": 2 * RANK,
        "target_modules": list(MODULES),
        "base_model_name_or_path": "bench-llama",
        "revision": None,
    }
    (directory / "adapter_config.json").write_text(json.dumps(config))
    return (directory / "adapter_model.safetensors").stat().st_size


def lorareg(url: str, *args: str) -> dict:
    """Run a CLI command in this process (no interpreter start-up in the timings); return its JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["--url", url, "--json", *args], standalone_mode=False)
    return json.loads(out.getvalue())


def pull(url: str, repo: str, output: Path, cache: Path) -> dict:
    """``lorareg pull`` with ``LOREG_CACHE=cache``."""
    previous = os.environ.get("LOREG_CACHE")
    os.environ["LOREG_CACHE"] = str(cache)
    try:
        return lorareg(url, "pull", repo, "-o", str(output))
    finally:
        if previous is None:
            del os.environ["LOREG_CACHE"]
        else:
            os.environ["LOREG_CACHE"] = previous


def cold_pull(url: str, repo: str, output: Path, caches: Path) -> dict:
    """A pull into an empty client cache of its own: every byte comes from the server."""
    caches.mkdir(exist_ok=True)
    return pull(url, repo, output, Path(tempfile.mkdtemp(dir=caches)))


def best_of(repeat: int, fn, *args) -> tuple[float, object]:
    """The fastest of ``repeat`` calls of ``fn(*args)``: (seconds, its result)."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        runs.append((time.perf_counter() - start, result))
    return min(runs, key=lambda run: run[0])


@contextlib.contextmanager
def blob_store_settings(store: str, work: Path) -> Iterator[dict[str, str]]:
    """``LOREG_*`` settings for the store to measure: the local directory, or S3 (``rclone serve s3``,
    a real S3 server that checks signatures, with presigned uploads and downloads)."""
    if store == "filesystem":
        yield {}
        return
    from tests.s3_servers import rclone_server  # dev-only: the same S3 server the tests use

    with rclone_server(work / "s3") as server:
        overrides = server.settings_overrides()
        yield {"LOREG_BLOB_URL": server.blob_url("bench")} | {
            f"LOREG_{key.upper()}": str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in overrides.items()
        }


def sha256_of(path: Path) -> str:
    """The verification every pull must do: the floor under pull time on a slow-hashing CPU."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def measure(url: str, work: Path, sizes: list[int], repeat: int) -> None:
    """Print one table: push, pull and plain-copy throughput and the re-push per adapter size."""
    layers = max(sizes) * 1024 * 1024 // (MODULE_BYTES * len(MODULES)) + 2
    base = synthetic_base(layers)
    httpx.post(f"{url}/api/v1/bases", json={"name": "bench-llama", "manifest": base}).raise_for_status()
    print(
        f"{'size':>8} {'push MB/s':>10} {'pull MB/s':>10} {'copy MB/s':>10} "
        f"{'pull/copy':>10} {'sha256 MB/s':>12} {'warm pull s':>12} {'re-push s':>10} {'re-push bytes':>14}"
    )
    for megabytes in sizes:
        adapter = work / f"adapter-{megabytes}"
        if not adapter.exists():
            make_adapter(adapter, megabytes, seed=megabytes)
        weights = adapter / "adapter_model.safetensors"
        mb = weights.stat().st_size / 1e6
        repo = f"bench/adapter-{megabytes}"
        push_args = ("push", str(adapter), repo, "--base", base["content_digest"])
        push_s, _ = best_of(1, lorareg, url, *push_args)
        repush_s, repush = best_of(repeat, lorareg, url, *push_args)
        pulled, caches = work / f"pulled-{megabytes}", work / f"caches-{megabytes}"
        pull_s, _ = best_of(repeat, cold_pull, url, repo, pulled, caches)
        warm_s, _ = best_of(repeat, pull, url, repo, pulled, next(caches.iterdir()))
        copy_s, _ = best_of(repeat, shutil.copyfile, weights, work / f"copy-{megabytes}")
        hash_s, _ = best_of(repeat, sha256_of, weights)
        print(
            f"{megabytes:>6}MB {mb / push_s:>10.0f} {mb / pull_s:>10.0f} {mb / copy_s:>10.0f} "
            f"{pull_s / copy_s:>9.1f}x {mb / hash_s:>12.0f} {warm_s:>12.3f} {repush_s:>10.3f} "
            f"{repush['uploaded_bytes']:>14}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,16,128", help="adapter sizes in MB")
    parser.add_argument("--stores", default="filesystem,s3", help="blob stores to measure: filesystem, s3")
    parser.add_argument("--database-url", help="LOREG_DATABASE_URL for the server (default SQLite)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for store in args.stores.split(","):
            with blob_store_settings(store, work) as settings:
                if args.database_url:
                    settings["LOREG_DATABASE_URL"] = args.database_url
                with running_server(work / f"home-{store}", settings) as url:
                    print(f"\n{store} blob store, server {url}, best of {args.repeat}")
                    measure(url, work, sizes, args.repeat)


if __name__ == "__main__":
    main()
