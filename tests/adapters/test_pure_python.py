"""registry.adapters must import and work without torch, numpy or safetensors (it runs in the API server)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
for blocked in ("torch", "numpy", "safetensors"):
    sys.modules[blocked] = None  # any import of these now raises ImportError
import registry.adapters
from registry.adapters import compatibility, config, base_manifest, safetensors_header
header = safetensors_header.parse_header(lambda o, n: b"\\x02\\0\\0\\0\\0\\0\\0\\0{}"[o:o + n], 10)
assert header.tensors == {}
print("ok")
"""


def test_package_imports_without_torch_numpy_or_safetensors() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
