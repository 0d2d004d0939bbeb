"""The accelerator in the loop: attention engines (``torch``, ``golden``, ``rtl``) for a
Hugging Face model, the closed-loop host, generation and perplexity through them.

See :mod:`spatten.loop.engines` (the interface), :mod:`spatten.loop.host` (the host
program a real SpAtten runs), :mod:`spatten.loop.kvcache` (the K/V cache in DRAM),
:mod:`spatten.loop.requests` (request construction), :mod:`spatten.loop.device` and
:mod:`spatten.sim.stream` (where requests run), :mod:`spatten.loop.generate`.
"""
