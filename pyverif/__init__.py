"""cocotb + pyuvm verification of the SpAtten RTL.

``pyverif.common`` holds the pieces every testbench shares (valid/ready stream agents
with random stalls, seeds, parameters, watchdog, pyuvm base classes); each unit has its
own package (``pyverif.topk``, ...) with a cocotb test module and a pytest file that
builds and runs it through ``spatten/sim/build.py``. See ``pyverif/README.md``.
"""
