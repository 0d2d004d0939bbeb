"""SpAtten's pruned attention (Wang, Zhang and Han, HPCA 2021) for Hugging Face models.

Public API::

    from workloads.spatten import load_policy, spatten_context
    policy = load_policy("spatten-default")      # or a YAML path
    with spatten_context(model, policy, record=True) as state:
        model(input_ids)                          # GPT-2, Llama (GQA) or BERT family
    state.records                                 # one LayerRecord per (call, layer)

See ``policy.py`` (YAML format, schedules), ``state.py`` (cascade semantics) and
``attention.py`` (the algorithm).
"""

from workloads.spatten.hooks import attention_modules, model_geometry, spatten_context
from workloads.spatten.policy import DEFAULT_POLICY, Policy, PolicyError, load_policy, preset_names
from workloads.spatten.state import LayerRecord, SpAttenState

__all__ = [
    "DEFAULT_POLICY",
    "LayerRecord",
    "Policy",
    "PolicyError",
    "SpAttenState",
    "attention_modules",
    "load_policy",
    "model_geometry",
    "preset_names",
    "spatten_context",
]
