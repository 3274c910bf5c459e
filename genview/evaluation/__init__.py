"""Evaluation of pre-trained experiments: cached features, protocols (linear, kNN, semi-supervised, zero-shot,
retrieval)."""
