"""Shared testbench infrastructure for every RTL testbench of the project.

- :mod:`pyverif.common.seed`: one seed per run, per-component random streams.
- :mod:`pyverif.common.params`: the hardware parameter JSON named by ``SPATTEN_PARAMS``.
- :mod:`pyverif.common.stream`: valid/ready (Chisel ``Decoupled``) source and sink with
  random idle / back-pressure insertion.
- :mod:`pyverif.common.watchdog`: a progress watchdog that names what stopped moving.
- :mod:`pyverif.common.uvm`: pyuvm base classes (scoreboard, coverage, report file).
- :mod:`pyverif.common.negative`: the shared "a wrong model is caught" check of the
  pytest entry points.
"""
