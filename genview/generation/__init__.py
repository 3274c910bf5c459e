"""Per-shard view generation: IC (unCLIP from the image), TC (Stable Diffusion from the caption), ITC (both)."""
