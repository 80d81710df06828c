"""Model zoo: workload graphs of well-known models from HuggingFace-style configs.

Shipped configs live in ``workloads/zoo/configs/<name>.yaml`` (HF field names plus
``published_params``, ``source`` and ``description``); a user's ``config.json`` works too.

Examples
--------
>>> from workloads.zoo import build, list_models
>>> g = build("gpt2", seq=256)
>>> g.meta["phase"], g.meta["tokens"]
('prefill', 256)
>>> "llama2-70b" in {m.name for m in list_models()}
True
"""

from workloads.zoo.api import (
    PHASES,
    ModelInfo,
    build,
    build_model,
    count_params,
    list_models,
    load_config,
)

__all__ = ["ModelInfo", "PHASES", "list_models", "load_config", "build", "build_model",
           "count_params"]
