"""One attention-engine interface, three engines: ``torch``, ``golden``, ``rtl``.

An engine computes the attention of a Hugging Face causal LM (batch size 1) under a
SpAtten policy while the model runs on the CPU::

    eng = make_engine("golden", policy, preset="eighth")
    with eng.attach(model):
        model(ids, use_cache=True)               # prefill
        rec = eng.last_call()                    # CallRecord: kept ids/heads per layer, bytes, cycles
    eng.close()

- ``torch``: the PyTorch algorithm in float (``workloads/spatten/``), its own decisions.
- ``golden``: :class:`spatten.loop.host.AcceleratorHost` on the bit-exact model.
- ``rtl``: the same host on the Verilated ``SpAttenTop`` of ``preset`` (one streaming
  simulator process, built and cached by :mod:`spatten.sim.build`).

The two accelerator engines make the cascade decisions with the accelerator's own
TOPK_TOKENS / TOPK_HEADS answers, so ``golden`` and ``rtl`` must agree token for token.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import torch

from spatten.errors import InputError
from spatten.loop.host import AcceleratorHost, CallRecord, LayerDecision
from spatten.loop.requests import list_bytes
from spatten.contract.memimage import stride

__all__ = ["ENGINES", "Engine", "TorchEngine", "AcceleratorEngine", "make_engine"]

ENGINES = ("torch", "golden", "rtl")
ATTN_NAME = "spatten_engine"
ROOT = Path(__file__).resolve().parents[2]


def _engine_attention(module, *args, **kwargs):
    return module._spatten_host(module, *args, **kwargs)


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(ATTN_NAME, _engine_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_NAME, eager_mask)


class Engine:
    """The interface: :meth:`attach` a model, read :meth:`last_call`, :meth:`close`."""

    name = "?"
    records: list[CallRecord]

    def attach(self, model: torch.nn.Module) -> contextlib.AbstractContextManager:
        raise NotImplementedError

    def last_call(self) -> CallRecord:
        if not self.records:
            raise RuntimeError("no call has run on this engine")
        return self.records[-1]

    def close(self) -> None:
        """Release what the engine holds (the simulator process of ``rtl``)."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TorchEngine(Engine):
    """The PyTorch float algorithm (``workloads.spatten``)."""

    name = "torch"

    def __init__(self, policy, params) -> None:
        self.policy, self.params = policy, params
        self.records = []
        self._state = None

    @contextlib.contextmanager
    def attach(self, model: torch.nn.Module) -> Iterator[None]:
        from workloads.spatten.hooks import spatten_context

        with spatten_context(model, self.policy, record=True) as state:
            self._state = state
            hook = model.register_forward_hook(lambda *_: self._collect())
            try:
                yield
            finally:
                hook.remove()
                self._state = None

    def _collect(self) -> None:
        st = self._state
        if st.call < 0:
            return
        recs = [r for r in st.records if r.call == st.call]
        rec = CallRecord(st.call, st.length, st.call_query_len)
        q = self.policy.quantization
        msb, lsb, vb = (q.key_msb_bits, q.key_lsb_bits, q.value_bits) if q.enabled else (16, 0, 16)
        b = self.params.burst_bytes
        for r in recs:
            n = len(r.kept_ids)
            rec.layers.append(LayerDecision(tuple(int(x) for x in r.kept_ids), tuple(r.heads),
                                            value_count=r.value_count, requantized=int(r.requant.sum())))
            per_head = list_bytes(n, self.params) + n * stride(st.head_dim, msb, b) + r.value_count * stride(
                st.head_dim, vb, b)
            rec.dram_bytes += per_head * len(r.heads) + int(r.requant.sum()) * n * (stride(st.head_dim, lsb, b)
                                                                                   if lsb else 0)
            rec.requests += len(r.heads)
        st.records = []  # one call at a time
        self.records.append(rec)


class AcceleratorEngine(Engine):
    """The accelerator (golden model or RTL) in the loop (:class:`AcceleratorHost`)."""

    def __init__(self, kind: str, policy, params, capacity: int, exe: Path | None = None,
                 workdir: Path | None = None, check: bool = False, backend: str = "builtin",
                 dram_config: Path | None = None) -> None:
        self.name = kind
        self.policy, self.params, self.capacity = policy, params, capacity
        self.exe, self.workdir, self.check = exe, workdir, check
        self.backend, self.dram_config = backend, dram_config
        self.host: AcceleratorHost | None = None
        self.records = []

    def _device_factory(self):
        from spatten.loop.device import GoldenDevice, RtlDevice

        if self.name == "golden":
            return GoldenDevice
        return lambda params, mem: RtlDevice(params, mem, self.exe, self.workdir, backend=self.backend,
                                             dram_config=self.dram_config, check=self.check)

    @contextlib.contextmanager
    def attach(self, model: torch.nn.Module) -> Iterator[None]:
        from workloads.spatten.hooks import attention_modules, model_geometry

        if self.host is None:
            self.host = AcceleratorHost(self.policy, self.params, self._device_factory(), model_geometry(model),
                                        self.capacity)
            self.records = self.host.records
        _register()
        mods = attention_modules(model)
        previous = model.config._attn_implementation
        for i, m in enumerate(mods):
            m._spatten_host = self.host
            m._spatten_layer = i
        model.set_attn_implementation(ATTN_NAME)
        try:
            yield
        finally:
            model.set_attn_implementation(previous)
            for m in mods:
                del m._spatten_host
                del m._spatten_layer

    @property
    def cycles(self) -> int:
        return getattr(self.host.device, "cycles", 0) if self.host else 0

    def close(self) -> None:
        if self.host is not None:
            self.host.close()


def make_engine(name: str, policy, preset: str = "eighth", capacity: int = 1 << 16, workdir: Path | None = None,
                check: bool = False, backend: str = "builtin", dram_config: Path | None = None) -> Engine:
    """An engine by name; ``preset`` picks the hardware parameters (and the RTL build)."""
    from spatten.contract.params import from_dict, load_params
    from spatten.sim import build as hwbuild

    if name not in ENGINES:
        raise InputError(f"unknown engine {name!r}: one of {', '.join(ENGINES)}")
    contract = hwbuild.load_contract(preset)  # InputError for an unknown preset
    params = from_dict(contract["params"], source=f"contract of preset {preset}")
    if name == "torch":
        return TorchEngine(policy, params)
    exe = None
    if name == "rtl":
        rtl = hwbuild.elaborate("SpAttenTop", preset)
        params = load_params(rtl.contract_path)
        exe = hwbuild.build_native("SpAttenTop", preset, [ROOT / "hardware" / "harness" / "spatten_sim.cpp"])
        if workdir is None:
            workdir = ROOT / "results" / "loop" / f"{preset}-{os.getpid()}"  # one simulator per process
        if dram_config is None and backend != "ideal":
            dram_config = ROOT / "hardware" / "dpi" / "configs" / "hbm2.yaml"
    return AcceleratorEngine(name, policy, params, capacity, exe=exe, workdir=workdir, check=check,
                             backend=backend, dram_config=dram_config)
