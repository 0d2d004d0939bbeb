"""pyuvm testbench of ``KeyCombine``: ``k = (msb << kLsbBits) | lsb`` (pass 2) or
``msb << kLsbBits`` (pass 1), SPEC 1. The reference is the golden model's pass-1/pass-2
key forming inside ``spatten.contract.golden.attention_probs``, reproduced through it: the
expected key row is the one whose score against unit queries ``e_i`` the golden
``dot_scores`` returns. ``KeyCombineRandomTest``: every (kMsbBits, kLsbBits) split, both
passes, extremes, 400 rows (combinational unit: no streams)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from cocotb.triggers import Timer
from pyuvm import ConfigDB, test, uvm_factory

from pyverif.common.uvm import CoverageBase, ScoreboardBase
from pyverif.units.env import UnitTest, mask, scaled, to_signed
from spatten.contract.golden import attention_probs
from spatten.contract.memimage import element_range
from spatten.contract.params import from_dict

ROWS = scaled(400)


@dataclass
class KeyItem:
    msb: list[int]
    lsb: list[int]
    msb_bits: int
    lsb_bits: int
    with_lsb: bool


class KeyScoreboard(ScoreboardBase):
    """The golden keys: ``attention_probs`` forms the pass-1 key ``msb << l`` and the
    pass-2 key ``(msb << l) | lsb``; with D unit queries ``q = e_i`` each score is one
    key element, so the scores are the key row."""

    def predict(self, item: KeyItem) -> list[int]:
        d = len(item.msb)
        params = from_dict(self.params_dict)
        out = []
        for i in range(d):
            q = [1 if j == i else 0 for j in range(d)]
            # pass 2 is forced (requant, threshold above any pmax) when with_lsb
            res = attention_probs(q, np.array([item.msb]), np.array([item.lsb]), item.lsb_bits, 0, 0,
                                  requant=item.with_lsb and item.lsb_bits > 0,
                                  requant_threshold=1 << 17, params=params)
            out.append(int(res.scores[0]))
        return out

    def describe(self, item: KeyItem) -> str:
        return str(item)


class KeyOrScoreboard(KeyScoreboard):
    """A wrong model for the negative test: the LSB plane ORed in without the shift of
    the MSB plane (``msb | lsb``)."""

    def predict(self, item: KeyItem) -> list[int]:
        return [m | (l if item.with_lsb else 0) for m, l in zip(item.msb, item.lsb)]


class KeyCoverage(CoverageBase):
    bins = ("pass1", "pass2", "lsb0", "lsb15", "full16", "negativeMsb")

    def sample(self, item: KeyItem) -> Iterable[str]:
        hits = ["pass2" if item.with_lsb else "pass1"]
        if item.lsb_bits == 0:
            hits.append("lsb0")
        if item.lsb_bits == 15:
            hits.append("lsb15")
        if item.msb_bits + item.lsb_bits == 16 and item.with_lsb:
            hits.append("full16")
        if any(m < 0 for m in item.msb):
            hits.append("negativeMsb")
        return hits


@test()
class KeyCombineRandomTest(UnitTest):
    """Every split with kMsbBits + kLsbBits <= 16, both passes."""

    scoreboard = KeyScoreboard
    coverage = KeyCoverage
    rows = ROWS

    async def stimulus(self) -> None:
        dut, rng = self.dut, self.rng
        dmax = int(self.params["maxHeadDim"])
        self.env.sb.params_dict = self.params
        splits = [(m, l) for m in range(1, 17) for l in range(0, 16) if m + l <= 16]
        for n in range(self.rows):
            m, l = splits[n] if n < len(splits) else rng.choice(splits)
            mlo, mhi = element_range(m, True)
            llo, lhi = element_range(l, False)
            msb = [rng.choice([mlo, mhi, rng.randint(mlo, mhi)]) for _ in range(dmax)]
            lsb = [rng.choice([llo, lhi, rng.randint(llo, lhi)]) for _ in range(dmax)]
            with_lsb = rng.random() < 0.5
            self.env.requests.write(KeyItem(msb, lsb, m, l, with_lsb))
            for i in range(dmax):
                getattr(dut, f"io_msb_{i}").value = mask(msb[i], 16)
                getattr(dut, f"io_lsb_{i}").value = mask(lsb[i], 16)
            dut.io_lsbBits.value = l
            dut.io_withLsb.value = int(with_lsb)
            await Timer(1, unit="ns")
            self.env.responses.write([to_signed(int(getattr(dut, f"io_key_{i}").value), 16) for i in range(dmax)])


@test()
class KeyCombineBrokenModelTest(KeyCombineRandomTest):
    """Negative test: a model that forgets the shift must make the scoreboard fail."""

    rows = 60

    def build_phase(self) -> None:
        uvm_factory().set_type_override_by_type(KeyScoreboard, KeyOrScoreboard)
        ConfigDB().set(None, "*", "DISABLE_COVERAGE_ERRORS", True)
        super().build_phase()
