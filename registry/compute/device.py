"""Where the math runs: CUDA when present (or asked for), else the CPU. Accumulation is fp32."""

from __future__ import annotations

import torch

COMPUTE_DTYPE = torch.float32


def select_device(preference: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` if available else ``cpu``; anything else is taken as a torch device string."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"LOREG_DEVICE={preference} but CUDA is not available on this machine")
    return device
