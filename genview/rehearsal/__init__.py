"""The dress rehearsal (config/rehearsal.yaml, config/rehearsal_cpu.yaml): every model role built at its published
architecture with random weights (``build``), so the real loaders and jobs run end to end without the real weights.

Fenced: only the ``genview models build-rehearsal-models`` command imports this package, and it imports nothing of
the stages, so nothing a real run computes can depend on it (tests/test_layers.py checks both)."""
