"""The hardware contract as seen from Python (``hardware/SPEC.md``) and the golden model.

- :mod:`~spatten.contract.params`    -- :class:`~spatten.contract.params.HwParams`, read from
  the JSON the Scala side writes (the single source of truth for widths and sizes).
- :mod:`~spatten.contract.memimage`  -- :class:`~spatten.contract.memimage.MemoryImage`, the
  DRAM contents (plane rows and token lists, SPEC section 4) and its file format.
- :mod:`~spatten.contract.commands`  -- command and response words (SPEC section 5), typed
  packets, and the binary word-stream file of the native harness.
- :mod:`~spatten.contract.grouped`   -- the grouped ATTEND (ATTEND_GROUP): several query heads
  over one K/V head and token list in one request (SPEC sections 2 and 5).
- :mod:`~spatten.contract.golden`    -- the bit-exact golden accelerator and its pure functions.
- :mod:`~spatten.contract.quant`     -- float tensors to the integer formats; score scales.
- :mod:`~spatten.contract.reference` -- the PyTorch float reference of one request.

``workloads/FORMATS.md`` records the host-side choices where SPEC is silent (error rules,
undefined behaviour, file formats, state sizes) and the measured golden-vs-float accuracy.
"""
