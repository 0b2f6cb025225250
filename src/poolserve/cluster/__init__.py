"""Cluster access for the ``cluster`` target.

- :mod:`poolserve.cluster.base`: the narrow :class:`~poolserve.cluster.base.Cluster` protocol and the
  shared error messages every implementation raises.
- :mod:`poolserve.cluster.kube`: :class:`~poolserve.cluster.kube.KubeCluster`, the official
  ``kubernetes`` client (optional extra ``cluster``), built lazily.
- :mod:`poolserve.cluster.fake`: :class:`~poolserve.cluster.fake.FakeCluster`, in memory, for tests;
  :mod:`~poolserve.cluster.fake_objects` builds realistic objects to seed it (or a real API server),
  :mod:`~poolserve.cluster.fake_kserve` plays KServe on it.
- :mod:`poolserve.cluster.target`: :class:`~poolserve.cluster.target.ClusterTarget`, deploy/status/wait/
  logs/delete/diff on top of a ``Cluster``; :mod:`~poolserve.cluster.preflight` (checks before
  deploy), :mod:`~poolserve.cluster.readiness` (pure: live objects -> ModelStatus) and
  :mod:`~poolserve.cluster.cachejob` (``cache warm``) beside it.

Importing this package imports no Kubernetes client.
"""
