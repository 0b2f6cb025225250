{{- /*
What `poolserve deploy` checks on the cluster before applying anything (targets/cluster/preflight.py), as far as
a chart can see the cluster:

- the kinds the objects need besides KServe's (KEDA's ScaledObject for queue autoscaling, the Prometheus
  operator's PodMonitor, OpenShift's Template): from .Capabilities, which lists the cluster's APIs on
  `helm install/upgrade` and under Argo CD (it passes them with --api-versions). Checked only when
  KServe's own API is among them: `helm template` alone knows no cluster and checks nothing.
- the cache PVC exists, is not Lost and fits the pods that mount it; each pvc:// storage_uri's claim exists: with `lookup`, which reads the cluster on install, upgrade and
  --dry-run=server, and returns nothing to `helm template` and Argo CD (then nothing is checked).

Each failure is poolserve's message, with its hint in parentheses.
*/ -}}
{{- define "poolserve.preflight" -}}
{{- $root := .root -}}{{- $r := .resolved -}}
{{- $apis := $root.Capabilities.APIVersions -}}
{{- if $apis.Has "serving.kserve.io/v1beta1/InferenceService" -}}
  {{- $queue := list -}}
  {{- range $r.models }}{{ if and .autoscaling (eq .autoscaling.metric "queue") }}{{ $queue = append $queue .name }}{{ end }}{{ end -}}
  {{- if and $queue (not ($apis.Has "keda.sh/v1alpha1/ScaledObject")) -}}
    {{- fail (printf "the API server has no ScaledObject (keda.sh/v1alpha1) resource (autoscaling on the queue (%s) needs KEDA: install the Custom Metrics Autoscaler operator and its KedaController (OpenShift), or use metric: cpu)" (join ", " $queue)) -}}
  {{- end -}}
  {{- if and $r.spec.monitoring.enabled (not ($apis.Has "monitoring.coreos.com/v1/PodMonitor")) -}}
    {{- fail "the API server has no PodMonitor (monitoring.coreos.com/v1) resource (monitoring.enabled needs the Prometheus operator's PodMonitor kind (OpenShift: enable user-workload monitoring), or set monitoring.enabled: false)" -}}
  {{- end -}}
  {{- if and $r.spec.dashboard.templates (not ($apis.Has "template.openshift.io/v1/Template")) -}}
    {{- fail "the API server has no Template (template.openshift.io/v1) resource: dashboard Templates need OpenShift (set dashboard.templates: false on a cluster without OpenShift AI)" -}}
  {{- end -}}
{{- end -}}
{{- if lookup "v1" "Namespace" "" $r.spec.namespace -}}
  {{- /* check_pvc: the cache PVC exists, is not Lost, and is not ReadWriteOncePod under several pods. */ -}}
  {{- $ns := $r.spec.namespace -}}{{- $name := $r.spec.cache.pvc -}}
  {{- $pvc := lookup "v1" "PersistentVolumeClaim" $ns $name -}}
  {{- if not $pvc -}}
    {{- fail (printf "PersistentVolumeClaim %s/%s (cache.pvc) does not exist (create it (ReadWriteMany, large enough for the models) or set cache.pvc)" $ns $name) -}}
  {{- end -}}
  {{- if eq (dig "status" "phase" "" $pvc) "Lost" -}}
    {{- fail (printf "PersistentVolumeClaim %s/%s is Lost (its volume is gone) (recreate the PVC; the cached models must be downloaded again)" $ns $name) -}}
  {{- end -}}
  {{- $modes := dig "status" "accessModes" list $pvc | default (dig "spec" "accessModes" list $pvc) -}}
  {{- $pods := 0 -}}
  {{- range $r.models }}{{ $pods = add $pods (.max_replicas | int) }}{{ end -}}
  {{- if and (not (has "ReadWriteMany" $modes)) (not (has "ReadOnlyMany" $modes)) (has "ReadWriteOncePod" $modes) (gt $pods 1) -}}
    {{- fail (printf "PersistentVolumeClaim %s/%s is ReadWriteOncePod but up to %d pods mount it (max_replicas of all the config's models) (use a ReadWriteMany PVC (or one PVC per model))" $ns $name $pods) -}}
  {{- end -}}
  {{- /* check_storage_claims: each pvc:// storage_uri's claim exists. */ -}}
  {{- range $m := $r.models -}}
    {{- if and $m.storage_uri (eq $m.storage_uri.scheme "pvc") (not (lookup "v1" "PersistentVolumeClaim" $m.namespace $m.storage_uri.location)) -}}
      {{- fail (printf "PersistentVolumeClaim %s/%s (%s's storage_uri) does not exist (create it and copy the model in, or fix storage_uri)" $m.namespace $m.storage_uri.location $m.name) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- end }}
