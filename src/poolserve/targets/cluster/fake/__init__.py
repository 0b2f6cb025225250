"""FakeCluster: an in-memory Kubernetes API with a simulated KServe, for tests (kept honest by a contract suite)."""
