"""The sync agent (``lorareg agent``): keeps one vLLM or SGLang replica serving a deployment.

``engines`` talks to the engine's dynamic-LoRA API, ``plan`` reconciles (pure), ``replica`` checks the
engine's base, ``loop`` runs the passes and heartbeats."""
