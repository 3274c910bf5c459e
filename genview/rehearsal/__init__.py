"""The dress rehearsal (config/rehearsal.yaml, config/rehearsal_cpu.yaml): every model role built at its published
architecture with random weights (``build``), so the real loaders and jobs run end to end without the real weights.

Fenced: it is a stage of its own (``genview rehearsal build``, rule build_rehearsal_models) that no other module
imports, and it imports only the foundation and the model loaders it builds for, so nothing a real run computes can
depend on it (tests/test_layers.py checks both)."""
