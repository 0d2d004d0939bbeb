"""Policies with keys overridden on the command line: ``PRESET@section.key=value@...``.

``load_policy_spec("h2o@eviction.budget=0.15")`` loads the preset (or YAML path) ``h2o``
and sets ``eviction.budget`` to 0.15; the policy's name becomes ``h2o@eviction.budget=0.15``
so tables name every point. Values are parsed as YAML scalars (``0.15``, ``true``, ``token``)
and checked like the file's own keys (unknown keys and bad values are errors naming the
spec). This is how one preset is swept over several budgets.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from workloads.spatten.policy import POLICY_DIR, Policy, PolicyError, load_policy, policy_from_dict


def _base_data(base: str) -> tuple[dict, str]:
    path = Path(base)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = POLICY_DIR / f"{base}.yaml"
    load_policy(base)  # the base must load on its own (clear errors for a bad base)
    return yaml.safe_load(path.read_text()), str(path)


def load_policy_spec(spec: str) -> Policy:
    """A preset or YAML path, optionally followed by ``@section.key=value`` overrides."""
    base, *sets = spec.split("@")
    if not sets:
        return load_policy(base)
    data, src = _base_data(base)
    data = dict(data)
    for item in sets:
        if "=" not in item:
            raise PolicyError(f"{spec}: override {item!r} is not section.key=value")
        path, text = item.split("=", 1)
        keys = path.split(".")
        if not all(keys):
            raise PolicyError(f"{spec}: override {item!r}: empty key")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"{spec}: override {item!r}: bad value: {exc}") from exc
        node = data
        for k in keys[:-1]:
            child = node.get(k)
            node[k] = dict(child) if isinstance(child, dict) else {}
            node = node[k]
        node[keys[-1]] = value
    data["name"] = f"{data.get('name', base)}@{'@'.join(sets)}"
    return policy_from_dict(data, f"{src} with {'@'.join(sets)}")
