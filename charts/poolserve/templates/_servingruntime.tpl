{{- /* poolserve.servingRuntime: kserve.serving_runtime, vLLM's OpenAI server on port 8080 with the shared cache PVC.
Args: root (the chart's context), spec, rt (a resolved runtime), embedded: true for the copy inside a
dashboard Template (no namespace, the pattern's name, no annotations that point at a Template). */ -}}
{{- define "poolserve.servingRuntime" -}}
{{- $spec := .spec -}}{{- $rt := .rt -}}
{{- $port := 8080 -}}
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata:
  {{- if .embedded }}
  name: {{ $rt.pattern }}
  {{- else }}
  name: {{ $rt.name }}
  namespace: {{ $spec.namespace }}
  {{- end }}
  labels:
    {{- if .embedded }}
    {{- /* poolserve's labels, as render writes them, never Helm's: the dashboard copies a Template runtime's labels
    into each runtime it creates from it (odh-dashboard assembleServingRuntime), and no release owns those. */}}
    {{- .constants.runtime_labels | toYaml | nindent 4 }}
    {{- else }}
    {{- include "poolserve.labels" .root | nindent 4 }}
    {{- end }}
  annotations:
    openshift.io/display-name: {{ $rt.display_name | quote }}
    {{- if not .embedded }}
    {{- /* What the dashboard's "Serving runtime" column shows; without it: "Unknown Serving Runtime". */}}
    opendatahub.io/template-display-name: {{ $rt.display_name | quote }}
    {{- end }}
    opendatahub.io/apiProtocol: REST
    opendatahub.io/runtime-version: {{ printf "v%s" (join "." $rt.vllm_version) | quote }}
    {{- if and $spec.dashboard.templates (not .embedded) }}
    {{- /* Only with a Template behind it: a dangling template-name shows "Template removed" in 3.x. */}}
    opendatahub.io/template-name: {{ $rt.pattern | quote }}
    # global: the Template is in the dashboard's namespace; project: in this one.
    opendatahub.io/serving-runtime-scope: {{ $spec.dashboard.template_scope }}
    {{- end }}
    {{- with $rt.accelerator }}
    opendatahub.io/recommended-accelerators: {{ list . | toJson | quote }}
    {{- end }}
    {{- if and $rt.hardware_profile (not .embedded) }}
    {{- /* The profile every model on the runtime uses: the 2.x dashboard reads it here (3.x on the InferenceService);
    a Template offers the runtime for any deployment, so its copy has none. */}}
    opendatahub.io/hardware-profile-name: {{ index $rt.hardware_profile 0 | quote }}
    opendatahub.io/hardware-profile-namespace: {{ index $rt.hardware_profile 1 | quote }}
    {{- end }}
spec:
  {{- with $rt.node_selector }}
  # KServe merges it into every model's pod (a model's own node_selector keys win).
  nodeSelector: {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $rt.tolerations }}
  tolerations: {{- include "poolserve.tolerations" . | nindent 4 }}
  {{- end }}
  # spec.annotations reach the pods: metrics scraping and the dashboard's vLLM metrics page.
  annotations:
    opendatahub.io/kserve-runtime: vllm
    prometheus.io/port: {{ $port | quote }}
    prometheus.io/path: /metrics
  multiModel: false
  # Every InferenceService names its runtime: no auto-selection, so two runtimes never clash in the webhook.
  supportedModelFormats:
    - name: {{ $rt.model_format | quote }}
      autoSelect: false
  containers:
    - name: kserve-container
      image: {{ $rt.image | quote }}
      command: {{- toYaml $rt.command | nindent 8 }}
      args: {{- toYaml $rt.args | nindent 8 }}
      env: {{- include "poolserve.runtimeEnv" (dict "spec" $spec "runtime" $rt) | nindent 8 }}
      ports:
        - containerPort: {{ $port }}
          name: http
          protocol: TCP
      # Model loads (and first downloads) are slow: by default the startup probe allows 30 minutes
      # (runtimes[].probes changes any of them).
      {{- range $kind := list "startup" "readiness" "liveness" }}
      {{ $kind }}Probe: {{- include "poolserve.probe" (dict "config" (get $rt.probes $kind) "defaults" (get $.constants.probe_defaults $kind) "port" $port) | nindent 8 }}
      {{- end }}
      # KServe copies the termination message into modelStatus.lastFailureInfo: vLLM's last log lines.
      terminationMessagePolicy: FallbackToLogsOnError
      securityContext:
        allowPrivilegeEscalation: false
        capabilities:
          drop: [ALL]
      volumeMounts: {{- include "poolserve.runtimeMounts" $spec | fromJsonArray | toYaml | nindent 8 }}
  volumes:
    - name: model-cache
      persistentVolumeClaim:
        claimName: {{ $spec.cache.pvc | quote }}
    - name: tmp-home
      emptyDir: {}
    - name: tmp-cache
      emptyDir: {}
    - name: shm
      emptyDir:
        medium: Memory
        sizeLimit: 2Gi
{{- end }}

{{- /* poolserve.runtimeMounts: the runtime container's volume mounts, as JSON (lint checks them against KServe's). */ -}}
{{- define "poolserve.runtimeMounts" -}}
{{- toJson (list
  (dict "name" "model-cache" "mountPath" .cache.mount_path)
  (dict "name" "tmp-home" "mountPath" "/tmp/home")
  (dict "name" "tmp-cache" "mountPath" "/tmp/cache")
  (dict "name" "shm" "mountPath" "/dev/shm")
) -}}
{{- end }}

{{- /* poolserve.probe: kserve._probe, an HTTP probe of /health: the runtime's probes: settings, else poolserve's
defaults ([period, timeout, failures]); initialDelaySeconds only when set (and not 0). */ -}}
{{- define "poolserve.probe" -}}
{{- $cfg := .config | default dict -}}
httpGet: {path: /health, port: {{ .port }}, scheme: HTTP}
periodSeconds: {{ $cfg.period_s | default (index .defaults 0) | int64 }}
timeoutSeconds: {{ $cfg.timeout_s | default (index .defaults 1) | int64 }}
failureThreshold: {{ $cfg.failure_threshold | default (index .defaults 2) | int64 }}
{{- with $cfg.initial_delay_s }}
initialDelaySeconds: {{ . | int64 }}
{{- end }}
{{- end }}
