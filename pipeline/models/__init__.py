"""Build-side model code: sources, the project's own architectures, and model info (needs torch)."""
