"""``agent``: the sync agent beside one inference replica (the logic lives in :mod:`cli.agent`)."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import click

from cli.agent.engines import DEFAULT_PORTS, ENGINES, connect
from cli.agent.loop import Agent, AgentOptions
from cli.agent.replica import check_replica_id, default_replica_id
from cli.cache import BlobCache
from cli.context import AppContext, pass_app
from registry.refs import RepoName
from registry.selectors import parse_labels


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": self.formatTime(record),
                "level": record.levelname.lower(),
                "message": record.getMessage(),
            }
        )


@click.command()
@click.option("--deployment", "deployment", required=True, metavar="NS/NAME", help="The deployment to serve.")
@click.option("--engine", "kind", type=click.Choice(sorted(ENGINES)), required=True, help="The engine's API.")
@click.option(
    "--engine-url",
    metavar="URL",
    help="The engine's HTTP server [default: http://127.0.0.1:8000 for vllm, :30000 for sglang].",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    help="A label of this replica (canary selectors).",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="The cache; the engine must see <cache>/versions/<digest> at the same path [env LOREG_CACHE].",
)
@click.option(
    "--replica", metavar="ID", help="This replica's id in heartbeats [default: <hostname>:<engine port>]."
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1, max=3600),
    default=10.0,
    show_default=True,
    help="Seconds between passes and heartbeats (a deployment change starts a pass at once).",
)
@click.option(
    "--versioned-names",
    is_flag=True,
    help="Also load each adapter as <repo>@<12 hex of its digest>, unloading the previous one after a "
    "switch.",
)
@click.option(
    "--owned-only/--no-owned-only",
    default=True,
    show_default=True,
    help="Unload or replace only the adapters this agent loaded (--no-owned-only: every adapter the "
    "deployment does not list).",
)
@click.option(
    "--served-base",
    metavar="SHA",
    envvar="LOREG_SERVED_BASE",
    help="The base the engine serves, any SHA form [env LOREG_SERVED_BASE; default: the engine's local "
    "directory's content digest, else its model name].",
)
@pass_app
def agent(
    app: AppContext,
    deployment: str,
    kind: str,
    engine_url: str | None,
    labels: tuple[str, ...],
    cache: Path | None,
    replica: str | None,
    interval: float,
    versioned_names: bool,
    owned_only: bool,
    served_base: str | None,
) -> None:
    """Keep the engine at ENGINE-URL serving deployment NS/NAME: pull, load, reload and unload its adapters
    through the engine's own API, and heartbeat the replica's state. Stop with Ctrl-C or SIGTERM.

    Exits 1, having loaded nothing, when the engine serves another base than the deployment's."""
    RepoName.parse(deployment)
    url = engine_url or f"http://127.0.0.1:{DEFAULT_PORTS[kind]}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{url!r} is not http(s)://host[:port]", param_hint="--engine-url")
    options = AgentOptions(
        deployment=deployment,
        replica=check_replica_id(replica) if replica else default_replica_id(url, kind),
        labels=parse_labels(labels),
        interval=interval,
        versioned_names=versioned_names,
        owned_only=owned_only,
        served_base=served_base or app.settings.served_base,
    )
    _log_to_stderr(app.as_json)
    root = (cache or app.settings.cache).expanduser().absolute()
    root.mkdir(parents=True, exist_ok=True)
    engine = connect(kind, url)
    client = app.client
    client.progress = False  # a long-running process: log lines, no progress bars
    stop = threading.Event()

    def stopping(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("lorareg.agent").info("%s: stopping", signal.Signals(signum).name)
        stop.set()
        raise KeyboardInterrupt  # out of a blocking long-poll at once

    previous = signal.signal(signal.SIGTERM, stopping)
    try:
        Agent(client, engine, BlobCache(root), options).run(stop)
    except KeyboardInterrupt:
        pass  # BaseMismatch goes on to the CLI's handler: its message, exit 1
    finally:
        signal.signal(signal.SIGTERM, previous)
        engine.close()


def _log_to_stderr(as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonLines() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    )
    log = logging.getLogger("lorareg.agent")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


COMMANDS = [agent]
