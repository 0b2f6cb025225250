{{- /*
The config, as poolserve reads it (src/poolserve/config/): defaults filled in, checked (values.schema.json,
then _validate.tpl), and resolved model by model with one precedence: built-in defaults < catalog <
defaults: < the model's own keys.

Helpers return JSON text (a template can only return a string); callers read it back with fromJson.
Every template calls "poolserve.resolved" once, so a bad config fails every template the same way.
*/ -}}

{{- /* poolserve.fill: a value with each absent key of its config class set to the default, recursively
(spec.py's pydantic defaults, from _generated.tpl). Keys set to null stay null: inside lists they are
kept; in maps Helm has already dropped them, and then the default applies, as if the key were absent. */ -}}
{{- define "poolserve.fill" -}}
{{- $shape := .shape -}}
{{- $out := dict -}}
{{- range $k, $v := .value }}{{ $_ := set $out $k $v }}{{ end -}}
{{- range $key, $field := get $shape .class -}}
  {{- if and (not (hasKey $out $key)) (hasKey $field "default") -}}
    {{- $_ := set $out $key $field.default -}}
  {{- end -}}
  {{- $v := get $out $key -}}
  {{- if and $field.class (kindIs "map" $v) -}}
    {{- $_ := set $out $key (include "poolserve.fill" (dict "shape" $shape "class" $field.class "value" $v) | fromJson) -}}
  {{- else if and $field.items (kindIs "slice" $v) -}}
    {{- $items := list -}}
    {{- range $v -}}
      {{- $items = append $items (include "poolserve.fill" (dict "shape" $shape "class" $field.items "value" .) | fromJson) -}}
    {{- end -}}
    {{- $_ := set $out $key $items -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{- /* poolserve.first: spec._first, the first argument that is not null, as {"v": value} ({} if none). */ -}}
{{- define "poolserve.first" -}}
{{- $found := dict -}}
{{- range . -}}
  {{- if and (not (hasKey $found "v")) (not (kindIs "invalid" .)) }}{{ $_ := set $found "v" . }}{{ end -}}
{{- end -}}
{{- toJson $found -}}
{{- end }}

{{- /* poolserve.parseVersion: spec.parse_version ("0.32.0", "v0.9.2", "0.10") as {"v": [major, minor, patch]},
or {} when the text is no version. */ -}}
{{- define "poolserve.parseVersion" -}}
{{- $t := trim (toString .) -}}
{{- if regexMatch "^v?[0-9]+\\.[0-9]+(\\.[0-9]+)?$" $t -}}
  {{- $p := splitList "." (trimPrefix "v" $t) -}}
  {{- toJson (dict "v" (list (atoi (index $p 0)) (atoi (index $p 1)) (atoi (ternary (index $p 2) "0" (eq (len $p) 3))))) -}}
{{- else -}}
{{- "{}" -}}
{{- end -}}
{{- end }}

{{- /* poolserve.imageVersion: spec.image_version, the vLLM version an image's tag names
(vllm/vllm-openai:v0.32.0 -> [0, 32, 0]) as {"v": ...}; {} for a digest or a tag without one. */ -}}
{{- define "poolserve.imageVersion" -}}
{{- $image := toString . -}}
{{- $tag := last (splitList ":" $image) -}}
{{- if and (not (contains "@" $image)) $tag (not (contains "/" $tag)) (regexMatch "^v?[0-9]+\\.[0-9]+\\.[0-9]+" $tag) -}}
  {{- $p := regexFind "[0-9]+\\.[0-9]+\\.[0-9]+" $tag | splitList "." -}}
  {{- toJson (dict "v" (list (atoi (index $p 0)) (atoi (index $p 1)) (atoi (index $p 2)))) -}}
{{- else -}}
{{- "{}" -}}
{{- end -}}
{{- end }}

{{- /* poolserve.versionKey: a version as a string that sorts like the version ([0, 9, 2] -> "000000.000009.000002"),
so versions compare with lt/ge. */ -}}
{{- define "poolserve.versionKey" -}}
{{- printf "%06d.%06d.%06d" (index . 0 | int) (index . 1 | int) (index . 2 | int) -}}
{{- end }}

{{- /* poolserve.repr: a string as Python's repr writes it in poolserve's messages ('name'). */ -}}
{{- define "poolserve.repr" -}}
{{- $s := toString . | replace "\\" "\\\\" -}}
{{- if and (contains "'" $s) (not (contains "\"" $s)) }}"{{ $s }}"{{ else }}'{{ $s | replace "'" "\\'" }}'{{ end -}}
{{- end }}

{{- /* poolserve.runtimeVersion: spec.runtime_version: the runtime's vllm_version, else its own image's tag, else the
top-level vllm_version, else the top-level image's tag ({"v": [...]} or {}). */ -}}
{{- define "poolserve.runtimeVersion" -}}
{{- $spec := .spec -}}{{- $rt := .rt -}}
{{- if not (kindIs "invalid" $rt.vllm_version) -}}{{ include "poolserve.parseVersion" $rt.vllm_version }}
{{- else if not (kindIs "invalid" $rt.image) -}}{{ include "poolserve.imageVersion" $rt.image }}
{{- else if not (kindIs "invalid" $spec.vllm_version) -}}{{ include "poolserve.parseVersion" $spec.vllm_version }}
{{- else -}}{{ include "poolserve.imageVersion" $spec.image }}
{{- end -}}
{{- end }}

{{- /* poolserve.config: the values as a complete poolserve config. The namespace follows Helm's convention: the
release namespace (helm install --namespace); a namespace: in the values must be the same. */ -}}
{{- define "poolserve.config" -}}
{{- $shape := include "poolserve.shape" . | fromJson -}}
{{- $spec := include "poolserve.fill" (dict "shape" $shape "class" "PoolSpec" "value" .Values) | fromJson -}}
{{- if and (hasKey .Values "namespace") (ne (toString .Values.namespace) .Release.Namespace) -}}
  {{- fail (printf "namespace: the config says %s but the release namespace is %s: install with --namespace %s (or leave namespace: out of the values)" (include "poolserve.repr" .Values.namespace) (include "poolserve.repr" .Release.Namespace) (toString .Values.namespace)) -}}
{{- end -}}
{{- $_ := set $spec "namespace" .Release.Namespace -}}
{{- /* The keys each model and autoscaling block sets itself, even to null (pydantic's model_fields_set): a model's
null opts out of defaults: (spec._own_or_default). Helm keeps nulls inside lists and in maps values.yaml lacks. */ -}}
{{- range $i, $raw := .Values.models -}}
  {{- $m := index $spec.models $i -}}
  {{- $_ := set $m "__set" (keys $raw) -}}
  {{- if kindIs "map" $raw.autoscaling }}{{ $_ := set $m.autoscaling "__set" (keys $raw.autoscaling) }}{{ end -}}
{{- end -}}
{{- /* A runtime's device decides the defaults of the settings it does not set (RuntimeConfig.setting). */ -}}
{{- range $i, $raw := .Values.runtimes -}}
  {{- $_ := set (index $spec.runtimes $i) "__set" (keys $raw) -}}
{{- end -}}
{{- with .Values.defaults -}}
  {{- if kindIs "map" .autoscaling }}{{ $_ := set $spec.defaults.autoscaling "__set" (keys .autoscaling) }}{{ end -}}
{{- end -}}
{{- /* hardware_profile: NAME is short for {name: NAME} (spec._profile_ref). */ -}}
{{- range concat (list $spec.defaults) $spec.models -}}
  {{- if kindIs "string" .hardware_profile }}{{ $_ := set . "hardware_profile" (dict "name" .hardware_profile "namespace" nil) }}{{ end -}}
{{- end -}}
{{- /* Task spellings (embedding, rerank, ...) as pydantic normalises them. */ -}}
{{- $aliases := (include "poolserve.constants" . | fromJson).task_aliases -}}
{{- range $spec.runtimes }}{{ $_ := set . "task" (get $aliases .task) }}{{ end -}}
{{- range $spec.models }}{{ if .task }}{{ $_ := set . "task" (get $aliases .task) }}{{ end }}{{ end -}}
{{- toJson $spec -}}
{{- end }}

{{- /* poolserve.ownOrDefault: spec._own_or_default: the model's value when it sets the key, even to null (which opts
out of defaults:), else the default; as {"v": value}. */ -}}
{{- define "poolserve.ownOrDefault" -}}
{{- if has .key (.m.__set | default list) -}}
{{- toJson (dict "v" (get .m .key)) -}}
{{- else -}}
{{- toJson (dict "v" (get .d .key)) -}}
{{- end -}}
{{- end }}

{{- /* poolserve.storageURI: storage.parse, a storage_uri as {uri, scheme, location, path} (the schema has checked it:
pvc://CLAIM/PATH, hf://OWNER/MODEL[:REVISION], s3://BUCKET/PATH, oci://IMAGE). */ -}}
{{- define "poolserve.storageURI" -}}
{{- $uri := toString . -}}
{{- $parts := splitn "://" 2 $uri -}}
{{- $scheme := $parts._0 -}}{{- $rest := $parts._1 -}}
{{- $p := splitn "/" 2 $rest -}}
{{- if eq $scheme "hf" -}}
  {{- $mr := splitn ":" 2 $p._1 -}}
  {{- toJson (dict "uri" $uri "scheme" "hf" "location" (printf "%s/%s" $p._0 $mr._0) "path" ($mr._1 | default "")) -}}
{{- else if eq $scheme "oci" -}}
  {{- toJson (dict "uri" $uri "scheme" "oci" "location" $rest "path" "") -}}
{{- else -}}
  {{- toJson (dict "uri" $uri "scheme" $scheme "location" $p._0 "path" (trimAll "/" ($p._1 | default ""))) -}}
{{- end -}}
{{- end }}

{{- /* poolserve.runtime: spec._resolve_runtime, a runtime with everything resolved (name: the model's in per-model
mode), and its container args (vllm.runtime_args). */ -}}
{{- define "poolserve.runtime" -}}
{{- $spec := .spec -}}{{- $rt := .rt -}}{{- $c := .constants -}}
{{- $version := (include "poolserve.runtimeVersion" (dict "spec" $spec "rt" $rt) | fromJson).v -}}
{{- $cpu := eq $rt.device "cpu" -}}
{{- /* RuntimeConfig.setting: the config's value when the runtime sets the key (even to null), else its device's. */ -}}
{{- $settings := dict -}}
{{- range $key, $default := get $c.device_defaults $rt.device -}}
  {{- $_ := set $settings $key (ternary (get $rt $key) $default (has $key ($rt.__set | default list))) -}}
{{- end -}}
{{- $image := $rt.image | default $spec.image -}}
{{- if and $cpu (kindIs "invalid" $rt.image) -}}
  {{- /* spec.cpu_image: vLLM's official CPU image of the same release. */ -}}
  {{- $image = printf (ternary $c.cpu_image.from_then $c.cpu_image.before (ge (include "poolserve.versionKey" $version) (include "poolserve.versionKey" $c.cpu_image.from))) (join "." $version) -}}
{{- end -}}
{{- $kind := ternary "Embedding" "Reranker" (eq $rt.task "embed") -}}
{{- $out := dict
  "name" (.name | default $rt.name)
  "pattern" $rt.name
  "display_name" ($rt.display_name | default (printf "vLLM %s%s Runtime" (ternary "CPU " "" $cpu) $kind))
  "task" $rt.task
  "device" $rt.device
  "image" $image
  "vllm_version" $version
  "version_key" (include "poolserve.versionKey" $version)
  "model_format" $rt.model_format
  "dtype" $settings.dtype
  "gpu_memory_utilization" $settings.gpu_memory_utilization
  "accelerator" $settings.accelerator
  "enforce_eager" $settings.enforce_eager
  "exclusive_cpus" ($rt.exclusive_cpus | default false)
  "node_selector" (ternary (ternary $c.cpu_arch_selector dict $cpu) $rt.node_selector (kindIs "invalid" $rt.node_selector))
  "tolerations" ($rt.tolerations | default list)
  "extra_args" $rt.extra_args
  "env" $rt.env
  "probes" $rt.probes
-}}
{{- $_ := set $out "args" (include "poolserve.runtimeArgs" (dict "runtime" $out "constants" .constants) | fromJsonArray) -}}
{{- $_ := set $out "command" (include "poolserve.command" (dict "version_key" $out.version_key "constants" .constants) | fromJsonArray) -}}
{{- toJson $out -}}
{{- end }}

{{- /* poolserve.model: spec.resolve_models for one model, with its container args (vllm.model_args). */ -}}
{{- define "poolserve.model" -}}
{{- $spec := .spec -}}{{- $m := .model -}}{{- $d := $spec.defaults -}}
{{- $entry := .entry -}}
{{- $task := $m.task | default (and $entry $entry.task) | default "embed" -}}
{{- /* The runtime the model names, else the first of its task. */ -}}
{{- $rt := dict -}}
{{- range $spec.runtimes -}}
  {{- if not $rt -}}
    {{- if not (kindIs "invalid" $m.runtime) }}{{ if eq .name (toString $m.runtime) }}{{ $rt = . }}{{ end -}}
    {{- else if eq .task $task }}{{ $rt = . }}{{ end -}}
  {{- end -}}
{{- end -}}
{{- $runtime := include "poolserve.runtime" (dict "spec" $spec "rt" $rt "name" (ternary $m.name "" (eq $spec.runtime_mode "per-model")) "constants" .constants) | fromJson -}}
{{- $version := $runtime.vllm_version -}}
{{- if $m.image }}{{ $version = (include "poolserve.imageVersion" $m.image | fromJson).v }}{{ end -}}
{{- $replicas := (include "poolserve.first" (list $m.replicas $d.replicas 1) | fromJson).v -}}
{{- $expose := (include "poolserve.first" (list $m.expose $d.expose false) | fromJson).v -}}
{{- /* spec._merge_resources: defaults:, then the model's, key by key. */ -}}
{{- $requests := dict -}}{{- $limits := dict -}}
{{- range list $d.resources $m.resources -}}
  {{- if . -}}
    {{- range $k, $v := .requests }}{{ $_ := set $requests $k $v }}{{ end -}}
    {{- range $k, $v := .limits }}{{ $_ := set $limits $k $v }}{{ end -}}
  {{- end -}}
{{- end -}}
{{- $resources := dict "requests" $requests "limits" $limits -}}
{{- $env := dict -}}
{{- range $k, $v := $d.env }}{{ $_ := set $env $k $v }}{{ end -}}
{{- range $k, $v := $m.env }}{{ $_ := set $env $k $v }}{{ end -}}
{{- /* spec._resolve_extras. A hardware profile supplies scheduling: defaults:' node selector and tolerations are
left out for the model (a model's own are a config error). */ -}}
{{- $profile := (include "poolserve.ownOrDefault" (dict "m" $m "d" $d "key" "hardware_profile") | fromJson).v -}}
{{- $strategy := (include "poolserve.first" (list $m.deployment_strategy $d.deployment_strategy) | fromJson).v -}}
{{- if and (not $strategy) (has (toString $spec.cache.access_mode) (list "ReadWriteOnce" "ReadWriteOncePod")) -}}
  {{- /* A rolling update's surge pod cannot attach the volume on another node. */ -}}
  {{- $strategy = "Recreate" -}}
{{- end -}}
{{- $out := dict
  "name" $m.name
  "namespace" $spec.namespace
  "model_id" $m.model_id
  "display_name" ($m.display_name | default (printf "%s (vLLM)" (last (splitList "/" $m.model_id))))
  "task" $task
  "runtime" $runtime
  "max_model_len" (include "poolserve.first" (list $m.max_model_len (and $entry $entry.max_model_len)) | fromJson).v
  "dtype" (ternary nil $m.dtype (eq (toJson $m.dtype) (toJson $runtime.dtype)))
  "gpu_memory_utilization" (ternary nil $m.gpu_memory_utilization (eq (toJson $m.gpu_memory_utilization) (toJson $runtime.gpu_memory_utilization)))
  "image" $m.image
  "vllm_version" $version
  "version_key" (include "poolserve.versionKey" $version)
  "trust_remote_code" (include "poolserve.first" (list $m.trust_remote_code (and $entry $entry.trust_remote_code) false) | fromJson).v
  "hf_overrides" (include "poolserve.first" (list $m.hf_overrides (and $entry $entry.hf_overrides)) | fromJson).v
  "pooler_config" $m.pooler_config
  "convert" (include "poolserve.first" (list $m.convert (and $entry $entry.convert)) | fromJson).v
  "resources" $resources
  "gpus" (ternary 0 (include "poolserve.first" (list $m.gpus $d.gpus 0) | fromJson).v (eq $runtime.device "cpu"))
  "mig_profile" (ternary nil (include "poolserve.first" (list $m.mig_profile $d.mig_profile) | fromJson).v (eq $runtime.device "cpu"))
  "stopped" $m.stopped
  "replicas" $replicas
  "max_replicas" (include "poolserve.first" (list $m.max_replicas $d.max_replicas $replicas) | fromJson).v
  "node_selector" (ternary dict ((include "poolserve.first" (list $m.node_selector $d.node_selector dict) | fromJson).v) (not (empty $profile)))
  "tolerations" (ternary list ((include "poolserve.first" (list $m.tolerations $d.tolerations list) | fromJson).v) (not (empty $profile)))
  "expose" $expose
  "auth" (include "poolserve.first" (list $m.auth $d.auth $expose) | fromJson).v
  "env" $env
  "extra_args" ((include "poolserve.first" (list $m.extra_args $d.extra_args list) | fromJson).v)
  "catalog" $entry
  "autoscaling" (include "poolserve.ownOrDefault" (dict "m" $m "d" $d "key" "autoscaling") | fromJson).v
  "hardware_profile" (ternary nil (and $profile (list $profile.name ($profile.namespace | default $spec.dashboard.templates_namespace))) (empty $profile))
  "storage_uri" (ternary nil (and $m.storage_uri (include "poolserve.storageURI" $m.storage_uri | fromJson)) (empty $m.storage_uri))
  "data_connection" $m.data_connection
  "image_pull_secrets" ((include "poolserve.first" (list $m.image_pull_secrets $d.image_pull_secrets list) | fromJson).v)
  "disruption_budget" (include "poolserve.ownOrDefault" (dict "m" $m "d" $d "key" "disruption_budget") | fromJson).v
  "deployment_strategy" $strategy
-}}
{{- $_ := set $out "args" (include "poolserve.modelArgs" (dict "model" $out "constants" .constants) | fromJsonArray) -}}
{{- $_ := set $out "command" (include "poolserve.modelCommand" (dict "model" $out "constants" .constants) | fromJson).v -}}
{{- toJson $out -}}
{{- end }}

{{- /* poolserve.resolved: {spec, runtimes, models}: what render.render works from. Fails, naming the key, on the
config's rules the schema cannot say (_validate.tpl); poolserve lint's are `poolserve lint -c values.yaml`'s. */ -}}
{{- define "poolserve.resolved" -}}
{{- $spec := include "poolserve.config" . | fromJson -}}
{{- $catalog := include "poolserve.config.catalog" . | fromJson -}}
{{- $c := include "poolserve.constants" . | fromJson -}}
{{- $problems := include "poolserve.validateValues" (dict "spec" $spec "catalog" $catalog "constants" $c) | fromJsonArray -}}
{{- if $problems -}}
  {{- $more := ternary "" (printf " (and %d more)" (sub (len $problems) 1)) (eq (len $problems) 1) -}}
  {{- fail (printf "%s%s" (first $problems) $more) -}}
{{- end -}}
{{- $models := list -}}
{{- range $spec.models -}}
  {{- $entry := get $catalog (lower .model_id) -}}
  {{- $models = append $models (include "poolserve.model" (dict "spec" $spec "model" . "entry" ($entry | default nil) "constants" $c) | fromJson) -}}
{{- end -}}
{{- /* spec.all_runtimes: shared: every runtime of the config; per-model: one per model, named like it. */ -}}
{{- $runtimes := list -}}
{{- if eq $spec.runtime_mode "per-model" -}}
  {{- range $models }}{{ $runtimes = append $runtimes .runtime }}{{ end -}}
{{- else -}}
  {{- range $spec.runtimes }}{{ $runtimes = append $runtimes (include "poolserve.runtime" (dict "spec" $spec "rt" . "constants" $c) | fromJson) }}{{ end -}}
{{- end -}}
{{- /* render.runtime_hardware_profile: the hardware profile all of a runtime's models use, else none (the 2.x dashboard
reads it from the runtime). */ -}}
{{- range $rt := $runtimes -}}
  {{- $profiles := dict -}}
  {{- range $models }}{{ if eq .runtime.name $rt.name }}{{ $_ := set $profiles (toJson .hardware_profile) .hardware_profile }}{{ end }}{{ end -}}
  {{- $_ := set $rt "hardware_profile" (ternary (values $profiles | first) nil (eq (len $profiles) 1)) -}}
{{- end -}}
{{- /* kserve.template_scope: project when the Templates go to the models' own namespace. */ -}}
{{- $project := or (eq $spec.dashboard.templates_scope "project") (eq $spec.dashboard.templates_namespace $spec.namespace) -}}
{{- $_ := set $spec.dashboard "template_scope" (ternary "project" "global" $project) -}}
{{- $_ := set $spec.dashboard "template_namespace" (ternary $spec.namespace $spec.dashboard.templates_namespace $project) -}}
{{- toJson (dict "spec" $spec "runtimes" $runtimes "models" $models) -}}
{{- end }}
