"""Base models and adapters taken in from the Hugging Face Hub, or any Hub-compatible server such as
another lorareg's ``/hf`` routes, through ``huggingface_hub``, keeping the exact commit SHA.

- ``base``: a base model's manifest from the local HF cache, else from HTTP range reads (``ranges``) of
  its safetensors headers; weights are never downloaded. ``cache`` finds a revision in the HF cache.
- ``adapter``: a PEFT adapter repository fetched with ``snapshot_download``, its base resolved to a commit.
- ``convert``: PEFT's older ``adapter_model.bin`` converted to safetensors, tensors only (torch, lazily).
- ``revisions``: a revision resolved to its commit; ``names``: repository ids, ``hf://`` URIs, endpoints;
  ``errors``: ``huggingface_hub``'s exceptions as registry errors.

The CLI commands over these are ``lorareg base register --hf`` and ``lorareg import``.
"""
