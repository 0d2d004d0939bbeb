"""Simulating the accelerator: :mod:`~spatten.sim.build` (cached Chisel elaboration and
Verilator builds), :mod:`~spatten.sim.program` (a workload to commands, memory image and
expected responses), :mod:`~spatten.sim.simulate` (native simulator runs, checked) and
:mod:`~spatten.sim.report` (the summary of a run),
:mod:`~spatten.sim.inputs` (every input checked before any build; the DRAM YAML in
:mod:`~spatten.sim.dramconfig`), :mod:`~spatten.sim.gpu_baseline` (the GPU baseline's
workload plan and results) and
:mod:`~spatten.sim.procs` (child processes, signals, the output-folder lock)."""
