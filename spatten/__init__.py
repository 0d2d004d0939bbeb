"""The SpAtten accelerator project: hardware contract, simulation driver and workloads."""
