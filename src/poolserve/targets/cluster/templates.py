"""The dashboard's Templates on the cluster: warnings when a runtime's Template is missing, and their deletion.

A ServingRuntime names its dashboard Template (``opendatahub.io/template-name``); the dashboard finds the
Template in its own namespace or, for project-scoped ones, in the project
(:func:`poolserve.kserve.dashboard.template_warning` judges what it would find). ``status`` warns when
it would find none; ``delete --runtimes`` deletes the Templates poolserve applied once no runtime
names them any more.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from poolserve.errors import Forbidden, NotFound
from poolserve.kserve.dashboard import matches, template_name_of, template_warning
from poolserve.kserve.names import SR_API_VERSION, SR_KIND, TEMPLATE_API_VERSION, TEMPLATE_KIND, Manifest
from poolserve.kserve.objects import template_namespace, template_scope
from poolserve.kserve.render import Rendered
from poolserve.targets.base import ObjectChange
from poolserve.targets.cluster.base import Cluster
from poolserve.targets.cluster.objects import applied_fields, dig


def template_warnings(cluster: Cluster, rendered: Rendered, used: Collection[str],
                      runtimes: Mapping[str, Manifest]) -> dict[str, str]:
    """Runtime name -> the "Template removed" warning, for the used runtimes that name a Template.

    Lists the Templates of the dashboard namespace and of the project once each, and only when some
    runtime names one. No Template API (not OpenShift): no dashboard, no warning.

    Args:
        cluster: where the Templates are listed.
        rendered: the render (its config names the dashboard and project namespaces).
        used: names of the runtimes the models in question use.
        runtimes: the live ServingRuntimes of the project by name.
    """
    spec = rendered.spec
    named = {n: sr for n, sr in runtimes.items() if n in used and template_name_of(sr)}
    if not named:
        return {}
    dash_ns = spec.dashboard.templates_namespace
    listed = True
    try:
        dash = cluster.list(TEMPLATE_API_VERSION, TEMPLATE_KIND, dash_ns)
    except NotFound:
        return {}
    except Forbidden:
        dash, listed = [], False
    try:
        project = dash if dash_ns == spec.namespace else cluster.list(
            TEMPLATE_API_VERSION, TEMPLATE_KIND, spec.namespace)
    except Forbidden:
        project = []
    out: dict[str, str] = {}
    for name, sr in named.items():
        warning = template_warning(spec, sr, dashboard_templates=dash, project_templates=project,
                                   dashboard_listed=listed)
        if warning is not None:
            out[name] = warning
    return out


def delete_templates(cluster: Cluster, rendered: Rendered, gone: Collection[str]) -> list[ObjectChange]:
    """Delete the rendered Templates of the runtimes ``gone`` (just deleted or absent), unless still named.

    Args:
        cluster: where to delete.
        rendered: the render (its Templates and runtimes).
        gone: names of the project's ServingRuntimes that no longer exist.
    """
    patterns = {r.pattern for r in rendered.runtimes if r.name in gone}
    return [_delete_template(cluster, rendered, template, gone) for template in rendered.templates
            if template["objects"][0]["metadata"]["name"] in patterns]


def _delete_template(cluster: Cluster, rendered: Rendered, template: Manifest, gone: Collection[str]) -> ObjectChange:
    """Delete a dashboard Template poolserve applied, unless a ServingRuntime still names it.

    A runtime names it when its ``opendatahub.io/template-name`` is the Template's
    ``metadata.name`` or ``objects[0].metadata.name`` (the dashboard's match). A global Template
    may be named from any project, so the runtimes of every namespace are read; when the user
    may not list them, it is kept.
    """
    spec = rendered.spec
    name = template["metadata"]["name"]
    tns = template_namespace(spec)
    scope_ns = spec.namespace if template_scope(spec) == "project" else None
    try:
        runtimes = cluster.list(SR_API_VERSION, SR_KIND, scope_ns)
    except Forbidden:
        return ObjectChange(TEMPLATE_KIND, name, tns, "kept", note="you may not list ServingRuntimes in all "
                            "namespaces, so runtimes of other projects may still name it")
    users = sorted(f"{dig(sr, 'metadata', 'namespace')}/{sr['metadata']['name']}" for sr in runtimes
                   if matches(template, template_name_of(sr) or "")
                   and not dig(sr, "metadata", "deletionTimestamp")
                   and not (dig(sr, "metadata", "namespace") == spec.namespace and sr["metadata"]["name"] in gone))
    if users:
        return ObjectChange(TEMPLATE_KIND, name, tns, "kept", note=f"named by {', '.join(users)}")
    live = cluster.get(TEMPLATE_API_VERSION, TEMPLATE_KIND, name, tns)
    if live is None:
        return ObjectChange(TEMPLATE_KIND, name, tns, "absent")
    if applied_fields(live) is None:
        return ObjectChange(TEMPLATE_KIND, name, tns, "kept", note="not applied by poolserve")
    try:
        existed = cluster.delete(TEMPLATE_API_VERSION, TEMPLATE_KIND, name, tns)
    except Forbidden:
        return ObjectChange(TEMPLATE_KIND, name, tns, "kept", note=f"you may not delete Templates in {tns}: "
                            f"an admin can (`oc delete template {name} -n {tns}`)")
    return ObjectChange(TEMPLATE_KIND, name, tns, "deleted" if existed else "absent")
