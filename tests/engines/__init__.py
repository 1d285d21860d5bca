"""In-process stand-ins for the HTTP servers of vLLM and SGLang, for testing the sync agent on CPU.

Each engine module (``vllm``, ``sglang``) builds a FastAPI app that answers the adapter-management,
model-listing and completion routes exactly as the real server does (paths, bodies, status codes,
messages), written from the engines' source; each module's docstring cites the files and functions.
``running_engine`` serves one of them with uvicorn on a free loopback port in a thread, like
``tests/conftest.py::start_server``, and yields a handle that tests use to look inside (``loaded``),
to simulate a process restart (``restart``) and to inject engine errors (``fail_next``).

Completions answer with the serving model's path as their text (the adapter's ``lora_path``, or
the base's path), so a test can tell which weights a replica serves for a name.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import uvicorn
from fastapi import FastAPI, Request, Response

EngineKind = Literal["vllm", "sglang"]


@dataclass
class EngineState:
    """What one engine process holds in memory: its base, its adapters and the errors to inject."""

    base_model: str
    base_path: str | None
    lora_updates: bool = True
    _adapters: dict[str, str] = field(default_factory=dict)
    _failures: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_root(self) -> str:
        """Where the base weights come from: the local directory, else the model name."""
        return self.base_path or self.base_model

    def adapters(self) -> dict[str, str]:
        """A copy of the loaded adapters, name → path, in load order."""
        with self._lock:
            return dict(self._adapters)

    def put(self, name: str, path: str) -> None:
        with self._lock:
            self._adapters[name] = path

    def drop(self, name: str) -> None:
        with self._lock:
            del self._adapters[name]

    def clear(self) -> None:
        with self._lock:
            self._adapters.clear()

    def add_failures(self, count: int, status: int) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def take_failure(self) -> int | None:
        """The status of the next injected error, if one is pending (consumed)."""
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def inject_failures(self, app: FastAPI, answer: Callable[[int], Response]) -> None:
        """Make ``app`` answer each pending injected error, whatever the route, with ``answer(status)``:
        the engine's own error body."""

        @app.middleware("http")
        async def failing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
            status = self.take_failure()
            return answer(status) if status is not None else await call_next(request)


class RunningEngine:
    """A served stand-in: its URL, and hooks into the engine process's state."""

    def __init__(self, kind: EngineKind, url: str, state: EngineState) -> None:
        self.kind = kind
        self.url = url
        self._state = state

    @property
    def loaded(self) -> dict[str, str]:
        """The adapters the engine holds now, name → lora_path."""
        return self._state.adapters()

    def restart(self) -> None:
        """Forget every adapter, as a restarted engine process does (runtime loads are not persisted)."""
        self._state.clear()

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer the next ``count`` requests, whatever their route, with an engine error of ``status``."""
        self._state.add_failures(count, status)


@contextmanager
def running_engine(
    kind: EngineKind, *, base_model: str, base_path: str | None = None, lora_updates: bool = True
) -> Iterator[RunningEngine]:
    """Serve a ``kind`` stand-in for ``base_model`` (loaded from ``base_path`` when given).

    ``lora_updates=False`` is an engine started without runtime LoRA updating (vLLM without
    ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``, SGLang without ``--enable-lora``).
    """
    from tests.engines import sglang, vllm

    state = EngineState(base_model=base_model, base_path=base_path, lora_updates=lora_updates)
    app = vllm.create_app(state) if kind == "vllm" else sglang.create_app(state)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the {kind} stand-in did not start")
        time.sleep(0.02)
    try:
        yield RunningEngine(kind, f"http://127.0.0.1:{port}", state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
