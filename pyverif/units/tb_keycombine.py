"""Testbench of ``KeyCombine``: ``k = (msb << kLsbBits) | lsb`` (pass 2) or
``msb << kLsbBits`` (pass 1), SPEC 1, against the golden model's pass-1/pass-2 keys
(``workloads.golden.attention_probs`` forms them the same way: ``(msb << l) | lsb``)."""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.handle import SimHandleBase
from cocotb.triggers import Timer

from pyverif.units.env import load_params, make_rng
from pyverif.units.streams import Coverage, read_value, write_value
from workloads.memimage import element_range

REQUESTS = 400


def _keys(msb: np.ndarray, lsb: np.ndarray, lsb_bits: int, with_lsb: bool) -> np.ndarray:
    k1 = msb.astype(np.int64) << np.int64(lsb_bits)
    return k1 | lsb if with_lsb else k1


@cocotb.test()
async def combine_random(dut: SimHandleBase) -> None:
    """Every (kMsbBits, kLsbBits) split with kMsbBits + kLsbBits <= 16, both passes."""
    p = load_params()
    rng = make_rng("combine_random")
    dmax = p.max_head_dim
    splits = [(m, l) for m in range(1, 17) for l in range(0, 16) if m + l <= 16]
    cov = Coverage(["pass1", "pass2", "lsb0", "lsb15", "full16"])
    for n in range(REQUESTS):
        m, l = splits[n % len(splits)] if n < len(splits) else rng.choice(splits)
        mlo, mhi = element_range(m, True)
        llo, lhi = element_range(l, False)
        msb = np.array([rng.choice([mlo, mhi, rng.randint(mlo, mhi)]) for _ in range(dmax)])
        lsb = np.array([rng.choice([llo, lhi, rng.randint(llo, lhi)]) for _ in range(dmax)])
        with_lsb = rng.random() < 0.5
        for i in range(dmax):
            write_value(getattr(dut, f"io_msb_{i}"), int(msb[i]))
            write_value(getattr(dut, f"io_lsb_{i}"), int(lsb[i]))
        dut.io_lsbBits.value = l
        dut.io_withLsb.value = int(with_lsb)
        await Timer(1, unit="ns")
        got = [read_value(getattr(dut, f"io_key_{i}"), True) for i in range(dmax)]
        want = [int(x) for x in _keys(msb, lsb, l, with_lsb)]
        assert got == want, (f"request {n} (kMsbBits={m}, kLsbBits={l}, withLsb={with_lsb}, "
                             f"msb={msb.tolist()}, lsb={lsb.tolist()}): expected {want}, got {got}")
        cov.hit("pass2" if with_lsb else "pass1")
        cov.hit("lsb0", l == 0)
        cov.hit("lsb15", l == 15)
        cov.hit("full16", m + l == 16 and with_lsb)
    dut._log.info(f"{REQUESTS} key rows checked; coverage: {cov}")
    cov.check()
