"""OpenShift's ``template.openshift.io/v1`` Template API on the envtest API server.

On OpenShift, Templates are a built-in API served by openshift-apiserver, not a
CustomResourceDefinition; a plain kube-apiserver serves no OpenShift group at all. The CRD below
stands in for that built-in API so the dashboard Templates poolserve applies reach a real API server
(server-side apply, RBAC, 404 for a missing one). It was written for these tests from the Template
API's documented fields (``objects``, ``parameters``, ``labels``, ``message``); it is not a copy of any
upstream file, and it models only what poolserve relies on: ``objects`` is a required list of whole
objects kept as sent.
"""

from __future__ import annotations

from typing import Any

from support.kubeapi import Api, ApiError

NAME = "templates.template.openshift.io"

TEMPLATE_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": NAME,
                 "annotations": {"poolserve.test/stands-in-for": "OpenShift's built-in template.openshift.io/v1 API"}},
    "spec": {
        "group": "template.openshift.io",
        "names": {"kind": "Template", "listKind": "TemplateList", "plural": "templates", "singular": "template"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "required": ["objects"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    "message": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "objects": {"type": "array", "items": {"type": "object",
                                                            "x-kubernetes-preserve-unknown-fields": True}},
                    "parameters": {"type": "array", "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "displayName": {"type": "string"},
                            "description": {"type": "string"},
                            "value": {"type": "string"},
                            "generate": {"type": "string"},
                            "from": {"type": "string"},
                            "required": {"type": "boolean"},
                        },
                    }},
                },
            }},
        }],
    },
}


def install(api: Api) -> None:
    """Create the Template CRD (an existing one is kept)."""
    try:
        api.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", TEMPLATE_CRD)
    except ApiError as err:
        if err.status != 409:
            raise


def served(api: Api) -> bool:
    """The CRD is Established and ``template.openshift.io/v1`` is in discovery."""
    crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{NAME}") or {}
    conds = (crd.get("status") or {}).get("conditions") or []
    if not any(c.get("type") == "Established" and c.get("status") == "True" for c in conds):
        return False
    return bool((api.get("/apis/template.openshift.io/v1") or {}).get("resources"))
