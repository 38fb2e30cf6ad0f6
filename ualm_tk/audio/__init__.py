"""Audio input/output, quality checks and resampling used by stage 2 (audio formatting)."""
