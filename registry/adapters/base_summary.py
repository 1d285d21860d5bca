"""A base model's shape at a glance, read from its shape manifest (every 2-D weight's name, shape and
dtype): its layer stack and how many layers it has, the modules of a layer with their shapes, the weights
outside the layers, the hidden size, and the architecture family its weight names follow.

The manifest holds no ``config.json``: the family is recognised from transformers' weight names (or left
unknown), and the hidden size is the dimension the layers' weights share most.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from registry.adapters.base_manifest import BaseManifest

# "model.layers.3.self_attn.q_proj.weight": the stack ("model.layers"), the layer (3), the module.
_IN_LAYER = re.compile(r"^(?P<stack>.+?)\.(?P<index>\d+)\.(?P<module>.+)$")
# A family and the modules every layer of its models has (transformers' names); the first that fits.
FAMILIES: tuple[tuple[str, frozenset[str]], ...] = (
    ("Llama-style", frozenset({"self_attn.q_proj", "mlp.gate_proj"})),  # Llama, Mistral, Qwen2, Gemma
    ("Phi-style", frozenset({"self_attn.q_proj", "mlp.fc1"})),
    ("GPT-2-style", frozenset({"attn.c_attn"})),
    ("GPT-NeoX-style", frozenset({"attention.query_key_value"})),
    ("Falcon-style", frozenset({"self_attention.query_key_value"})),
    ("BERT-style", frozenset({"attention.self.query"})),
    ("T5-style", frozenset({"SelfAttention.q"})),
)


@dataclass(frozen=True, slots=True)
class ModuleShape:
    """A module's weight: in a layer (``stack`` set, ``name`` relative to the layer, ``layers`` how many
    layers have it with this shape), or outside the layers (``stack`` None, ``name`` whole, ``layers`` 0)."""

    stack: str | None
    name: str
    shape: tuple[int, ...]
    dtype: str
    layers: int


@dataclass(frozen=True, slots=True)
class ShapeSummary:
    architecture: str | None  # a family of FAMILIES, or None: not recognised
    stacks: tuple[str, ...]  # where the layers are: ("model.layers",)
    layers: int  # every stack's layers
    hidden_size: int | None
    modules: tuple[ModuleShape, ...]  # the layers' modules, by stack and name
    others: tuple[ModuleShape, ...]  # the weights outside the layers (embeddings, head), by name
    weights: int  # 2-D weights in the manifest


def summarize(manifest: BaseManifest) -> ShapeSummary:
    """The shape summary of the base ``manifest`` describes."""
    in_layers: Counter[tuple[str, str, tuple[int, ...], str]] = Counter()
    layers: set[tuple[str, int]] = set()
    others = []
    for name, weight in manifest.weights.items():
        module = name.removesuffix(".weight")
        found = _IN_LAYER.match(module)
        if found is None:
            others.append(ModuleShape(None, module, weight.shape, weight.dtype, 0))
            continue
        stack = found["stack"]
        layers.add((stack, int(found["index"])))
        in_layers[(stack, found["module"], weight.shape, weight.dtype)] += 1
    modules = tuple(
        ModuleShape(stack, name, shape, dtype, count)
        for (stack, name, shape, dtype), count in sorted(in_layers.items())
    )
    names = {module.name for module in modules}
    shaped = modules or tuple(others)
    dimensions = Counter(dimension for module in shaped for dimension in module.shape)
    return ShapeSummary(
        architecture=next((family for family, needs in FAMILIES if needs <= names), None),
        stacks=tuple(sorted({stack for stack, _ in layers})),
        layers=len(layers),
        hidden_size=max(dimensions, key=lambda d: (dimensions[d], d)) if dimensions else None,
        modules=modules,
        others=tuple(sorted(others, key=lambda module: module.name)),
        weights=len(manifest.weights),
    )
