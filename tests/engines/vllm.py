"""A stand-in for vLLM's OpenAI-compatible server, as far as adapters are concerned.

Written from vllm-project/vllm's source:

- Routes: ``vllm/entrypoints/serve/lora/api_router.py::attach_router`` registers
  ``POST /v1/load_lora_adapter`` and ``POST /v1/unload_lora_adapter`` only when
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` is set (else they are FastAPI's plain 404). A handler answers
  an ``ErrorResponse`` as JSON with ``status_code=response.error.code``, and success as
  ``Response(status_code=200, content=<message>)``: plain text, no content type.
- Bodies: ``vllm/entrypoints/serve/lora/protocol.py``: ``LoadLoRAAdapterRequest {lora_name,
  lora_path, load_inplace=False}``, ``UnloadLoRAAdapterRequest {lora_name, lora_int_id=None}``.
- Checks and messages: ``vllm/entrypoints/openai/models/serving.py::OpenAIServingModels``:
  ``_check_load_lora_adapter_request`` (400 ``InvalidUserInput`` when a field is empty, or when the
  name is loaded and ``load_inplace`` is false), ``load_lora_adapter`` (``"Success: LoRA adapter
  '<name>' added successfully."``; a reload in place keeps the name's int id),
  ``_check_unload_lora_adapter_request`` (404 ``NotFoundError`` "The lora adapter '<name>' cannot be
  found."), ``unload_lora_adapter`` ("... removed successfully."), ``show_available_models`` (the
  base card, ``root`` = the model path, then one card per adapter with ``root`` = its path and
  ``parent`` = the base's served name).
- A path without an adapter: ``vllm/lora/worker_manager.py::WorkerLoRAManager._load_adapter`` turns
  the ``FileNotFoundError`` of ``PEFTHelper.from_local_dir`` (it opens ``adapter_config.json``) into
  ``vllm/exceptions.py::LoRAAdapterNotFoundError`` ("Loading lora <name> failed: No adapter found
  for <path>"), a ``VLLMNotFoundError``, which
  ``vllm/entrypoints/serve/utils/error_response.py::create_error_response`` answers with 404.
- Error body: ``ErrorResponse(error=ErrorInfo(message, type, param, code))``, same file.
- Completions: ``vllm/entrypoints/openai/engine/serving.py::OpenAIServing._check_model`` accepts the
  base's served name or a loaded adapter's name, else 404 "The model `<m>` does not exist."
  (``param="model"``); the response's ``model`` is the adapter's name (``OpenAIServingModels
  .model_name``). Request-validation errors are answered 400 by ``api_server.py``'s
  ``RequestValidationError`` handler.
"""

from __future__ import annotations

import time
import uuid
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

if TYPE_CHECKING:
    from tests.engines import EngineState

MAX_MODEL_LEN = 2048


class LoadLoRAAdapterRequest(BaseModel):
    lora_name: str
    lora_path: str
    load_inplace: bool = False


class UnloadLoRAAdapterRequest(BaseModel):
    lora_name: str
    lora_int_id: int | None = None


class CompletionRequest(BaseModel):
    model: str | None = None
    prompt: str | list[str] = ""
    max_tokens: int | None = 16


def error(message: str, err_type: str, status: HTTPStatus, param: str | None = None) -> JSONResponse:
    """vLLM's ``ErrorResponse`` with its HTTP status."""
    body = {"error": {"message": message, "type": err_type, "param": param, "code": status.value}}
    return JSONResponse(body, status_code=status.value)


def _permission() -> dict[str, Any]:
    return {
        "id": f"modelperm-{uuid.uuid4().hex}",
        "object": "model_permission",
        "created": int(time.time()),
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }


def _card(model_id: str, root: str, parent: str | None, max_model_len: int | None) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "vllm",
        "root": root,
        "parent": parent,
        "max_model_len": max_model_len,
        "permission": [_permission()],
    }


def _add_lora_routes(app: FastAPI, state: EngineState) -> None:
    @app.post("/v1/load_lora_adapter")
    async def load_lora_adapter(request: LoadLoRAAdapterRequest) -> Response:
        name, path = request.lora_name, request.lora_path
        if not name or not path:
            return error(
                "Both 'lora_name' and 'lora_path' must be provided.",
                "InvalidUserInput",
                HTTPStatus.BAD_REQUEST,
            )
        if not request.load_inplace and name in state.adapters():
            return error(
                f"The lora adapter '{name}' has already been loaded. If you want to load the adapter in "
                "place, set 'load_inplace' to True.",
                "InvalidUserInput",
                HTTPStatus.BAD_REQUEST,
            )
        if not (Path(path).expanduser() / "adapter_config.json").is_file():
            return error(
                f"Loading lora {name} failed: No adapter found for {path}",
                "NotFoundError",
                HTTPStatus.NOT_FOUND,
            )
        state.put(name, path)
        return Response(status_code=200, content=f"Success: LoRA adapter '{name}' added successfully.")

    @app.post("/v1/unload_lora_adapter")
    async def unload_lora_adapter(request: UnloadLoRAAdapterRequest) -> Response:
        name = request.lora_name
        if not name:
            return error(
                "'lora_name' needs to be provided to unload a LoRA adapter.",
                "InvalidUserInput",
                HTTPStatus.BAD_REQUEST,
            )
        if name not in state.adapters():
            return error(f"The lora adapter '{name}' cannot be found.", "NotFoundError", HTTPStatus.NOT_FOUND)
        state.drop(name)
        return Response(status_code=200, content=f"Success: LoRA adapter '{name}' removed successfully.")


def create_app(state: EngineState) -> FastAPI:
    """The vLLM stand-in app over ``state``."""
    app = FastAPI()

    state.inject_failures(
        app,
        lambda status: error(
            "injected engine failure",
            "InternalServerError" if status >= 500 else "BadRequestError",
            HTTPStatus(status),
        ),
    )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(str(exc), "BadRequestError", HTTPStatus.BAD_REQUEST)

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/v1/models")
    async def show_available_models() -> dict[str, Any]:
        cards = [_card(state.base_model, state.base_root, None, MAX_MODEL_LEN)]
        cards += [_card(name, path, state.base_model, None) for name, path in state.adapters().items()]
        return {"object": "list", "data": cards}

    if state.lora_updates:
        _add_lora_routes(app, state)

    @app.post("/v1/completions", response_model=None)
    async def create_completion(request: CompletionRequest) -> dict[str, Any] | JSONResponse:
        adapters = state.adapters()
        if request.model in (None, state.base_model):
            model, served = state.base_model, state.base_root
        elif request.model in adapters:
            model, served = request.model, adapters[request.model]
        else:
            return error(
                f"The model `{request.model}` does not exist.",
                "NotFoundError",
                HTTPStatus.NOT_FOUND,
                param="model",
            )
        tokens = request.max_tokens or 16
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "text": served, "logprobs": None, "finish_reason": "length", "stop_reason": None}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": 1 + tokens},
        }

    return app
