"""Model card fixtures: a realistic README.md of a PEFT adapter (as PEFT and the Hub write them, with an
Open LLM Leaderboard style ``model-index``), and broken variants."""

from __future__ import annotations

SQL_ADAPTER_README = """---
base_model: meta-llama/Llama-3.1-8B
base_model_relation: adapter
library_name: peft
license: apache-2.0
language: en
datasets:
- b-mc2/sql-create-context
- gretelai/synthetic_text_to_sql
tags:
- text-to-sql
- lora
- generated_from_trainer
pipeline_tag: text-generation
model-index:
- name: llama-3.1-8b-sql-lora
  results:
  - task:
      type: text-generation
      name: Text Generation
    dataset:
      name: Spider (dev)
      type: spider
      split: validation
    metrics:
    - type: exact_match
      value: 0.712
      name: Exact Match
    - type: execution_accuracy
      value: 0.764 ± 0.011
  - task:
      type: text-generation
    dataset:
      name: HellaSwag (10-Shot)
      type: hellaswag
      split: validation
      args:
        num_few_shot: 10
    metrics:
    - type: acc_norm
      value: 81.9
      name: normalized accuracy
    source:
      url: https://huggingface.co/spaces/open-llm-leaderboard/open_llm_leaderboard
      name: Open LLM Leaderboard
---

# llama-3.1-8b-sql-lora

A LoRA adapter that turns questions about a database into SQL, given its `CREATE TABLE` statements.

## Training

- r=16, lora_alpha=32, dropout 0.05 on q_proj, k_proj, v_proj, o_proj
- 3 epochs on sql-create-context and synthetic_text_to_sql

### Framework versions

- PEFT 0.13.2
"""

INVALID_YAML_README = """---
license: mit
tags: [sql, lora
---
# An adapter whose front matter does not parse
"""
