"""The ``local`` target: vLLM processes on this machine, mirroring :mod:`poolserve.cluster`.

- :mod:`poolserve.local.plan`: the launch plan (pure): composed container -> argv, env, directories.
- :mod:`poolserve.local.state`: the state file of started servers and its lock.
- :mod:`poolserve.local.process`: one vLLM server process: spawn, wait for ``/health``, stop its group.
- :mod:`poolserve.local.target`: :class:`~poolserve.local.target.LocalTarget`, the verbs on top.

Importing this package imports none of them.
"""
