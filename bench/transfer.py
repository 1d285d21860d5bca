"""Push and pull throughput through a running lorareg server, next to a plain file copy.

    python bench/transfer.py [--sizes 1,16,128] [--database-url URL]

Starts ``lorareg serve`` on a free port (SQLite + local blobs in a temporary LOREG_HOME unless told
otherwise), registers a synthetic base model (shape manifest only), builds LoRA adapters of about 1, 16
and 128 MB, and for each measures, in this process through the real CLI commands:
push (hash + batch check + upload + commit), pull (download + verify + write), a plain
``shutil.copyfile`` of the same bytes (the baseline), and a re-push of unchanged content.
Targets: pull of ≥ 16 MB within 3× of the plain copy; a re-push moves 0 blob bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from safetensors.numpy import save_file

from cli.main import cli
from registry.adapters.base_manifest import content_digest

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


@contextlib.contextmanager
def running_server(home: Path, database_url: str | None) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {**os.environ, "LOREG_HOME": str(home), "LOREG_PORT": str(port)}
    if database_url:
        env["LOREG_DATABASE_URL"] = database_url
    lorareg = str(Path(sys.executable).parent / "lorareg")
    process = subprocess.Popen(
        [lorareg, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/api/v1/health").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("lorareg serve did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def lorareg(url: str, *args: str) -> dict:
    """Run a CLI command in this process (no interpreter start-up in the timings); return its JSON."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["--url", url, "--json", *args], standalone_mode=False)
    return json.loads(out.getvalue())


def best_of(repeat: int, fn, *args) -> tuple[float, object]:
    """The fastest of ``repeat`` calls of ``fn(*args)``: (seconds, its result)."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn(*args)
        runs.append((time.perf_counter() - start, result))
    return min(runs, key=lambda run: run[0])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,16,128", help="adapter sizes in MB")
    parser.add_argument("--database-url", help="LOREG_DATABASE_URL for the server (default SQLite)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is kept")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with running_server(work / "home", args.database_url) as url:
            layers = max(sizes) * 1024 * 1024 // (MODULE_BYTES * len(MODULES)) + 2
            base = synthetic_base(layers)
            httpx.post(
                f"{url}/api/v1/bases", json={"name": "bench-llama", "manifest": base}
            ).raise_for_status()
            print(
                f"server {url}  base sha256:{base['content_digest'][:12]}  repeats {args.repeat} (best kept)"
            )
            header = (
                f"{'size':>8} {'push MB/s':>10} {'pull MB/s':>10} {'copy MB/s':>10} "
                f"{'pull/copy':>10} {'re-push s':>10} {'re-push bytes':>14}"
            )
            print(header)
            for megabytes in sizes:
                adapter = work / f"adapter-{megabytes}"
                size = make_adapter(adapter, megabytes, seed=megabytes)
                mb = size / 1e6
                repo = f"bench/adapter-{megabytes}"
                push_args = ("push", str(adapter), repo, "--base", base["content_digest"])
                push_s, _ = best_of(1, lorareg, url, *push_args)
                repush_s, repush = best_of(args.repeat, lorareg, url, *push_args)
                pulled = work / f"pulled-{megabytes}"
                pull_s, _ = best_of(args.repeat, lorareg, url, "pull", repo, "-o", str(pulled))
                weights = adapter / "adapter_model.safetensors"
                copy_s, _ = best_of(args.repeat, shutil.copyfile, weights, work / f"copy-{megabytes}")
                print(
                    f"{megabytes:>6}MB {mb / push_s:>10.0f} {mb / pull_s:>10.0f} {mb / copy_s:>10.0f} "
                    f"{pull_s / copy_s:>9.1f}x {repush_s:>10.3f} {repush['uploaded_bytes']:>14}"
                )


if __name__ == "__main__":
    main()
