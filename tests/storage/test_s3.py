"""What only the S3 driver does: ranged GETs, the copy fallback, prefixes, the ``s3://`` factory."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
import urllib3
from minio import Minio
from minio.error import S3Error

from registry.config import Settings
from registry.storage import BlobNotFound, open_blob_store
from registry.storage.s3 import S3BlobStore
from tests.s3_servers import S3Server


@pytest.fixture(params=["moto", "rclone"])
def server(request: pytest.FixtureRequest) -> S3Server:
    return request.getfixturevalue(f"{request.param}_s3")


def bucket_of(server: S3Server) -> str:
    return server.blob_url().removeprefix("s3://").strip("/")


class RecordingPool(urllib3.PoolManager):
    """Notes each request's method, Range header and answered Content-Length."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str | None, str | None]] = []

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:
        response = super().urlopen(method, url, redirect=redirect, **kw)
        headers = kw.get("headers") or {}
        self.requests.append((method, headers.get("Range"), response.headers.get("Content-Length")))
        return response


def test_reads_are_ranged_gets(server: S3Server) -> None:
    pool = RecordingPool()
    client = server.client(http_client=pool)
    store = S3BlobStore(client, bucket_of(server), "p")
    data = os.urandom(20 * 1024 * 1024)
    digest = hashlib.sha256(data).hexdigest()
    store.ingest(digest, [data], max_size=len(data))
    pool.requests.clear()
    assert store.read_at(digest, 1000, 8) == data[1000:1008]
    assert b"".join(store.read_range(digest, 5, 13)) == data[5:13]
    assert pool.requests == [("GET", "bytes=1000-1007", "8"), ("GET", "bytes=5-12", "8")]


class NoCopyMinio(Minio):
    """A client for a server without server-side copy."""

    def copy_object(self, *args: Any, **kwargs: Any) -> Any:
        raise S3Error(urllib3.HTTPResponse(status=501), "NotImplemented", "no copy here", None, None, None)


def test_publishes_by_streaming_when_the_server_cannot_copy(server: S3Server) -> None:
    client = NoCopyMinio(
        server.endpoint, server.access_key, server.secret_key, secure=False, region="us-east-1"
    )
    store = S3BlobStore(client, bucket_of(server))
    data = os.urandom(1000)
    digest = hashlib.sha256(data).hexdigest()
    assert store.ingest(digest, [data], max_size=len(data)) == len(data)
    assert store.read_at(digest, 0, 2000) == data
    assert [key.object_name for key in client.list_objects(store.bucket, recursive=True)] == [
        store.key(digest)
    ]


def test_prefixes_keep_stores_apart(server: S3Server) -> None:
    bucket = bucket_of(server)
    one, two = S3BlobStore(server.client(), bucket, "one"), S3BlobStore(server.client(), bucket, "/two/")
    digest = hashlib.sha256(b"one's").hexdigest()
    one.ingest(digest, [b"one's"], max_size=100)
    assert [info.digest for info in one.iter_blobs()] == [digest]
    assert list(two.iter_blobs()) == []
    with pytest.raises(BlobNotFound):
        two.stat(digest)
    assert one.key(digest) == f"one/blobs/sha256/{digest[:2]}/{digest}"
    assert two.upload_key(digest, "b" * 32) == f"two/uploads/sha256/{digest}/{'b' * 32}"


def test_open_blob_store_s3_url(server: S3Server) -> None:
    settings = Settings(**server.settings_overrides())
    store = open_blob_store(server.blob_url("team/registry"), settings)
    assert isinstance(store, S3BlobStore)
    assert store.prefix == "team/registry/"
    digest = hashlib.sha256(b"x").hexdigest()
    store.ingest(digest, [b"x"], max_size=1)
    keys = [obj.object_name for obj in server.client().list_objects(store.bucket, recursive=True)]
    assert keys == [f"team/registry/blobs/sha256/{digest[:2]}/{digest}"]
    as_url = settings.model_copy(update={"s3_endpoint": f"http://{server.endpoint}", "s3_secure": True})
    assert open_blob_store(f"s3://{store.bucket}/team/registry", as_url).stat(digest).size == 1


def test_rclone_refuses_wrong_credentials_as_an_os_error(rclone_s3: S3Server) -> None:
    settings = Settings(**{**rclone_s3.settings_overrides(), "s3_secret_key": "wrong"})
    with pytest.raises(OSError, match="AccessDenied"):
        open_blob_store(rclone_s3.blob_url(), settings)


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "gs://bucket/prefix", "http://host/blobs"])
def test_open_blob_store_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"use .*s3://bucket/optional/prefix"):
        open_blob_store(url, Settings())
