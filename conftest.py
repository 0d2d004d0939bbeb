"""Repository-wide pytest setup: the repo root is importable (``tools``, ``workloads``,
``pyverif``), and every Chisel top the collected tests need is elaborated in one sbt run
at the start (sbt starts slowly; one run for all tops saves minutes)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# No test reaches a public host: the Hugging Face libraries stay offline (they read this
# when first imported, which is after this line). The hub tests point HF_ENDPOINT at a
# server of their own on 127.0.0.1 (workloads/tests/local_hub.py).
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


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
        from tools import hwbuild
        try:
            hwbuild.elaborate_many(pairs)
        except hwbuild.BuildError as e:  # let the individual tests report it
            print(f"\n[conftest] elaboration failed: {e}", file=sys.stderr)
