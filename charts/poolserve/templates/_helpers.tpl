{{- /*
Names, labels and formatting shared by the templates. The objects and their rules mirror
src/poolserve/kserve/compose.py; the config's resolution is in _config.tpl.
*/ -}}

{{- define "poolserve.name" -}}
{{- .Chart.Name -}}
{{- end }}

{{- define "poolserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{- /* poolserve.helmLabels: Helm's standard labels. app.kubernetes.io/managed-by says Helm, where a poolserve
deploy says poolserve: `poolserve deploy` and `delete` leave objects with this label alone. */ -}}
{{- define "poolserve.helmLabels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/name: {{ include "poolserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ include "poolserve.chart" . }}
{{- end }}

{{- /* poolserve.labels: the labels of the ServingRuntimes, InferenceServices and auth objects: the OpenShift AI
dashboard's (the 2.x dashboard lists only objects carrying it) and Helm's. */ -}}
{{- define "poolserve.labels" -}}
opendatahub.io/dashboard: "true"
{{ include "poolserve.helmLabels" . }}
{{- end }}

{{- /* poolserve.quantity: a resource quantity as render writes it: strings as they are, whole numbers as integers
(Helm reads 2 and 2.0 alike, as floats), other numbers in Python's shortest form. */ -}}
{{- define "poolserve.quantity" -}}
{{- if kindIs "string" . -}}
{{- . -}}
{{- else if eq (floor .) (float64 .) -}}
{{- . | int64 -}}
{{- else -}}
{{- toString . -}}
{{- end -}}
{{- end }}

{{- /* poolserve.resources: kserve.model_resources, the model's requests and limits with gpus as the runtime's
accelerator (default nvidia.com/gpu) or its MIG slice, as YAML; empty when there are none. */ -}}
{{- define "poolserve.resources" -}}
{{- $requests := dict -}}{{- $limits := dict -}}
{{- range $k, $v := .resources.requests }}{{ $_ := set $requests $k (include "poolserve.quantity" $v) }}{{ end -}}
{{- range $k, $v := .resources.limits }}{{ $_ := set $limits $k (include "poolserve.quantity" $v) }}{{ end -}}
{{- /* Model.gpu_resource and gpu_count: a MIG slice (gpus of them, one when unset), else whole GPUs. */ -}}
{{- if .mig_profile -}}
  {{- $key := printf "nvidia.com/mig-%s" .mig_profile -}}
  {{- $count := ternary (.gpus | int64) 1 (not (empty .gpus)) -}}
  {{- $_ := set $requests $key ($count | toString) -}}
  {{- $_ := set $limits $key ($count | toString) -}}
{{- else if .gpus -}}
  {{- $key := .runtime.accelerator | default "nvidia.com/gpu" -}}
  {{- $_ := set $requests $key (.gpus | int64 | toString) -}}
  {{- $_ := set $limits $key (.gpus | int64 | toString) -}}
{{- end -}}
{{- $out := dict -}}
{{- if $requests }}{{ $_ := set $out "requests" $requests }}{{ end -}}
{{- if $limits }}{{ $_ := set $out "limits" $limits }}{{ end -}}
{{- if $out }}{{ toYaml $out }}{{ end -}}
{{- end }}

{{- /* poolserve.runtimeEnv: kserve.runtime_env, the runtime container's env: writable caches for OpenShift's
arbitrary UIDs, the HF cache, no telemetry; then the runtime's own env, merged by name. */ -}}
{{- define "poolserve.runtimeEnv" -}}
{{- $cache := .spec.cache -}}
{{- $env := list
  (dict "name" "HOME" "value" "/tmp/home")
  (dict "name" "USER" "value" "vllm")
  (dict "name" "XDG_CACHE_HOME" "value" "/tmp/cache")
  (dict "name" "XDG_CONFIG_HOME" "value" "/tmp/home/.config")
  (dict "name" "VLLM_CACHE_ROOT" "value" "/tmp/cache/vllm")
  (dict "name" "VLLM_CONFIG_ROOT" "value" "/tmp/home/.config/vllm")
  (dict "name" "TRITON_CACHE_DIR" "value" "/tmp/cache/triton")
  (dict "name" "TORCHINDUCTOR_CACHE_DIR" "value" "/tmp/cache/torchinductor")
  (dict "name" "HF_HOME" "value" $cache.hf_home)
  (dict "name" "VLLM_NO_USAGE_STATS" "value" "1")
  (dict "name" "DO_NOT_TRACK" "value" "1")
-}}
{{- if $cache.offline }}{{ $env = append $env (dict "name" "HF_HUB_OFFLINE" "value" "1") }}{{ end -}}
{{- with $cache.hf_token_secret -}}
  {{- $env = append $env (dict "name" "HF_TOKEN" "valueFrom" (dict "secretKeyRef" (dict "name" .name "key" .key))) -}}
{{- end -}}
{{- if eq .runtime.device "cpu" -}}
  {{- /* kserve.cpu.cpu_env, generated into the constants. */ -}}
  {{- $c := include "poolserve.constants" . | fromJson -}}
  {{- $env = concat $env (ternary $c.cpu_env_exclusive $c.cpu_env (.runtime.exclusive_cpus | default false)) -}}
{{- end -}}
{{- range $name, $value := .runtime.env -}}
  {{- $replaced := false -}}
  {{- range $env -}}
    {{- if eq .name $name }}{{ $_ := unset . "valueFrom" }}{{ $_ := set . "value" $value }}{{ $replaced = true }}{{ end -}}
  {{- end -}}
  {{- if not $replaced }}{{ $env = append $env (dict "name" $name "value" $value) }}{{ end -}}
{{- end -}}
{{- toYaml $env -}}
{{- end }}

{{- /* poolserve.tolerations: a model's tolerations in Kubernetes' camelCase, only the keys the config sets
(model_dump(exclude_none=True)), as YAML. */ -}}
{{- define "poolserve.tolerations" -}}
{{- $out := list -}}
{{- range $toleration := . -}}
  {{- $t := dict -}}
  {{- range $key, $field := dict "key" "key" "operator" "operator" "value" "value" "effect" "effect" "tolerationSeconds" "toleration_seconds" -}}
    {{- if not (kindIs "invalid" (get $toleration $field)) }}{{ $_ := set $t $key (get $toleration $field) }}{{ end -}}
  {{- end -}}
  {{- $out = append $out $t -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{- /* poolserve.queueQuery: kserve.queue_query, PromQL for the requests in flight (running + waiting) on the model's
predictor pods, deduplicated per pod and engine (two scrapers may scrape the same pods). */ -}}
{{- define "poolserve.queueQuery" -}}
{{- $sel := printf "namespace=\"%s\",pod=~\"%s-predictor-[a-z0-9]+-[a-z0-9]+\"" .namespace .name -}}
{{- printf "sum(max by (pod, engine) (vllm:num_requests_running{%s} + vllm:num_requests_waiting{%s}))" $sel $sel -}}
{{- end }}

{{- /* poolserve.monitoringAnnotations: kserve.monitoring_annotations, the predictor pods' Prometheus annotations.
serving.kserve.io/enable-prometheus-scraping "true" would point prometheus.io/port at queue-proxy, absent in raw mode. */ -}}
{{- define "poolserve.monitoringAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.kserve.io/port: {{ .port | int64 | toString | quote }}
prometheus.kserve.io/path: /metrics
serving.kserve.io/enable-prometheus-scraping: "false"
{{- end }}

{{- /* poolserve.predictorSelector: the labels KServe puts on every predictor pod of the model. */ -}}
{{- define "poolserve.predictorSelector" -}}
matchLabels:
  serving.kserve.io/inferenceservice: {{ .name }}
  component: predictor
{{- end }}

{{- /* poolserve.intOrString: a PodDisruptionBudget's count (a whole number) or percentage ("50%", quoted). */ -}}
{{- define "poolserve.intOrString" -}}
{{- if kindIs "string" . }}{{ . | quote }}{{ else }}{{ . | int64 }}{{ end -}}
{{- end }}
