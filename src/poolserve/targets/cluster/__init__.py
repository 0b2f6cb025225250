"""Cluster access for the ``cluster`` target.

- :mod:`poolserve.targets.cluster.base`: the narrow :class:`~poolserve.targets.cluster.base.Cluster` protocol and the
  shared error messages every implementation raises; :mod:`~poolserve.targets.cluster.objects` reads and compares
  the unstructured objects it returns (pure).
- :mod:`poolserve.targets.cluster.kube`: :class:`~poolserve.targets.cluster.kube.KubeCluster`, the official
  ``kubernetes`` client (optional extra ``cluster``), built lazily.
- :mod:`poolserve.targets.cluster.fake.cluster`: :class:`~poolserve.targets.cluster.fake.cluster.FakeCluster`,
  in memory, for tests (its server-side apply in :mod:`~poolserve.targets.cluster.fake.fields`);
  :mod:`~poolserve.targets.cluster.fake.objects` builds realistic objects to seed it (or a real API server),
  :mod:`~poolserve.targets.cluster.fake.kserve` plays KServe on it.
- :mod:`poolserve.targets.cluster.target`: :class:`~poolserve.targets.cluster.target.ClusterTarget`, deploy/status/wait/
  logs/delete/diff on top of a ``Cluster``; beside it :mod:`~poolserve.targets.cluster.preflight` (checks before
  deploy), :mod:`~poolserve.targets.cluster.apply` (selecting, applying and diffing the rendered objects),
  :mod:`~poolserve.targets.cluster.helm` (objects Helm manages), :mod:`~poolserve.targets.cluster.templates`
  (the dashboard's Templates), :mod:`~poolserve.targets.cluster.readiness` (pure: live objects -> ModelStatus,
  from the evidence of :mod:`~poolserve.targets.cluster.findings` and :mod:`~poolserve.targets.cluster.pods`) and
  :mod:`~poolserve.targets.cluster.cachejob` (``cache warm``).

Importing this package imports no Kubernetes client.
"""
