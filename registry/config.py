"""The one settings object: environment variables prefixed ``LOREG_``, embedded defaults.

The API, the CLI and the workers all read their configuration from :class:`Settings`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
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

    # Client side (the CLI).
    url: str = "http://127.0.0.1:8000"
    token: str | None = None

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'lorareg.db'}"

    @cached_property
    def resolved_blob_url(self) -> str:
        return self.blob_url or f"file://{self.home}"
