"""SpAtten host side, by role (README "Layout"):

- :mod:`spatten.contract` -- the hardware contract and the bit-exact golden model: the
  generated layout (``contract.json``), parameters, commands, memory image, golden model,
  quantization and the float reference.
- :mod:`spatten.sim` -- the simulation driver: the cached build (Chisel, Verilator), the
  program a workload becomes, the native simulator runs and the report.
- :mod:`spatten.errors` -- the domain errors libraries raise (only CLIs turn them into
  messages and exit codes).
- :mod:`spatten.fileio` -- atomic file output, used on both sides.

The PyTorch algorithm, models, policies and the workload CSV schema live in ``workloads``;
the command-line tools in ``tools/`` and ``run.py``.
"""
