"""Unit testbenches of the arithmetic units (cocotb): plane unpacker and key combine,
dot-product array, softmax (with its reciprocal divider), value accumulator. Each
``tb_*.py`` is a cocotb module run by ``test_units.py`` through ``spatten.sim.build``."""
