"""cocotb testbench of the DPI DRAM channel (``SimDramChannel``: Chisel BlackBox around
``hardware/dpi/sv/SpAttenDram.sv``)."""
