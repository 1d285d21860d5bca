"""``lorareg serve`` in a process of its own on a free loopback port, and a load generator for it: what
the benchmarks measure and the load tests drive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np


@contextlib.contextmanager
def running_server(home: Path, settings: dict[str, str], *, workers: int = 1) -> Iterator[str]:
    """Run ``lorareg serve`` with ``LOREG_HOME=home`` and these ``LOREG_*`` settings; yield its URL.
    Its output goes to ``home/serve.log``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LOREG_HOME": str(home), "LOREG_PORT": str(port), **settings}
    lorareg = str(Path(sys.executable).parent / "lorareg")
    with (home / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [lorareg, "serve", "--workers", str(workers)], env=env, stdout=log, stderr=log
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
                        raise RuntimeError(f"lorareg serve did not start; see {home / 'serve.log'}") from None
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=20)


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


async def drive(
    url: str, paths: list[str], concurrency: int, time_limit: float, headers: dict[str, str] | None = None
) -> Result:
    """Send ``paths`` (with ``headers``) over ``concurrency`` keep-alive connections (stopping at
    ``time_limit`` seconds).

    The client is a bare HTTP/1.1 loop on asyncio streams rather than httpx: it shares the server's
    cores, and a heavier client would measure itself."""
    latencies: list[float] = []
    errors = 0
    queue = iter(paths)
    host, _, port = url.removeprefix("http://").partition(":")
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]
    for reader, writer in connections:  # warm every connection before timing
        await get(reader, writer, "/api/v1/health")
    start = time.perf_counter()
    deadline = start + time_limit

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        for path in queue:
            if time.perf_counter() > deadline:
                return
            t0 = time.perf_counter()
            status = await get(reader, writer, path, headers)
            latencies.append(time.perf_counter() - t0)
            errors += status != 200

    try:
        await asyncio.gather(*(worker(reader, writer) for reader, writer in connections))
    finally:
        for _, writer in connections:
            writer.close()
    return Result(len(latencies), time.perf_counter() - start, latencies, errors)


async def get(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    path: str,
    headers: dict[str, str] | None = None,
) -> int:
    """One keep-alive HTTP/1.1 GET; its status code (the body is read and dropped)."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{lines}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(head[9:12])
