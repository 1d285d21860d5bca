"""lorareg: a registry for LoRA adapters."""
