"""The ``local`` target: vLLM processes on this machine, mirroring :mod:`poolserve.targets.cluster`.

- :mod:`poolserve.targets.local.target`: :class:`~poolserve.targets.local.target.LocalTarget`, the verbs.
- :mod:`poolserve.targets.local.plan`: the launch plan (pure): composed container -> argv, env, directories.
- :mod:`poolserve.targets.local.launch`: recording a model and starting its supervisor.
- :mod:`poolserve.targets.local.supervisor`: the supervisor process, the kubelet of one model's server.
- :mod:`poolserve.targets.local.container`: what the supervisor acts with: the server process, probes, OOM counts.
- :mod:`poolserve.targets.local.lifecycle`: the pod rules it follows (pure): probes, back-off, terminations.
- :mod:`poolserve.targets.local.status`: a model's status from its entry, pod status and probes (pure).
- :mod:`poolserve.targets.local.waiting`: what ``wait`` looks at, in :mod:`poolserve.targets.wait`'s loop.
- :mod:`poolserve.targets.local.stopping`: stopping a server like a pod (SIGTERM, grace period, SIGKILL).
- :mod:`poolserve.targets.local.running`: which supervisors run.
- :mod:`poolserve.targets.local.state`: the state file, the pod status files, and their lock.
- :mod:`poolserve.targets.local.process`: a server seen from outside: its port, ``/health``, its log.

Importing this package imports none of them.
"""
