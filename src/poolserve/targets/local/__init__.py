"""The ``local`` target: vLLM processes on this machine, mirroring :mod:`poolserve.targets.cluster`.

- :mod:`poolserve.targets.local.plan`: the launch plan (pure): composed container -> argv, env, directories.
- :mod:`poolserve.targets.local.state`: the state file of started servers and its lock.
- :mod:`poolserve.targets.local.process`: one vLLM server process: spawn, wait for ``/health``, stop its group.
- :mod:`poolserve.targets.local.target`: :class:`~poolserve.targets.local.target.LocalTarget`, the verbs on top.

Importing this package imports none of them.
"""
