"""The one settings object: environment variables prefixed ``LOREG_``, embedded defaults.

The API, the CLI and the workers all read their configuration from :class:`Settings`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "lorareg"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOREG_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Directory for the embedded defaults.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in home.")
    blob_url: str | None = Field(default=None, description="Blob store URL; default a directory in home.")
    host: str = "127.0.0.1"
    port: int = 8000
    max_blob_size: int = Field(default=4 * 1024**3, description="Largest accepted upload, in bytes.")
    max_config_size: int = Field(default=1024**2, description="Largest accepted adapter_config.json.")
    max_json_body: int = Field(
        default=8 * 1024**2, description="Largest accepted request body outside blob uploads, in bytes."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Server log lines: text, or one JSON object per line (json)."
    )

    # S3-compatible blob store (LOREG_BLOB_URL=s3://bucket/prefix).
    s3_endpoint: str | None = Field(default=None, description="host:port of the S3 server; AWS when unset.")
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_secure: bool = Field(default=True, description="Use HTTPS to reach the S3 server.")
    s3_region: str = "us-east-1"
    s3_public_endpoint: str | None = Field(
        default=None, description="Endpoint clients reach for presigned URLs, when not s3_endpoint."
    )
    presign_downloads: bool = Field(
        default=True, description="Answer blob GETs with a 307 to a presigned URL (else proxy the bytes)."
    )
    presign_uploads: bool = Field(default=True, description="Hand clients presigned PUT URLs for uploads.")
    presign_expiry: int = Field(default=900, description="Lifetime of presigned URLs, in seconds.")
    search_cache_entries: int = Field(
        default=1024, description="Search answers each API process keeps until a change they see (0: none)."
    )

    # Authentication.
    auth: Literal["off", "required"] = Field(
        default="off", description="'required' in production: every request needs a bearer token."
    )
    anonymous_read: bool = Field(default=False, description="With auth required, reads need no token.")
    metrics_token: str | None = Field(
        default=None, description="Bearer token /metrics requires (LOREG_METRICS_TOKEN); open when unset."
    )

    # Jobs.
    device: str = Field(default="auto", description="Compute device: auto (CUDA if present), cpu, cuda:N.")
    executor: Literal["inline", "celery"] = Field(default="inline", description="Where jobs run.")
    broker_url: str = Field(default="redis://127.0.0.1:6379/0", description="Celery broker URL.")
    inline_workers: int = Field(
        default=2, description="Threads running jobs inside the API (executor=inline)."
    )
    job_timeout: int = Field(default=3600, description="Seconds a job may run before it is failed.")
    job_heartbeat: float = Field(default=10.0, description="Seconds between a running job's heartbeats.")
    job_redelivery: int = Field(
        default=300, description="Seconds before a job whose worker vanished is handed to another (Redis)."
    )

    # Webhooks.
    webhook_attempts: int = Field(default=6, description="Deliveries tried this many times, then failed.")
    webhook_backoff: float = Field(default=2.0, description="Seconds before the first retry; doubles.")
    webhook_allow_private: bool = Field(
        default=False, description="Allow webhook URLs on loopback, link-local and private addresses."
    )

    # Client side (the CLI).
    url: str = "http://127.0.0.1:8000"
    token: str | None = None
    served_base: str | None = Field(
        default=None, description="The base model SHA an inference server runs (the vLLM resolver checks it)."
    )
    credentials_file: Path = Field(
        default_factory=lambda: Path.home() / ".config" / "lorareg" / "credentials.json",
        description="Where `lorareg login` keeps tokens, one per registry URL (mode 0600).",
    )
    cache: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "lorareg",
        description="Content-addressed blob cache for pulls (LOREG_CACHE).",
    )

    @field_validator("served_base", "token")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        """``LOREG_SERVED_BASE=`` (as a compose file or a manifest leaves it) means no value."""
        return value or None

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'lorareg.db'}"

    @cached_property
    def resolved_blob_url(self) -> str:
        return self.blob_url or f"file://{self.home}"
