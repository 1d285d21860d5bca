"""The engine stand-ins behave as vLLM's and SGLang's servers do (see each module's sources)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.engines import EngineKind, RunningEngine, running_engine

BASE = "tiny-llama"


def make_adapter_dir(root: Path, name: str) -> str:
    path = root / name
    path.mkdir()
    (path / "adapter_config.json").write_text(
        json.dumps({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]})
    )
    return str(path)


def serve(kind: EngineKind, base_path: Path) -> Iterator[tuple[RunningEngine, httpx.Client]]:
    with (
        running_engine(kind, base_model=BASE, base_path=str(base_path)) as engine,
        httpx.Client(base_url=engine.url, timeout=10) as http,
    ):
        yield engine, http


@pytest.fixture
def vllm(tmp_path: Path) -> Iterator[tuple[RunningEngine, httpx.Client]]:
    yield from serve("vllm", tmp_path)


@pytest.fixture
def sglang(tmp_path: Path) -> Iterator[tuple[RunningEngine, httpx.Client]]:
    yield from serve("sglang", tmp_path)


# vLLM ------------------------------------------------------------------------------------------------


def test_vllm_load_answers_plain_text_and_lists_the_adapter(vllm, tmp_path: Path) -> None:
    engine, http = vllm
    path = make_adapter_dir(tmp_path, "a")
    response = http.post("/v1/load_lora_adapter", json={"lora_name": "acme/bot:prod", "lora_path": path})
    assert response.status_code == 200
    assert response.text == "Success: LoRA adapter 'acme/bot:prod' added successfully."
    assert "content-type" not in response.headers
    assert engine.loaded == {"acme/bot:prod": path}

    cards = http.get("/v1/models").json()["data"]
    assert [(c["id"], c["root"], c["parent"]) for c in cards] == [
        (BASE, str(tmp_path), None),
        ("acme/bot:prod", path, BASE),
    ]


def test_vllm_duplicate_load_is_400_and_load_inplace_replaces(vllm, tmp_path: Path) -> None:
    engine, http = vllm
    first, second = make_adapter_dir(tmp_path, "a"), make_adapter_dir(tmp_path, "b")
    http.post("/v1/load_lora_adapter", json={"lora_name": "bot", "lora_path": first})

    again = http.post("/v1/load_lora_adapter", json={"lora_name": "bot", "lora_path": second})
    assert again.status_code == 400
    assert again.json() == {
        "error": {
            "message": "The lora adapter 'bot' has already been loaded. If you want to load the adapter in "
            "place, set 'load_inplace' to True.",
            "type": "InvalidUserInput",
            "param": None,
            "code": 400,
        }
    }
    assert engine.loaded == {"bot": first}

    inplace = http.post(
        "/v1/load_lora_adapter", json={"lora_name": "bot", "lora_path": second, "load_inplace": True}
    )
    assert inplace.status_code == 200
    assert engine.loaded == {"bot": second}
    assert (
        http.post("/v1/completions", json={"model": "bot", "prompt": "hi"}).json()["choices"][0]["text"]
        == second
    )


def test_vllm_load_without_adapter_config_is_404(vllm, tmp_path: Path) -> None:
    engine, http = vllm
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in (str(empty), str(tmp_path / "missing")):
        response = http.post("/v1/load_lora_adapter", json={"lora_name": "bot", "lora_path": path})
        assert response.status_code == 404
        assert response.json()["error"]["message"] == f"Loading lora bot failed: No adapter found for {path}"
        assert response.json()["error"]["type"] == "NotFoundError"
    assert engine.loaded == {}


def test_vllm_unload_and_unload_unknown(vllm, tmp_path: Path) -> None:
    engine, http = vllm
    http.post(
        "/v1/load_lora_adapter", json={"lora_name": "bot", "lora_path": make_adapter_dir(tmp_path, "a")}
    )
    response = http.post("/v1/unload_lora_adapter", json={"lora_name": "bot"})
    assert (response.status_code, response.text) == (200, "Success: LoRA adapter 'bot' removed successfully.")
    assert engine.loaded == {}

    unknown = http.post("/v1/unload_lora_adapter", json={"lora_name": "bot"})
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "The lora adapter 'bot' cannot be found."
    assert [c["id"] for c in http.get("/v1/models").json()["data"]] == [BASE]


def test_vllm_completions_name_the_serving_weights(vllm, tmp_path: Path) -> None:
    _, http = vllm
    path = make_adapter_dir(tmp_path, "a")
    http.post("/v1/load_lora_adapter", json={"lora_name": "bot", "lora_path": path})

    served = http.post("/v1/completions", json={"model": "bot", "prompt": "hi"}).json()
    assert (served["model"], served["choices"][0]["text"]) == ("bot", path)
    base = http.post("/v1/completions", json={"model": BASE, "prompt": "hi"}).json()
    assert base["choices"][0]["text"] == str(tmp_path)

    unknown = http.post("/v1/completions", json={"model": "other", "prompt": "hi"})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {
        "message": "The model `other` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }


def test_vllm_without_runtime_updating_has_no_load_route(tmp_path: Path) -> None:
    with running_engine("vllm", base_model=BASE, lora_updates=False) as engine:
        response = httpx.post(
            f"{engine.url}/v1/load_lora_adapter",
            json={"lora_name": "bot", "lora_path": make_adapter_dir(tmp_path, "a")},
        )
        assert response.status_code == 404
        assert engine.loaded == {}
        assert httpx.get(f"{engine.url}/v1/models").json()["data"][0]["root"] == BASE


def test_vllm_bad_body_is_400(vllm) -> None:
    _, http = vllm
    response = http.post("/v1/load_lora_adapter", json={"lora_name": "bot"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "BadRequestError"


# SGLang ----------------------------------------------------------------------------------------------


def test_sglang_load_lists_adapters_and_models(sglang, tmp_path: Path) -> None:
    engine, http = sglang
    path = make_adapter_dir(tmp_path, "a")
    response = http.post("/load_lora_adapter", json={"lora_name": "bot", "lora_path": path, "pinned": False})
    assert response.status_code == 200
    assert response.json() == {"success": True, "error_message": "", "loaded_adapters": {"bot": path}}
    assert engine.loaded == {"bot": path}

    cards = http.get("/v1/models").json()["data"]
    assert [(c["id"], c["root"], c["parent"]) for c in cards] == [(BASE, BASE, None), ("bot", path, BASE)]
    assert http.get("/get_model_info").json()["model_path"] == str(tmp_path)


def test_sglang_duplicate_load_is_400_and_reload_is_unload_then_load(sglang, tmp_path: Path) -> None:
    engine, http = sglang
    first, second = make_adapter_dir(tmp_path, "a"), make_adapter_dir(tmp_path, "b")
    http.post("/load_lora_adapter", json={"lora_name": "bot", "lora_path": first})

    again = http.post("/load_lora_adapter", json={"lora_name": "bot", "lora_path": second})
    assert again.status_code == 400
    assert again.json() == {
        "success": False,
        "error_message": "Failed to load LoRA adapter bot because it is already loaded",
        "loaded_adapters": {"bot": first},
    }

    assert http.post("/unload_lora_adapter", json={"lora_name": "bot"}).json()["loaded_adapters"] == {}
    assert http.post("/load_lora_adapter", json={"lora_name": "bot", "lora_path": second}).status_code == 200
    assert engine.loaded == {"bot": second}


def test_sglang_load_without_adapter_config_fails(sglang, tmp_path: Path) -> None:
    engine, http = sglang
    empty = tmp_path / "empty"
    empty.mkdir()
    response = http.post("/load_lora_adapter", json={"lora_name": "bot", "lora_path": str(empty)})
    assert response.status_code == 400
    assert (
        response.json()["error_message"]
        == f"[Errno 2] No such file or directory: '{empty}/adapter_config.json'"
    )
    missing = http.post(
        "/load_lora_adapter", json={"lora_name": "bot", "lora_path": str(tmp_path / "missing")}
    )
    assert missing.status_code == 400
    assert missing.json()["success"] is False
    assert engine.loaded == {}


def test_sglang_unload_unknown_is_400(sglang, tmp_path: Path) -> None:
    engine, http = sglang
    path = make_adapter_dir(tmp_path, "a")
    http.post("/load_lora_adapter", json={"lora_name": "a", "lora_path": path})
    response = http.post("/unload_lora_adapter", json={"lora_name": "b"})
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "error_message": "LoRA with name b does not exist. Loaded LoRAs: odict_keys(['a'])",
        "loaded_adapters": None,
    }
    assert engine.loaded == {"a": path}


def test_sglang_completions_take_the_adapter_after_the_base_name(sglang, tmp_path: Path) -> None:
    _, http = sglang
    path = make_adapter_dir(tmp_path, "a")
    http.post("/load_lora_adapter", json={"lora_name": "acme/bot:prod", "lora_path": path})

    served = http.post("/v1/completions", json={"model": f"{BASE}:acme/bot:prod", "prompt": "hi"}).json()
    assert served["choices"][0]["text"] == path
    by_field = http.post(
        "/v1/completions", json={"model": BASE, "lora_path": "acme/bot:prod", "prompt": "hi"}
    )
    assert by_field.json()["choices"][0]["text"] == path
    assert http.post("/v1/completions", json={"model": BASE}).json()["choices"][0]["text"] == str(tmp_path)

    bare = http.post("/v1/completions", json={"model": "acme/bot:prod", "prompt": "hi"})
    assert bare.status_code == 404
    assert bare.json()["error"]["message"] == "Model 'acme/bot:prod' is not served."
    unknown = http.post("/v1/completions", json={"model": f"{BASE}:other", "prompt": "hi"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"].startswith(
        "The following requested LoRA adapters are not loaded: other"
    )


def test_sglang_without_enable_lora_refuses_loads(tmp_path: Path) -> None:
    with running_engine("sglang", base_model=BASE, lora_updates=False) as engine:
        response = httpx.post(
            f"{engine.url}/load_lora_adapter",
            json={"lora_name": "bot", "lora_path": make_adapter_dir(tmp_path, "a")},
        )
        assert response.status_code == 400
        assert (
            response.json()["error_message"]
            == "LoRA is not enabled. Please set `--enable-lora` to enable LoRA."
        )
        assert engine.loaded == {}


# Both ------------------------------------------------------------------------------------------------

LOAD_PATH = {"vllm": "/v1/load_lora_adapter", "sglang": "/load_lora_adapter"}


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_restart_forgets_every_adapter(kind, tmp_path: Path) -> None:
    with running_engine(kind, base_model=BASE) as engine, httpx.Client(base_url=engine.url) as http:
        for name in ("a", "b"):
            path = make_adapter_dir(tmp_path, name)
            assert http.post(LOAD_PATH[kind], json={"lora_name": name, "lora_path": path}).status_code == 200
        assert set(engine.loaded) == {"a", "b"}

        engine.restart()
        assert engine.loaded == {}
        assert [c["id"] for c in http.get("/v1/models").json()["data"]] == [BASE]
        path = str(tmp_path / "a")
        assert http.post(LOAD_PATH[kind], json={"lora_name": "a", "lora_path": path}).status_code == 200


@pytest.mark.parametrize("kind", ["vllm", "sglang"])
def test_fail_next_answers_engine_errors_then_recovers(kind, tmp_path: Path) -> None:
    with running_engine(kind, base_model=BASE) as engine, httpx.Client(base_url=engine.url) as http:
        engine.fail_next(2, 503)
        body = {"lora_name": "a", "lora_path": make_adapter_dir(tmp_path, "a")}
        first, second = http.post(LOAD_PATH[kind], json=body), http.get("/v1/models")
        assert (first.status_code, second.status_code) == (503, 503)
        assert first.json()["error"]["code"] == 503
        assert engine.loaded == {}

        assert http.post(LOAD_PATH[kind], json=body).status_code == 200
        assert engine.loaded == {"a": body["lora_path"]}
