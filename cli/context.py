"""The object every command receives: settings, output mode and a lazily opened API client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import click

from cli.client import RegistryClient
from cli.credentials import load_token
from registry.config import Settings


@dataclass
class AppContext:
    settings: Settings
    as_json: bool
    _client: RegistryClient | None = None

    @property
    def client(self) -> RegistryClient:
        if self._client is None:
            token = self.settings.token or load_token(self.settings.credentials_file, self.settings.url)
            self._client = RegistryClient(self.settings.url, token, progress=not self.as_json)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def emit(self, data: Any, human: str | None = None) -> None:
        """Print ``data`` as JSON under ``--json``, else the human text."""
        if self.as_json:
            click.echo(json.dumps(data, indent=2, default=str))
        elif human is not None:
            click.echo(human)


pass_app = click.make_pass_decorator(AppContext)
