"""Pretrained models by role: loaders and tiny offline stand-ins."""
