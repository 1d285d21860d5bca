"""The real ``lorareg`` command run inside the test process.

:func:`lorareg` invokes the click group the console script calls (``cli.main:cli``) through click's
``CliRunner``: the same options, commands, error handling and exit codes, without the ~0.6 s Python
start-up of a new process per call — most of what the CLI tests used to spend. The environment is
the one given, exactly (variables it lacks are unset for the call), as with ``subprocess.run(env=)``.
Tests of the process itself (the console script, ``serve``, ``worker``, ``agent``, signals, a kill
halfway) run the installed binary :data:`LOREG` instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from click.testing import CliRunner

from cli.main import cli

LOREG = str(Path(sys.executable).parent / "lorareg")

_ONE_AT_A_TIME = threading.Lock()  # the runner swaps the process's stdio and environment


def lorareg(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``lorareg ARGS`` in this process; answer as ``subprocess.run(capture_output=True, text=True)``
    would. An exception the CLI does not turn into a message and an exit code propagates (a crash)."""
    overrides: dict[str, str | None] = {}
    if env is not None:
        overrides = {key: None for key in os.environ if key not in env}
        overrides.update(env)
    with _ONE_AT_A_TIME, contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        result = CliRunner().invoke(
            cli, list(args), env=overrides, prog_name="lorareg", catch_exceptions=False
        )
    return subprocess.CompletedProcess(
        ["lorareg", *args], result.exit_code, stdout=result.stdout, stderr=result.stderr
    )
