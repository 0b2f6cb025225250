"""Layer 4, where models run: the Target protocol, the local target (vLLM processes) and the cluster target.

Both targets take a :class:`~poolserve.kserve.render.Rendered` and never go back to the config.
"""
