"""Which Template the OpenShift AI dashboard finds for a ServingRuntime, and the warning when none (pure).

A runtime with ``opendatahub.io/template-name`` is linked to a Template: the dashboard compares
their ``opendatahub.io/runtime-version`` ("Latest"/"Outdated") and, from OpenShift AI 3.5 on, labels
the deployment **"Template removed"** when it finds no Template. How it looks (odh-dashboard; the
versions and files are in docs/explanation/lessons/openshift-ai.md#template-removed-openshift-ai-3-5):

- the dashboard namespace: ``findTemplateByName`` over its Templates, matching the Template's
  ``objects[0].metadata.name`` or (3.4+) its ``metadata.name``. 3.5 lists only Templates labelled
  ``opendatahub.io/dashboard: "true"``; 3.6 lists them all, so the label is required here (the
  stricter rule);
- then (3.6+, odh-dashboard#9322) the runtime's own namespace: a GET of the Template *named*
  template-name, so there only ``metadata.name`` counts. 3.5 never looks in the project.
"""

from __future__ import annotations

from collections.abc import Sequence

from poolserve.config.schema import PoolSpec
from poolserve.kserve.names import DASHBOARD_LABEL, TEMPLATE_NAME, Manifest
from poolserve.kserve.objects import template_scope

TEMPLATES_PATH = "manifests/kserve/dashboard-templates.yaml"
"""Where ``poolserve render`` writes the Templates (the file an admin applies)."""


def template_name_of(sr: Manifest) -> str | None:
    """The ServingRuntime's ``opendatahub.io/template-name``, if any."""
    value = ((sr.get("metadata") or {}).get("annotations") or {}).get(TEMPLATE_NAME)
    return str(value) if value else None


def _objects0_name(template: Manifest) -> str | None:
    objects = template.get("objects") or []
    if not objects or not isinstance(objects[0], dict):
        return None
    name = (objects[0].get("metadata") or {}).get("name")
    return str(name) if name else None


def matches(template: Manifest, name: str) -> bool:
    """``findTemplateByName``: the Template's ``objects[0].metadata.name`` or its own ``metadata.name`` is ``name``."""
    return name in (_objects0_name(template), (template.get("metadata") or {}).get("name"))


def _labelled(template: Manifest) -> bool:
    return ((template.get("metadata") or {}).get("labels") or {}).get(DASHBOARD_LABEL) == "true"


def find_template(name: str, dashboard_templates: Sequence[Manifest],
                  project_templates: Sequence[Manifest]) -> Manifest | None:
    """The Template the dashboard finds for template-name ``name``: see the module docstring."""
    for t in dashboard_templates:
        if _labelled(t) and matches(t, name):
            return t
    for t in project_templates:
        if (t.get("metadata") or {}).get("name") == name:
            return t
    return None


def template_warning(spec: PoolSpec, sr: Manifest, *, dashboard_templates: Sequence[Manifest],
                     project_templates: Sequence[Manifest], dashboard_listed: bool = True) -> str | None:
    """One line when the dashboard would label ``sr``'s deployments "Template removed", else None.

    Args:
        spec: the config (its dashboard namespace and whether it renders Templates: the fix differs).
        sr: the live ServingRuntime.
        dashboard_templates: the Templates in ``spec.dashboard.templates_namespace``.
        project_templates: the Templates in the runtime's own namespace.
        dashboard_listed: False when the dashboard namespace's Templates could not be listed (forbidden).
    """
    name = template_name_of(sr)
    if name is None or find_template(name, dashboard_templates, project_templates) is not None:
        return None
    meta = sr.get("metadata") or {}
    dash_ns, ns = spec.dashboard.templates_namespace, meta.get("namespace", spec.namespace)
    unlabelled = next((t for t in dashboard_templates if matches(t, name)), None)
    if unlabelled is not None:
        where = (f"Template {dash_ns}/{unlabelled['metadata']['name']} lacks the label {DASHBOARD_LABEL}=true, "
                 "so OpenShift AI 3.5 does not see it and labels the model 'Template removed'")
    else:
        where = (f"no Template in {dash_ns} or {ns} has that name: OpenShift AI 3.5+ labels the model "
                 "'Template removed'")
    if not spec.dashboard.templates:
        fix = "`poolserve deploy --runtimes-only` drops the template-name (dashboard.templates is off)"
    elif template_scope(spec) == "project":
        fix = "`poolserve deploy --runtimes-only` applies it"
    else:
        fix = (f"an admin applies it with `oc apply -f {TEMPLATES_PATH}` (or deploy with "
               "dashboard.templates_scope: project)")
    unlisted = "" if dashboard_listed else f" (the Templates in {dash_ns} could not be listed: forbidden)"
    return f"runtime {meta.get('name')} names Template {name!r} (opendatahub.io/template-name) but {where}; {fix}" \
           + unlisted
