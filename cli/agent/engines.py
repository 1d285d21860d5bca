"""HTTP clients for the dynamic-LoRA APIs of vLLM and SGLang, one class per engine behind :class:`Engine`.

Both list what they serve at ``GET /v1/models``: one card for the base (no ``parent``) and one per
loaded adapter (``parent`` = the base's served name, ``root`` = the ``lora_path`` it was loaded from).

- vLLM (``vllm/entrypoints/serve/lora/api_router.py``, ``.../openai/models/serving.py``):
  ``POST /v1/load_lora_adapter {lora_name, lora_path, load_inplace}`` and
  ``POST /v1/unload_lora_adapter {lora_name}``; success is 200 with a plain-text message, an error an
  ``ErrorResponse`` JSON with its status. The routes exist only with
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` (else FastAPI's plain 404). Loading a name that is loaded
  is a 400 unless ``load_inplace`` is true, which swaps the weights under the same name.
- SGLang (``python/sglang/srt/entrypoints/http_server.py``): ``POST /load_lora_adapter {lora_name,
  lora_path, pinned}`` and ``POST /unload_lora_adapter {lora_name}`` answer ``{success,
  error_message, loaded_adapters}``, 200 or 400. There is no ``load_inplace``: a loaded name is
  refused, so a new digest under a name is an unload, then a load. ``/v1/models``' base card has the
  served name as its ``root``; the base's path comes from ``GET /get_model_info`` (``model_path``).

Every failure (transport, status, an answer of the wrong shape) is an :class:`EngineError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

EngineKind = Literal["vllm", "sglang"]
DEFAULT_PORTS: dict[str, int] = {"vllm": 8000, "sglang": 30000}
TIMEOUT = httpx.Timeout(120.0, connect=5.0)  # a load reads the adapter's weights onto the GPU


class EngineError(Exception):
    """The engine could not be reached, or refused a request; ``status`` is None for transport errors."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class ServedModels:
    """What ``/v1/models`` lists: the base's served name and root, and the adapters, name → root."""

    base_name: str
    base_root: str
    adapters: dict[str, str]


class Engine(Protocol):
    kind: EngineKind
    url: str
    can_replace: bool  # a loaded name can be given new weights in one call (vLLM's load_inplace)

    def models(self) -> ServedModels: ...

    def base_path(self) -> str:
        """Where the engine loaded its base from: a local directory or a hub id."""
        ...

    def load(self, name: str, path: str, *, replace: bool = False) -> None: ...

    def unload(self, name: str) -> None:
        """Unload ``name``; a name the engine does not hold is not an error."""
        ...

    def close(self) -> None: ...


class _HttpEngine:
    kind: EngineKind

    def __init__(self, url: str, *, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=TIMEOUT, transport=transport)

    def close(self) -> None:
        self.http.close()

    def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return self.http.request(method, path, json=body)
        except httpx.HTTPError as error:
            raise EngineError(f"{self.kind} at {self.url} is unreachable: {error}") from None

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise EngineError(
                f"{self.kind} at {self.url} answered {what} with {response.status_code} and no JSON: "
                f"{response.text[:200]!r}",
                response.status_code,
            ) from None

    def models(self) -> ServedModels:
        response = self._send("GET", "/v1/models")
        if response.is_error:
            raise EngineError(self._refusal(response, "GET /v1/models"), response.status_code)
        try:
            cards = self._json(response, "GET /v1/models")["data"]
            bases = [c for c in cards if not c.get("parent")]
            adapters = {str(c["id"]): str(c["root"]) for c in cards if c.get("parent")}
            base = bases[0]
            return ServedModels(str(base["id"]), str(base.get("root") or base["id"]), adapters)
        except (KeyError, TypeError, IndexError, AttributeError):
            raise EngineError(
                f"{self.kind} at {self.url} lists its models in an unexpected form: {response.text[:300]!r}",
                response.status_code,
            ) from None

    def _refusal(self, response: httpx.Response, what: str) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        message = (
            _first_str(body, ("error", "message"), ("error_message",), ("message",), ("detail",))
            or response.text[:300]
        )
        return f"{self.kind} at {self.url} refused {what}: {response.status_code} {message}"


class VllmEngine(_HttpEngine):
    kind: EngineKind = "vllm"
    can_replace = True

    def base_path(self) -> str:
        return self.models().base_root  # vLLM's base card has the model path as its root

    def load(self, name: str, path: str, *, replace: bool = False) -> None:
        body = {"lora_name": name, "lora_path": path, "load_inplace": replace}
        response = self._send("POST", "/v1/load_lora_adapter", body)
        if response.is_error:
            raise EngineError(
                self._vllm_refusal(response, f"loading {name} from {path}"), response.status_code
            )

    def unload(self, name: str) -> None:
        response = self._send("POST", "/v1/unload_lora_adapter", {"lora_name": name})
        if response.status_code == httpx.codes.NOT_FOUND and _error_type(response) == "NotFoundError":
            return  # "The lora adapter '<name>' cannot be found.": already gone
        if response.is_error:
            raise EngineError(self._vllm_refusal(response, f"unloading {name}"), response.status_code)

    def _vllm_refusal(self, response: httpx.Response, what: str) -> str:
        message = self._refusal(response, what)
        if response.status_code == httpx.codes.NOT_FOUND and _error_type(response) is None:
            # FastAPI's own 404: the route is not there
            message += " (start vLLM with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True and --enable-lora)"
        return message


class SglangEngine(_HttpEngine):
    kind: EngineKind = "sglang"
    can_replace = False  # no load_inplace: a new digest under a loaded name is unload + load

    def base_path(self) -> str:
        response = self._send("GET", "/get_model_info")
        if response.is_error:
            raise EngineError(self._refusal(response, "GET /get_model_info"), response.status_code)
        path = _first_str(self._json(response, "GET /get_model_info"), ("model_path",))
        if path is None:
            raise EngineError(f"sglang at {self.url} reports no model_path: {response.text[:300]!r}")
        return path

    def load(self, name: str, path: str, *, replace: bool = False) -> None:
        if replace:
            self.unload(name)
        self._update("/load_lora_adapter", {"lora_name": name, "lora_path": path, "pinned": False})

    def unload(self, name: str) -> None:
        try:
            self._update("/unload_lora_adapter", {"lora_name": name})
        except EngineError as error:
            # LoRARegistry.unregister: "LoRA with name <name> does not exist. Loaded LoRAs: ...": gone
            if error.status != httpx.codes.BAD_REQUEST or f"LoRA with name {name} does not exist" not in (
                error.message
            ):
                raise

    def _update(self, path: str, body: dict[str, Any]) -> None:
        what = f"{path.strip('/').replace('_', ' ')} {body['lora_name']}"
        response = self._send("POST", path, body)
        answer = self._json(response, what) if response.content else None
        if response.is_error or not isinstance(answer, dict) or answer.get("success") is not True:
            raise EngineError(self._refusal(response, what), response.status_code)


ENGINES: dict[str, type[VllmEngine] | type[SglangEngine]] = {"vllm": VllmEngine, "sglang": SglangEngine}


def connect(kind: str, url: str, *, transport: httpx.BaseTransport | None = None) -> Engine:
    """The client of engine ``kind`` (``vllm`` or ``sglang``) at ``url``."""
    return ENGINES[kind](url, transport=transport)


def _error_type(response: httpx.Response) -> str | None:
    try:
        return _first_str(response.json(), ("error", "type"))
    except ValueError:
        return None


def _first_str(body: Any, *paths: tuple[str, ...]) -> str | None:
    for path in paths:
        value = body
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            return value
    return None
