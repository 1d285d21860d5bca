"""The math the workers run: merges, diffs, merge-into-base, extraction. Torch over safetensors; no DB,
no HTTP. Adapters are read into :class:`registry.compute.lora.LoraAdapter` and written back in PEFT's
on-disk format.
"""
