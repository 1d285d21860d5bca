"""PEFT's older ``adapter_model.bin``: converted to safetensors with identical tensors, on its own and
through ``lorareg import``; a pickle holding anything but tensors is refused without running it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load, load_file

from registry.adapters import WEIGHTS_FILE
from registry.errors import InvalidAdapter
from registry.hub.convert import convert_bin
from tests.conftest import LiveServer, TinyBase
from tests.helpers import register_base
from tests.hub.conftest import Cli, Source, adapter_copy, push_version
from tests.test_dependencies import import_without


class Payload:
    """Unpickling this writes ``marker``: the code a hostile adapter_model.bin would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture
def tensors(adapter_factory) -> dict[str, torch.Tensor]:
    return load_file(adapter_factory(seed=1) / WEIGHTS_FILE)


def hostile_state(tensors: dict[str, torch.Tensor], marker: Path, saved: Path) -> dict[str, object]:
    """The adapter's tensors plus a payload; proven live by loading it once without weights_only."""
    state = {**tensors, "payload": Payload(marker)}
    torch.save(state, saved)
    torch.load(saved, weights_only=False)
    assert marker.read_text() == "pwned"
    marker.unlink()
    return state


def assert_same_tensors(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name


def test_bin_converts_to_identical_tensors(tensors: dict[str, torch.Tensor], tmp_path: Path) -> None:
    torch.save(tensors, tmp_path / "adapter_model.bin")
    assert convert_bin(tmp_path / "adapter_model.bin", tmp_path / WEIGHTS_FILE) == len(tensors)
    assert_same_tensors(load_file(tmp_path / WEIGHTS_FILE), tensors)


def test_hostile_pickle_is_refused_without_running(tensors: dict[str, torch.Tensor], tmp_path: Path) -> None:
    marker, saved = tmp_path / "marker", tmp_path / "adapter_model.bin"
    hostile_state(tensors, marker, saved)
    with pytest.raises(InvalidAdapter, match=r"refused.*GLOBAL exec was not an allowed global by default\)$"):
        convert_bin(saved, tmp_path / WEIGHTS_FILE)
    assert not marker.exists() and not (tmp_path / WEIGHTS_FILE).exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ([torch.ones(2)], "not a list"),
        ({"a": {"nested": torch.ones(2)}}, "entry 'a' is a dict"),
        ({"a": torch.ones(2), "step": 3}, "entry 'step' is a int"),
        ({}, "not an empty dict"),
    ],
)
def test_anything_but_a_flat_dict_of_tensors_is_refused(
    tmp_path: Path, content: object, problem: str
) -> None:
    torch.save(content, tmp_path / "adapter_model.bin")
    with pytest.raises(InvalidAdapter, match=f"flat .* dict, .*{problem}"):
        convert_bin(tmp_path / "adapter_model.bin", tmp_path / WEIGHTS_FILE)
    assert not (tmp_path / WEIGHTS_FILE).exists()


def test_not_a_torch_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "adapter_model.bin").write_bytes(b"not a pickle at all")
    with pytest.raises(InvalidAdapter, match="refused"):
        convert_bin(tmp_path / "adapter_model.bin", tmp_path / WEIGHTS_FILE)


def test_conversion_without_torch_names_the_worker_extra(tmp_path: Path) -> None:
    code = (
        "from pathlib import Path\nfrom registry.errors import InvalidInput\n"
        "from registry.hub.convert import convert_bin\n"
        f"try:\n    convert_bin(Path({str(tmp_path / 'a.bin')!r}), Path('out'))\n"
        "except InvalidInput as exc:\n    print(exc.message)\n"
    )
    done = import_without(("torch", "safetensors"), code)
    assert "pip install 'lorareg[worker]'" in done.stdout, done.stderr


def push_bin_repo(source: Source, tiny_base: TinyBase, config_from: Path, state: object, name: str) -> str:
    """A Hub repository holding adapter_config.json and a torch-saved adapter_model.bin (lorareg keeps
    adapters in safetensors only, so the source serves it as a model version next to the base's files)."""
    directory = config_from.parent / name
    shutil.copytree(tiny_base.path, directory)
    shutil.copy(config_from / "adapter_config.json", directory)
    torch.save(state, directory / "adapter_model.bin")
    repo = f"{source.namespace}/{name}"
    push_version(source.server, repo, directory, kind="model", base=tiny_base.content_digest)
    return repo


@pytest.fixture
def pinned_adapter(source: Source, adapter_factory, tmp_path: Path) -> Path:
    return adapter_copy(
        adapter_factory(seed=1),
        tmp_path / "adapter",
        base_model_name_or_path=source.base_repo,
        revision=source.base_commit,
    )


def test_import_converts_a_bin_adapter(
    source: Source,
    destination: LiveServer,
    tiny_base: TinyBase,
    pinned_adapter: Path,
    tensors: dict[str, torch.Tensor],
    lorareg: Cli,
) -> None:
    repo = push_bin_repo(source, tiny_base, pinned_adapter, tensors, "legacy")
    register_base(destination.http, tiny_base.path, name=source.base_repo, revision=source.base_commit)
    target = f"{source.namespace}/converted"
    done = lorareg(destination, "import", f"hf://{repo}", target, "--endpoint", source.endpoint)
    assert "converted adapter_model.bin" in done.stderr
    version = destination.http.get(f"/api/v1/repos/{target}/versions/latest").json()
    assert {f["path"] for f in version["files"]} == {"adapter_config.json", WEIGHTS_FILE}
    weights = destination.http.get(f"/hf/{target}/resolve/main/{WEIGHTS_FILE}")
    assert_same_tensors(load(weights.content), tensors)


def test_import_refuses_a_hostile_bin_and_pushes_nothing(
    source: Source,
    destination: LiveServer,
    tiny_base: TinyBase,
    pinned_adapter: Path,
    tensors: dict[str, torch.Tensor],
    lorareg: Cli,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    state = hostile_state(tensors, marker, tmp_path / "probe.bin")
    repo = push_bin_repo(source, tiny_base, pinned_adapter, state, "hostile")
    register_base(destination.http, tiny_base.path, name=source.base_repo, revision=source.base_commit)
    target = f"{source.namespace}/hostile"
    refused = lorareg(destination, "import", f"hf://{repo}", target, "--endpoint", source.endpoint, check=1)
    assert "adapter_model.bin was refused" in refused.stderr
    assert not marker.exists()
    assert destination.http.get(f"/api/v1/repos/{target}").status_code == 404
    assert not any(lorareg.scratch.iterdir())
