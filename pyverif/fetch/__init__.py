"""Testbench of the DRAM row fetcher (``RowFetcher``) and of the DRAM arbiter
(``DramArbiter``, through the test top ``FetchPair``)."""
