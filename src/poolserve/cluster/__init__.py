"""Cluster access for the ``cluster`` target.

- :mod:`poolserve.cluster.base`: the narrow :class:`~poolserve.cluster.base.Cluster` protocol and the
  shared error messages every implementation raises.
- :mod:`poolserve.cluster.kube`: :class:`~poolserve.cluster.kube.KubeCluster`, the official
  ``kubernetes`` client (optional extra ``cluster``), built lazily.
- :mod:`poolserve.cluster.fake`: :class:`~poolserve.cluster.fake.FakeCluster`, in memory, for tests.
- :mod:`poolserve.cluster.target`: :class:`~poolserve.cluster.target.ClusterTarget`, deploy/status/wait/
  logs/delete/diff/cache warm on top of a ``Cluster``.

Importing this package imports no Kubernetes client.
"""
