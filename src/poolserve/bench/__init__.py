"""Layer 6, measuring: load generation, workloads, metrics, windows and soak, baselines, plots, a stub server."""
