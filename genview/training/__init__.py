"""Pre-training: backbones, the data pipeline with generated views, experiments from config, the training loop."""
