"""Per-image analysis that sets the generation parameters: foreground ratio and caption complexity."""
