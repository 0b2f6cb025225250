"""Objects Helm manages: detected on the live object, and left alone unless ``--force``.

A chart installs the same objects poolserve applies (the Helm chart renders the same config). Two tools
must never fight over one object: ``deploy``, ``stop``/``start`` and ``delete`` change nothing when Helm
manages any object they would touch, and name the ``helm`` command to use instead. ``--force`` takes
the objects over (the caller then skips these checks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from poolserve.config.resolve import Model
from poolserve.errors import Conflict
from poolserve.kserve.names import ISVC_KIND, SR_KIND, TEMPLATE_KIND, Manifest
from poolserve.kserve.render import Rendered
from poolserve.targets.cluster.base import Cluster, kind_of, ref
from poolserve.targets.cluster.objects import labels, meta

MANAGED_BY = "app.kubernetes.io/managed-by"
HELM_RELEASE = "meta.helm.sh/release-name"


def helm_managed(live: Manifest | None) -> str | None:
    """How Helm manages a live object (label ``app.kubernetes.io/managed-by: Helm``), else None.

    ``release NAME``, or ``a chart`` for objects Helm rendered but did not install (Argo CD, ``helm template``).
    """
    if labels(live).get(MANAGED_BY) != "Helm":
        return None
    release = (meta(live).get("annotations") or {}).get(HELM_RELEASE)
    return f"release {release}" if release else "a chart"


def refuse_helm_objects(cluster: Cluster, objects: Iterable[Manifest], verb: str, *, advice: str = "") -> None:
    """Change nothing when Helm manages any of ``objects``: two tools must never fight over one object.

    Args:
        cluster: where the live objects are read.
        objects: what the command would change, as rendered.
        verb: the ``helm`` command that changes them instead (``upgrade``, ``uninstall``).
        advice: what to do first, put before the command (ends with "and ").

    Raises:
        Conflict: naming the first such object and the ``helm`` command to use instead.
    """
    owned: list[tuple[str, str, str | None]] = []
    for obj in objects:
        k = kind_of(obj)
        name = obj["metadata"]["name"]
        ns = obj["metadata"].get("namespace") if k.namespaced else None
        how = helm_managed(cluster.get(k.api_version, k.kind, name, ns))
        if how is not None:
            owned.append((ref(k.kind, name, ns), how, ns))
    if owned:
        what, how, ns = owned[0]
        more = f" (and {len(owned) - 1} more)" if len(owned) > 1 else ""
        release = how.removeprefix("release ") if how.startswith("release ") else "RELEASE"
        raise Conflict(f"{what}{more} is managed by Helm ({how}): {advice}use `helm {verb} {release}"
                       f"{f' -n {ns}' if ns else ''}`, or --force to take it over")


def refuse_helm_stop(cluster: Cluster, rendered: Rendered, models: Sequence[Model]) -> None:
    """Flip nothing on InferenceServices Helm manages.

    poolserve would own the stop annotation, and the next ``helm upgrade`` of a model the values
    mark ``stopped`` would fail on the conflict.

    Raises:
        Conflict: naming the first such InferenceService, the ``stopped`` key and the helm command.
    """
    wanted = {m.name for m in models}
    refuse_helm_objects(cluster, [isvc for _, isvc in rendered.objects_by_model.values()
                                  if isvc["metadata"]["name"] in wanted], "upgrade",
                        advice="set models[].stopped in the values and ")


def refuse_helm_delete(cluster: Cluster, rendered: Rendered, models: Sequence[Model], *, all_models: bool,
                       runtimes: bool) -> None:
    """Delete nothing when Helm manages an object the delete would remove.

    That is the InferenceServices and what goes with them (auth objects, budget, PodMonitor), and with
    ``runtimes`` their runtimes (every rendered one for ``all_models``) and those runtimes' Templates.

    Raises:
        Conflict: naming the first such object and ``helm uninstall``.
    """
    doomed = {(ISVC_KIND, m.name) for m in models}
    doomed |= {(o["kind"], o["metadata"]["name"]) for m in models for o in rendered.companions.get(m.name, ())}
    if runtimes:
        chosen = rendered.runtimes if all_models else [m.runtime for m in models]
        doomed |= {(SR_KIND, r.name) for r in chosen}
        doomed |= {(TEMPLATE_KIND, t["metadata"]["name"]) for t in rendered.templates
                   if t["objects"][0]["metadata"]["name"] in {r.pattern for r in chosen}}
    refuse_helm_objects(cluster, [o for o in rendered.manifests if (o["kind"], o["metadata"]["name"]) in doomed],
                        "uninstall")
