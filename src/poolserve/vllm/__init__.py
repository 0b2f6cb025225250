"""Layer 2, vLLM itself: its command line per version, its HTTP API shapes, log diagnoses, memory sizing, HF cache.

Pure: imports :mod:`poolserve.config` and the leaves, never an edge library.
"""
