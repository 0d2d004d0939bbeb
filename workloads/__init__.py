"""SpAtten workloads: the algorithm in PyTorch, the bit-exact golden model and the host side
of the hardware contract (`hardware/SPEC.md`).

Modules of the hardware contract:

- :mod:`workloads.params`    -- :class:`~workloads.params.HwParams`, read from the JSON the
  Scala side writes (the single source of truth for widths and sizes).
- :mod:`workloads.memimage`  -- :class:`~workloads.memimage.MemoryImage`, the DRAM contents
  (plane rows and token lists, SPEC section 4) and its file format.
- :mod:`workloads.commands`  -- command and response words (SPEC section 5), typed packets,
  and the binary word-stream file of the native harness.
- :mod:`workloads.golden`    -- the bit-exact golden accelerator and its pure functions.
- :mod:`workloads.quant`     -- float tensors to the integer formats; score scales.
- :mod:`workloads.reference` -- the PyTorch float reference of one request.

``workloads/FORMATS.md`` records the host-side choices where SPEC is silent (error rules,
undefined behaviour, file formats, state sizes) and the measured golden-vs-float accuracy.
"""
