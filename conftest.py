"""Repository-wide pytest setup: every Chisel top the collected tests need is elaborated
in one sbt run at the start (sbt starts slowly; one run for all tops saves minutes). The
project's packages are importable through the editable install (``tools/setup.sh``)."""

from __future__ import annotations

import os
import sys

# No test reaches a public host: the Hugging Face libraries stay offline (they read this
# when first imported, which is after this line). The hub tests point HF_ENDPOINT at a
# server of their own on 127.0.0.1 (workloads/tests/local_hub.py).
os.environ["HF_HUB_OFFLINE"] = "1"


def pytest_collection_finish(session) -> None:  # noqa: D401 - pytest hook
    """Elaborate, in one sbt run, every (top, preset) that collected tests declare with
    ``pytestmark = pytest.mark.rtl(("Top", "preset"), ...)`` or a module-level
    ``RTL_TOPS = [("Top", "preset"), ...]``."""
    pairs: list[tuple[str, str]] = []
    seen_modules = set()
    for item in session.items:
        mod = getattr(item, "module", None)
        if mod is None or mod in seen_modules:
            continue
        seen_modules.add(mod)
        for pair in getattr(mod, "RTL_TOPS", []):
            if tuple(pair) not in pairs:
                pairs.append(tuple(pair))
    if pairs and not session.config.option.collectonly:
        from spatten.sim import build as hwbuild
        try:
            hwbuild.elaborate_many(pairs)
        except hwbuild.BuildError as e:  # let the individual tests report it
            print(f"\n[conftest] elaboration failed: {e}", file=sys.stderr)
