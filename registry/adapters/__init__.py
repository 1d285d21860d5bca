"""The PEFT LoRA format: safetensors headers, adapter configs, base shape manifests, compatibility checks.

Pure Python (no torch, numpy or safetensors), so the API server can validate pushes without them.
"""

from registry.adapters.base_manifest import BaseManifest, WeightShape, content_digest, read_base_manifest
from registry.adapters.compatibility import LoraModule, check_adapter
from registry.adapters.config import LoraConfig, parse_adapter_config
from registry.adapters.safetensors_header import (
    FLOAT_DTYPES,
    SafetensorsHeader,
    TensorInfo,
    parse_header,
    parse_header_file,
)

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"

__all__ = [
    "CONFIG_FILE",
    "FLOAT_DTYPES",
    "WEIGHTS_FILE",
    "BaseManifest",
    "LoraConfig",
    "LoraModule",
    "SafetensorsHeader",
    "TensorInfo",
    "WeightShape",
    "check_adapter",
    "content_digest",
    "parse_adapter_config",
    "parse_header",
    "parse_header_file",
    "read_base_manifest",
]
