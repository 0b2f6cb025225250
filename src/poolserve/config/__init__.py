"""Layer 1, the configuration: what the user declares, validated and resolved. Pure.

The schema (pydantic), loading a file with ``--set`` overrides, the rules across fields, the catalog of
known models, vLLM versions, storage URIs and YAML round-trips. Imports only the leaves
(:mod:`poolserve.errors`, :mod:`poolserve.machine`).
"""
