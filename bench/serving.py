"""The server the benchmarks measure: ``lorareg serve`` in a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


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
