"""PEFT's older ``adapter_model.bin`` (a torch pickle) converted to safetensors, tensors only.

The pickle is read with ``torch.load(weights_only=True)``, whose unpickler builds nothing but tensors and
plain containers, so no code from the file runs; anything but a flat ``{name: tensor}`` dict is refused.
torch and safetensors are imported only here, when a conversion is needed (the ``lorareg[worker]`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.errors import InvalidAdapter, InvalidInput


def convert_bin(source: Path, dest: Path) -> int:
    """Write the tensors of the torch pickle ``source`` to the safetensors file ``dest``; return how many."""
    try:
        import torch
        from safetensors.torch import save_file
    except ImportError:
        raise InvalidInput(
            f"converting {source.name} to safetensors needs torch: pip install 'lorareg[worker]' "
            "(or convert it elsewhere and push adapter_model.safetensors)"
        ) from None
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on hostile or corrupt pickles; all mean "refuse"
        raise InvalidAdapter(
            f"{source.name} was refused: it holds more than tensors or is not a torch file ({_reason(exc)})"
        ) from None
    problem = _not_flat(state, torch.Tensor)
    if problem is not None:
        raise InvalidAdapter(f"{source.name} was refused: it must be a flat {{name: tensor}} dict, {problem}")
    save_file(
        {name: tensor.detach().clone().contiguous() for name, tensor in state.items()},
        str(dest),
        metadata={"format": "pt"},
    )
    return len(state)


def _reason(exc: Exception) -> str:
    """The sentence of torch's (long) refusal that names what was refused, without its advice to trust
    the file."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines if "unsupported" in line.lower()), None)
    return (detail or (lines[0] if lines else type(exc).__name__)).split(". ")[0][:300]


def _not_flat(state: Any, tensor: type) -> str | None:
    """What keeps ``state`` from being a non-empty ``{str: tensor}`` dict, or None."""
    if not isinstance(state, dict):
        return f"not a {type(state).__name__}"
    if not state:
        return "not an empty dict"
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, tensor):
            return f"but entry {key!r} is a {type(value).__name__}"
    return None
