"""pyuvm base classes shared by the unit testbenches.

- :class:`ScoreboardBase`: receives requests and responses on two analysis exports,
  predicts each response with :meth:`ScoreboardBase.predict` (the reference model) and
  compares in ``check_phase``; a mismatch message names the request, the expected and
  the actual response, and the run's seed.
- :class:`CoverageBase`: counts named bins from :meth:`CoverageBase.sample`; fails in
  ``report_phase`` when a bin was missed (unless ``DISABLE_COVERAGE_ERRORS`` is set in
  the ``ConfigDB``).
- :func:`config`: a ``ConfigDB`` value with a default (the knobs tests set).
- :func:`write_report`: when ``SPATTEN_TB_REPORT`` names a file, both merge a JSON
  summary into it (per test), so a pytest wrapper can assert *why* a run failed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from pyuvm import (ConfigDB, UVMConfigItemNotFound, uvm_root, uvm_scoreboard, uvm_subscriber,
                   uvm_tlm_analysis_fifo)

from pyverif.common.seed import reproduce_hint

__all__ = ["ScoreboardBase", "CoverageBase", "write_report", "current_test_name", "config"]


def config(key: str, default: Any) -> Any:
    """``key`` from the pyuvm ``ConfigDB`` (set by a test), or ``default`` when no test set it."""
    try:
        return ConfigDB().get(None, "", key)
    except UVMConfigItemNotFound:
        return default


def current_test_name() -> str:
    """The class name of the running pyuvm test."""
    top = getattr(uvm_root(), "uvm_test_top", None)
    return type(top).__name__ if top is not None else "unknown"


def write_report(section: str, data: dict[str, Any]) -> None:
    """Merge ``{test: {section: data}}`` into ``$SPATTEN_TB_REPORT`` (atomically)."""
    target = os.environ.get("SPATTEN_TB_REPORT")
    if not target:
        return
    path = Path(target)
    report: dict[str, Any] = {}
    if path.is_file():
        try:
            report = json.loads(path.read_text())
        except json.JSONDecodeError:
            report = {}
    report.setdefault(current_test_name(), {})[section] = data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


class ScoreboardBase(uvm_scoreboard):
    """In-order scoreboard: each response is compared with the prediction for the
    request at the same place. Subclasses implement :meth:`predict` and may refine
    :meth:`compare` and :meth:`describe`."""

    max_reported = 5

    def build_phase(self) -> None:
        self.request_fifo = uvm_tlm_analysis_fifo("request_fifo", self)
        self.response_fifo = uvm_tlm_analysis_fifo("response_fifo", self)
        self.request_export = self.request_fifo.analysis_export
        self.response_export = self.response_fifo.analysis_export
        self.checked = 0
        self.mismatches: list[str] = []

    def predict(self, request: Any) -> Any:
        """The reference model: the response ``request`` must produce."""
        raise NotImplementedError

    def compare(self, expected: Any, actual: Any) -> bool:
        """True when ``actual`` is correct."""
        return bool(expected == actual)

    def describe(self, request: Any) -> str:
        """A short description of ``request`` for mismatch messages."""
        return str(request)

    def check_phase(self) -> None:
        pairs = 0
        while self.response_fifo.can_get():
            _, actual = self.response_fifo.try_get()
            ok, request = self.request_fifo.try_get()
            if not ok:
                self.mismatches.append(f"response {actual} has no request")
                continue
            expected = self.predict(request)
            pairs += 1
            if not self.compare(expected, actual):
                self.mismatches.append(f"request #{pairs - 1}: {self.describe(request)}\n"
                                       f"    expected {expected}\n    actual   {actual}")
        left = 0
        while self.request_fifo.can_get():
            _, request = self.request_fifo.try_get()
            left += 1
            self.mismatches.append(f"request {self.describe(request)} got no response")
        self.checked = pairs
        write_report("scoreboard", {"checked": pairs, "mismatches": len(self.mismatches),
                                    "unanswered": left, "first": self.mismatches[:self.max_reported]})
        if self.mismatches:
            for m in self.mismatches[:self.max_reported]:
                self.logger.error(f"MISMATCH {m}")
            raise AssertionError(f"scoreboard: {len(self.mismatches)} mismatch(es) in {pairs} "
                                 f"checked responses; first: {self.mismatches[0]}; {reproduce_hint()}")
        if pairs == 0:
            raise AssertionError("scoreboard: no response was checked")
        self.logger.info(f"scoreboard: {pairs} responses checked, all correct")


class CoverageBase(uvm_subscriber):
    """Named functional-coverage bins; a missed bin fails the test in ``report_phase``.

    Subclasses set :attr:`bins` (all bin names) and implement :meth:`sample`.
    """

    bins: tuple[str, ...] = ()

    def build_phase(self) -> None:
        self.hits: Counter[str] = Counter()

    def sample(self, item: Any) -> Iterable[str]:
        """The bins ``item`` hits."""
        raise NotImplementedError

    def write(self, item: Any) -> None:
        for name in self.sample(item):
            if name not in self.bins:
                raise KeyError(f"coverage: sample() returned unknown bin {name!r}")
            self.hits[name] += 1

    def report_phase(self) -> None:
        missed = [b for b in self.bins if self.hits[b] == 0]
        table = ", ".join(f"{b}={self.hits[b]}" for b in self.bins)
        write_report("coverage", {"hits": {b: self.hits[b] for b in self.bins}, "missed": missed})
        try:
            disabled = ConfigDB().get(self, "", "DISABLE_COVERAGE_ERRORS")
        except UVMConfigItemNotFound:
            disabled = False
        if missed and not disabled:
            self.logger.error(f"coverage missed bins {missed} ({table})")
            raise AssertionError(f"coverage: bins missed: {missed}; {reproduce_hint()}")
        self.logger.info(f"coverage: {table}")
