"""Testbench of the top-k engine (``hardware/src/main/scala/spatten/TopKEngine.scala``)."""
