"""Layer 3, KServe and OpenShift AI objects: config -> ServingRuntimes and InferenceServices, composed as KServe does.

Names, objects and their companions, scaling, the pod KServe composes, dashboard rules, the render
and the offline lint.
Pure: imports :mod:`poolserve.vllm`, :mod:`poolserve.config` and the leaves.
"""
