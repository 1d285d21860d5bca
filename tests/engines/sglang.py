"""A stand-in for SGLang's HTTP server, as far as adapters are concerned.

Written from sgl-project/sglang's source:

- Routes: ``python/sglang/srt/entrypoints/http_server.py``: ``POST /load_lora_adapter`` and
  ``POST /unload_lora_adapter`` answer the tokenizer manager's ``LoRAUpdateOutput``
  ``{success, error_message, loaded_adapters}`` as JSON, 200 on success and 400 otherwise;
  ``GET /v1/models`` (``available_models``) lists the served model (``root`` = its served name)
  and, with ``--enable-lora``, one card per registered adapter (``root`` = its path, ``parent`` =
  the served name, ``max_model_len`` null); ``GET /get_model_info`` gives ``model_path``.
- Bodies: ``LoadLoRAAdapterReqInput {lora_name, lora_path, pinned=False}``,
  ``UnloadLoRAAdapterReqInput {lora_name}`` (``python/sglang/srt/managers/io_struct.py``). There is
  no ``load_inplace``: a name is replaced by unloading it, then loading it again.
- Load: ``python/sglang/srt/managers/tokenizer_control_mixin.py::load_lora_adapter`` answers
  "LoRA is not enabled. Please set `--enable-lora` to enable LoRA." without ``--enable-lora``;
  the backend, ``python/sglang/srt/lora/lora_manager.py::LoRAManager.load_lora_adapter``, first
  reads the config (``python/sglang/srt/lora/lora_config.py::LoRAConfig.get_lora_config``: a path
  that is not a directory goes to ``huggingface_hub.snapshot_download``, whose repo-id check
  rejects an absolute path; a directory without ``adapter_config.json`` fails ``open`` with
  ``FileNotFoundError``), then ``validate_new_adapter`` refuses a loaded name ("Failed to load LoRA
  adapter <name> because it is already loaded"); ``create_lora_update_result`` lists every loaded
  adapter, name → path.
- Unload: ``python/sglang/srt/lora/lora_registry.py::LoRARegistry.unregister`` refuses an unknown
  name ("LoRA with name <name> does not exist. Loaded LoRAs: odict_keys([...])"), answered 400.
- Completions: ``python/sglang/srt/entrypoints/openai/serving_base.py``: ``model`` is
  ``<served name>`` or ``<served name>:<adapter name>`` (split on the first colon,
  ``_parse_model_parameter``), which wins over a ``lora_path`` field (``_resolve_lora_path``);
  another base is 404 "Model '<m>' is not served." (``handle_request``); an adapter that is not
  loaded fails ``LoRARegistry.acquire`` ("The following requested LoRA adapters are not loaded:
  ..."), a ``ValueError`` answered 400; errors are ``{"error": {object, message, type, param, code}}``
  (``create_error_response``).
"""

from __future__ import annotations

import os
import time
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

if TYPE_CHECKING:
    from tests.engines import EngineState

CONTEXT_LEN = 2048
LORA_DISABLED = "LoRA is not enabled. Please set `--enable-lora` to enable LoRA."


class LoadLoRAAdapterReqInput(BaseModel):
    lora_name: str
    lora_path: str
    pinned: bool = False


class UnloadLoRAAdapterReqInput(BaseModel):
    lora_name: str


class CompletionRequest(BaseModel):
    model: str
    prompt: str | list[str] = ""
    max_tokens: int | None = 16
    lora_path: str | None = None


def update_result(success: bool, message: str, loaded: dict[str, str] | None) -> JSONResponse:
    """A ``LoRAUpdateOutput`` answer: 200 on success, else 400."""
    body = {"success": success, "error_message": message, "loaded_adapters": loaded}
    return JSONResponse(body, status_code=HTTPStatus.OK if success else HTTPStatus.BAD_REQUEST)


def error(message: str, err_type: str, status: int) -> JSONResponse:
    """The OpenAI-route error body of ``OpenAIServingBase.create_error_response``."""
    body = {"object": "error", "message": message, "type": err_type, "param": None, "code": status}
    return JSONResponse({"error": body}, status_code=status)


def _config_error(path: str) -> str | None:
    """Why ``LoRAConfig(path)`` would fail, or None when it reads an adapter config."""
    if not os.path.isdir(path):
        return (
            f"Repo id must be in the form 'repo_name' or 'namespace/repo_name': '{path}'. "
            "Use `repo_type` argument if needed."
        )
    config = os.path.join(path, "adapter_config.json")
    if not Path(config).is_file():
        return f"[Errno 2] No such file or directory: '{config}'"
    return None


def _card(model_id: str, root: str, parent: str | None, max_model_len: int | None) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "sglang",
        "root": root,
        "parent": parent,
        "max_model_len": max_model_len,
    }


def _odict_keys(names: dict[str, str]) -> str:
    return f"odict_keys({list(names)!r})"


def create_app(state: EngineState) -> FastAPI:
    """The SGLang stand-in app over ``state``."""
    app = FastAPI()

    state.inject_failures(
        app,
        lambda status: error(
            "injected engine failure", "InternalServerError" if status >= 500 else "BadRequest", status
        ),
    )

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/get_model_info")
    async def get_model_info() -> dict[str, Any]:
        return {"model_path": state.base_root, "tokenizer_path": state.base_root, "is_generation": True}

    @app.get("/v1/models")
    async def available_models() -> dict[str, Any]:
        cards = [_card(state.base_model, state.base_model, None, CONTEXT_LEN)]
        if state.lora_updates:
            cards += [_card(name, path, state.base_model, None) for name, path in state.adapters().items()]
        return {"object": "list", "data": cards}

    @app.post("/load_lora_adapter")
    async def load_lora_adapter(request: LoadLoRAAdapterReqInput) -> JSONResponse:
        if not state.lora_updates:
            return update_result(False, LORA_DISABLED, None)
        name, path = request.lora_name, request.lora_path
        problem = _config_error(path)
        if problem is None and name in state.adapters():
            problem = f"Failed to load LoRA adapter {name} because it is already loaded"
        if problem is None:
            state.put(name, path)
        return update_result(problem is None, problem or "", state.adapters())

    @app.post("/unload_lora_adapter")
    async def unload_lora_adapter(request: UnloadLoRAAdapterReqInput) -> JSONResponse:
        if not state.lora_updates:
            return update_result(False, LORA_DISABLED, None)
        adapters = state.adapters()
        if request.lora_name not in adapters:
            message = (
                f"LoRA with name {request.lora_name} does not exist. Loaded LoRAs: {_odict_keys(adapters)}"
            )
            return update_result(False, message, None)
        state.drop(request.lora_name)
        return update_result(True, "", state.adapters())

    @app.post("/v1/completions", response_model=None)
    async def create_completion(request: CompletionRequest) -> dict[str, Any] | JSONResponse:
        base, _, adapter_name = request.model.partition(":")
        if base.strip() != state.base_model:
            return error(f"Model {request.model!r} is not served.", "NotFound", 404)
        adapter = adapter_name.strip() or request.lora_path
        adapters = state.adapters()
        if adapter is not None and adapter not in adapters:
            return error(
                f"The following requested LoRA adapters are not loaded: {adapter}\n"
                f"Loaded adapters: {_odict_keys(adapters)}.",
                "BadRequest",
                400,
            )
        tokens = request.max_tokens or 16
        return {
            "id": uuid.uuid4().hex,
            "object": "text_completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "text": adapters[adapter] if adapter else state.base_root,
                    "logprobs": None,
                    "finish_reason": "length",
                    "matched_stop": None,
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": 1 + tokens},
        }

    return app
