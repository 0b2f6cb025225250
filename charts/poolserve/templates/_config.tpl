{{- /*
The config, as poolserve reads it (src/poolserve/spec.py): defaults filled in, checked across keys,
and resolved model by model with one precedence: built-in defaults < catalog < defaults: < the
model's own keys.

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

{{- /* poolserve.crossCheck: spec.cross_check, the rules that span several keys, as a list of "key: message"
(the same messages poolserve gives, without its file:line prefix). */ -}}
{{- define "poolserve.crossCheck" -}}
{{- $spec := .spec -}}{{- $catalog := .catalog -}}{{- $c := .constants -}}
{{- $ns := $spec.namespace -}}
{{- $out := list -}}
{{- /* spec._secret_env: env values land in the rendered objects; a secret-looking name is refused. */ -}}
{{- $envs := list (list "defaults" $spec.defaults.env) -}}
{{- range $i, $rt := $spec.runtimes }}{{ $envs = append $envs (list (printf "runtimes[%d]" $i) $rt.env) }}{{ end -}}
{{- range $i, $m := $spec.models }}{{ $envs = append $envs (list (printf "models[%d]" $i) $m.env) }}{{ end -}}
{{- range $envs -}}
  {{- $at := index . 0 -}}
  {{- range $name, $_ := index . 1 -}}
    {{- if include "poolserve.secretLike" (dict "name" $name "constants" $c) -}}
      {{- $out = append $out (printf "%s.env.%s: %s looks like a secret, and its value would be written into the rendered manifests: use cache.hf_token_secret for the HF token (a Secret reference, rendered as secretKeyRef), or local.env for the local target (never rendered)" $at $name $name) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- if or (not (regexMatch $c.name_re $ns)) (gt (len $ns) 63) -}}
  {{- $out = append $out (printf "namespace: %s is not a valid namespace name (DNS-1123 label)" (include "poolserve.repr" $ns)) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $spec.vllm_version)) (not (include "poolserve.parseVersion" $spec.vllm_version | fromJson).v) -}}
  {{- $out = append $out (printf "vllm_version: %s is not a version like 0.32.0" (include "poolserve.repr" $spec.vllm_version)) -}}
{{- end -}}
{{- $runtimeIndex := dict -}}{{- $runtimeNames := list -}}
{{- range $i, $rt := $spec.runtimes -}}
  {{- if hasKey $runtimeIndex $rt.name -}}
    {{- $out = append $out (printf "runtimes[%d].name: duplicate runtime name %s" $i (include "poolserve.repr" $rt.name)) -}}
  {{- else -}}
    {{- $runtimeNames = append $runtimeNames $rt.name -}}
  {{- end -}}
  {{- $_ := set $runtimeIndex $rt.name $i -}}
  {{- if or (not (regexMatch $c.name_re $rt.name)) (gt (len $rt.name) 63) -}}
    {{- $out = append $out (printf "runtimes[%d].name: %s is not a valid Kubernetes name" $i (include "poolserve.repr" $rt.name)) -}}
  {{- end -}}
  {{- if and (eq $rt.device "cpu") (has "accelerator" ($rt.__set | default list)) $rt.accelerator -}}
    {{- $out = append $out (printf "runtimes[%d].accelerator: runtime %s has device: cpu: it has no accelerator (remove accelerator, or use device: gpu)" $i (include "poolserve.repr" $rt.name)) -}}
  {{- end -}}
  {{- if not (include "poolserve.runtimeVersion" (dict "spec" $spec "rt" $rt) | fromJson).v -}}
    {{- $key := ternary (printf "runtimes[%d].vllm_version" $i) (printf "runtimes[%d].image" $i) (not (empty $rt.vllm_version)) -}}
    {{- if and (empty $rt.image) (empty $rt.vllm_version) }}{{ $key = "image" }}{{ end -}}
    {{- $out = append $out (printf "%s: cannot tell the vLLM version of image %s: pin a tag like v0.32.0 or set vllm_version" $key (include "poolserve.repr" (default $spec.image $rt.image))) -}}
  {{- end -}}
{{- end -}}
{{- $modelNames := dict -}}
{{- range $i, $m := $spec.models -}}
  {{- $at := printf "models[%d]" $i -}}
  {{- if hasKey $modelNames $m.name -}}
    {{- $out = append $out (printf "%s.name: duplicate model name %s" $at (include "poolserve.repr" $m.name)) -}}
  {{- end -}}
  {{- $_ := set $modelNames $m.name true -}}
  {{- if not (regexMatch $c.name_re $m.name) -}}
    {{- $out = append $out (printf "%s.name: %s must be lowercase letters, digits and '-', starting with a letter" $at (include "poolserve.repr" $m.name)) -}}
  {{- else if gt (len $m.name) (int $c.max_name_len) -}}
    {{- $out = append $out (printf "%s.name: %s is %d characters; KServe raw mode allows %d (label app=isvc.<name>-predictor must fit 63)" $at (include "poolserve.repr" $m.name) (len $m.name) (int $c.max_name_len)) -}}
  {{- else if gt (add (len $m.name) (len $ns)) (int $c.max_name_plus_namespace) -}}
    {{- $out = append $out (printf "%s.name: %s + namespace %s is %d characters; KServe allows %d (host label <name>-predictor-<namespace> must fit 63)" $at (include "poolserve.repr" $m.name) (include "poolserve.repr" $ns) (add (len $m.name) (len $ns)) (int $c.max_name_plus_namespace)) -}}
  {{- end -}}
  {{- if and (eq $spec.runtime_mode "per-model") (hasKey $runtimeIndex $m.name) -}}
    {{- $out = append $out (printf "%s.name: %s clashes with a runtime of the same name in per-model mode" $at (include "poolserve.repr" $m.name)) -}}
  {{- end -}}
  {{- $entry := get $catalog (lower $m.model_id) -}}
  {{- $task := $m.task | default (and $entry $entry.task) -}}
  {{- if not $task -}}
    {{- $out = append $out (printf "%s.model_id: %s is not in the catalog: set task: embed or task: score" $at (include "poolserve.repr" $m.model_id)) -}}
    {{- continue -}}
  {{- end -}}
  {{- if not (kindIs "invalid" $m.runtime) -}}
    {{- if not (hasKey $runtimeIndex $m.runtime) -}}
      {{- $out = append $out (printf "%s.runtime: runtime %s is not defined under runtimes (defined: %s)" $at (include "poolserve.repr" $m.runtime) (join ", " $runtimeNames | default "none")) -}}
    {{- else -}}
      {{- $rtTask := (index $spec.runtimes (get $runtimeIndex $m.runtime | int)).task -}}
      {{- if ne $rtTask $task -}}
        {{- $out = append $out (printf "%s.runtime: model task is %s but runtime %s serves %s" $at (include "poolserve.repr" $task) (include "poolserve.repr" $m.runtime) (include "poolserve.repr" $rtTask)) -}}
      {{- end -}}
    {{- end -}}
  {{- else -}}
    {{- $candidates := list -}}
    {{- range $spec.runtimes }}{{ if eq .task $task }}{{ $candidates = append $candidates .name }}{{ end }}{{ end -}}
    {{- if not $candidates -}}
      {{- $out = append $out (printf "%s.task: %s: task %s needs a runtime with task: %s; none under runtimes" $at $m.name (include "poolserve.repr" $task) $task) -}}
    {{- else if gt (len $candidates) 1 -}}
      {{- $out = append $out (printf "%s.runtime: %s: several runtimes serve %s (%s): name one with runtime:" $at $m.name (include "poolserve.repr" $task) (join ", " $candidates)) -}}
    {{- end -}}
  {{- end -}}
  {{- /* The model's runtime (the one it names, else the first of its task): device: cpu takes no GPU or MIG slice. */ -}}
  {{- $rtIndex := -1 -}}
  {{- if not (kindIs "invalid" $m.runtime) -}}
    {{- if hasKey $runtimeIndex $m.runtime }}{{ $rtIndex = get $runtimeIndex $m.runtime | int }}{{ end -}}
  {{- else -}}
    {{- range $j, $rt := $spec.runtimes }}{{ if and (lt $rtIndex 0) (eq $rt.task $task) }}{{ $rtIndex = $j }}{{ end }}{{ end -}}
  {{- end -}}
  {{- $onCpu := and (ge $rtIndex 0) (eq (index $spec.runtimes (max $rtIndex 0)).device "cpu") -}}
  {{- $mig := (include "poolserve.first" (list $m.mig_profile $spec.defaults.mig_profile) | fromJson).v -}}
  {{- if and (not (kindIs "invalid" $mig)) (not (regexMatch $c.mig_profile_re (toString $mig))) -}}
    {{- $where := ternary (printf "%s.mig_profile" $at) "defaults.mig_profile" (not (kindIs "invalid" $m.mig_profile)) -}}
    {{- $out = append $out (printf "%s: %s is not a MIG profile like 1g.10gb or 3g.40gb (nvidia-smi mig -lgip)" $where (include "poolserve.repr" $mig)) -}}
  {{- end -}}
  {{- if $onCpu -}}
    {{- $rtName := (index $spec.runtimes $rtIndex).name -}}
    {{- if $m.gpus -}}
      {{- $out = append $out (printf "%s.gpus: runtime %s has device: cpu: its models cannot use GPUs (set gpus: 0, or use a device: gpu runtime)" $at (include "poolserve.repr" $rtName)) -}}
    {{- end -}}
    {{- if $m.mig_profile -}}
      {{- $out = append $out (printf "%s.mig_profile: runtime %s has device: cpu: no MIG slice" $at (include "poolserve.repr" $rtName)) -}}
    {{- end -}}
  {{- else if not (kindIs "invalid" $mig) -}}
    {{- $gpus := (include "poolserve.first" (list $m.gpus $spec.defaults.gpus) | fromJson).v -}}
    {{- if and (not (kindIs "invalid" $gpus)) (eq ($gpus | float64) 0.0) -}}
      {{- $out = append $out (printf "%s.gpus: gpus: 0 with mig_profile %s: a MIG slice is a GPU (unset gpus, or set it to the number of slices)" $at (include "poolserve.repr" $mig)) -}}
    {{- end -}}
  {{- end -}}
  {{- if and $entry $m.max_model_len (gt ($m.max_model_len | float64) ($entry.max_model_len | float64)) -}}
    {{- $out = append $out (printf "%s.max_model_len: %d is above %s's limit of %d; vLLM refuses to start (see `poolserve catalog %s`)" $at ($m.max_model_len | int64) $m.model_id ($entry.max_model_len | int64) $m.model_id) -}}
  {{- end -}}
  {{- if and $m.image (not (include "poolserve.imageVersion" $m.image | fromJson).v) -}}
    {{- $out = append $out (printf "%s.image: cannot tell the vLLM version of image %s: pin a tag like v0.32.0" $at (include "poolserve.repr" $m.image)) -}}
  {{- end -}}
  {{- $replicas := (include "poolserve.first" (list $m.replicas $spec.defaults.replicas 1) | fromJson).v -}}
  {{- $maxReplicas := (include "poolserve.first" (list $m.max_replicas $spec.defaults.max_replicas $replicas) | fromJson).v -}}
  {{- if lt ($maxReplicas | float64) ($replicas | float64) -}}
    {{- $out = append $out (printf "%s.max_replicas: max_replicas %d is below replicas %d" $at ($maxReplicas | int64) ($replicas | int64)) -}}
  {{- end -}}
  {{- $out = concat $out (include "poolserve.checkModelExtras" (dict "spec" $spec "m" $m "at" $at) | fromJsonArray) -}}
{{- end -}}
{{- $out = concat $out (include "poolserve.checkExtras" (dict "d" $spec.defaults "at" "defaults") | fromJsonArray) -}}
{{- toJson $out -}}
{{- end }}

{{- /* poolserve.checkExtras: spec._check_extras, the keys a defaults: block and a model share (autoscaling, hardware
profile, pull secrets, disruption budget); .d: the block, .at: its key. */ -}}
{{- define "poolserve.checkExtras" -}}
{{- $d := .d -}}{{- $at := .at -}}
{{- $subdomain := "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" -}}
{{- $out := list -}}
{{- with $d.autoscaling -}}
  {{- $a := . -}}
  {{- $hpa := has $a.metric (list "cpu" "memory") -}}
  {{- if and $hpa (gt ($a.target | float64) 100.0) -}}
    {{- $out = append $out (printf "%s.autoscaling.target: %d is out of KServe's range for metric %s: a utilisation percentage 1-100 (the InferenceService webhook rejects it)" $at ($a.target | int64) $a.metric) -}}
  {{- end -}}
  {{- if $hpa -}}
    {{- range $field := list "prometheus_url" "authentication" -}}
      {{- if has $field ($a.__set | default list) -}}
        {{- $out = append $out (printf "%s.autoscaling.%s: only used with metric: queue (KEDA), not %s" $at $field $a.metric) -}}
      {{- end -}}
    {{- end -}}
  {{- else if not (regexMatch "^https?://[^/\\s]+" $a.prometheus_url) -}}
    {{- $out = append $out (printf "%s.autoscaling.prometheus_url: %s is not an http(s) URL" $at (include "poolserve.repr" $a.prometheus_url)) -}}
  {{- end -}}
  {{- if and (not (kindIs "invalid" $a.authentication)) (not (regexMatch $subdomain $a.authentication)) -}}
    {{- $out = append $out (printf "%s.autoscaling.authentication: %s is not a TriggerAuthentication name" $at (include "poolserve.repr" $a.authentication)) -}}
  {{- end -}}
{{- end -}}
{{- with $d.hardware_profile -}}
  {{- range $check := list (list "name" .name $subdomain 253) (list "namespace" .namespace "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" 63) -}}
    {{- $value := index $check 1 -}}
    {{- if and (not (kindIs "invalid" $value)) (or (not (regexMatch (index $check 2) $value)) (gt (len $value) (index $check 3))) -}}
      {{- $out = append $out (printf "%s.hardware_profile.%s: %s is not a valid Kubernetes name" $at (index $check 0) (include "poolserve.repr" $value)) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- range $i, $secret := $d.image_pull_secrets -}}
  {{- if not (regexMatch $subdomain $secret) -}}
    {{- $out = append $out (printf "%s.image_pull_secrets[%d]: %s is not a Secret name" $at $i (include "poolserve.repr" $secret)) -}}
  {{- end -}}
{{- end -}}
{{- with $d.disruption_budget -}}
  {{- $pdb := . -}}
  {{- if and (not (kindIs "invalid" $pdb.max_unavailable)) (not (kindIs "invalid" $pdb.min_available)) -}}
    {{- $out = append $out (printf "%s.disruption_budget: set max_unavailable or min_available, not both (a PodDisruptionBudget takes one)" $at) -}}
  {{- end -}}
  {{- range $field := list "max_unavailable" "min_available" -}}
    {{- $value := get $pdb $field -}}
    {{- if and (kindIs "string" $value) (not (regexMatch "^[0-9]+%$" $value)) -}}
      {{- $out = append $out (printf "%s.disruption_budget.%s: %s is neither a number of pods nor a percentage like '25%%'" $at $field (include "poolserve.repr" $value)) -}}
    {{- else if and (not (kindIs "invalid" $value)) (not (kindIs "string" $value)) (lt ($value | float64) 0.0) -}}
      {{- $out = append $out (printf "%s.disruption_budget.%s: %d is negative" $at $field ($value | int64)) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{- /* poolserve.checkModelExtras: spec._check_model_extras: the shared keys, then storage_uri and data_connection, and
node_selector / tolerations next to a hardware profile. */ -}}
{{- define "poolserve.checkModelExtras" -}}
{{- $spec := .spec -}}{{- $m := .m -}}{{- $at := .at -}}
{{- $out := include "poolserve.checkExtras" (dict "d" $m "at" $at) | fromJsonArray -}}
{{- if not (kindIs "invalid" $m.storage_uri) -}}
  {{- $uri := include "poolserve.storageURI" $m.storage_uri | fromJson -}}
  {{- if $uri.error -}}
    {{- $out = append $out (printf "%s.storage_uri: %s" $at $uri.error) -}}
  {{- else if and (not (kindIs "invalid" $m.data_connection)) (ne $uri.scheme "s3") -}}
    {{- $out = append $out (printf "%s.data_connection: only used with s3:// (storage_uri is %s://)" $at $uri.scheme) -}}
  {{- end -}}
{{- else if not (kindIs "invalid" $m.data_connection) -}}
  {{- $out = append $out (printf "%s.data_connection: needs storage_uri: s3://BUCKET/PATH" $at) -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $m.data_connection)) (not (regexMatch "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" $m.data_connection)) -}}
  {{- $out = append $out (printf "%s.data_connection: %s is not a Secret name" $at (include "poolserve.repr" $m.data_connection)) -}}
{{- end -}}
{{- if include "poolserve.ownOrDefault" (dict "m" $m "d" $spec.defaults "key" "hardware_profile") | fromJson | dig "v" nil -}}
  {{- range $field := list "node_selector" "tolerations" -}}
    {{- if get $m $field -}}
      {{- $out = append $out (printf "%s.%s: %s comes from the hardware profile (its webhook overwrites it); remove %s or hardware_profile" $at $field $field $field) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
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

{{- /* poolserve.storageURI: storage.parse, a storage_uri as {scheme, location, path, uri}, or {error: why}. */ -}}
{{- define "poolserve.storageURI" -}}
{{- $uri := toString . -}}
{{- $r := include "poolserve.repr" $uri -}}
{{- $subdomain := "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$" -}}
{{- $hfPart := "^[A-Za-z0-9][A-Za-z0-9._-]*$" -}}
{{- if not (contains "://" $uri) -}}
  {{- toJson (dict "error" (printf "%s is not a URI: use pvc://CLAIM/PATH, oci://IMAGE, hf://ORG/MODEL or s3://BUCKET/PATH" $r)) -}}
{{- else -}}
  {{- $parts := splitn "://" 2 $uri -}}
  {{- $scheme := $parts._0 -}}{{- $rest := $parts._1 -}}
  {{- if not (has $scheme (list "pvc" "oci" "hf" "s3")) -}}
    {{- toJson (dict "error" (printf "unknown URI scheme %s: poolserve supports pvc://, oci://, hf:// and s3:// (KServe's other schemes are not rendered)" (include "poolserve.repr" (printf "%s://" $scheme)))) -}}
  {{- else if eq $scheme "pvc" -}}
    {{- $p := splitn "/" 2 $rest -}}
    {{- $claim := $p._0 -}}{{- $path := $p._1 | default "" -}}
    {{- if or (not (regexMatch $subdomain $claim)) (gt (len $claim) 253) -}}
      {{- toJson (dict "error" (printf "%s: %s is not a PVC name (pvc://CLAIM/PATH)" $r (include "poolserve.repr" $claim))) -}}
    {{- else if has ".." (splitList "/" $path) -}}
      {{- toJson (dict "error" (printf "%s: '..' is not allowed in the path (it becomes the mount's subPath)" $r)) -}}
    {{- else -}}
      {{- toJson (dict "uri" $uri "scheme" "pvc" "location" $claim "path" (trimAll "/" $path)) -}}
    {{- end -}}
  {{- else if eq $scheme "hf" -}}
    {{- $p := splitList "/" $rest -}}
    {{- if or (ne (len $p) 2) (has "" $p) -}}
      {{- toJson (dict "error" (printf "%s: expected hf://OWNER/MODEL[:REVISION] (KServe's storage initializer rejects anything else)" $r)) -}}
    {{- else -}}
      {{- $mr := splitn ":" 2 (index $p 1) -}}
      {{- $model := $mr._0 -}}{{- $revision := $mr._1 | default "" -}}
      {{- if or (not (regexMatch $hfPart (index $p 0))) (not (regexMatch $hfPart $model)) -}}
        {{- toJson (dict "error" (printf "%s: %s/%s is not a Hugging Face repository id" $r (index $p 0) $model)) -}}
      {{- else if and $revision (or (not (regexMatch $hfPart $revision)) (has $revision (list "." ".."))) -}}
        {{- toJson (dict "error" (printf "%s: %s is not a revision (a branch, tag or commit hash)" $r (include "poolserve.repr" $revision))) -}}
      {{- else -}}
        {{- toJson (dict "uri" $uri "scheme" "hf" "location" (printf "%s/%s" (index $p 0) $model) "path" $revision) -}}
      {{- end -}}
    {{- end -}}
  {{- else if eq $scheme "s3" -}}
    {{- $p := splitn "/" 2 $rest -}}
    {{- if not (regexMatch "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$" $p._0) -}}
      {{- toJson (dict "error" (printf "%s: %s is not an S3 bucket name (s3://BUCKET/PATH)" $r (include "poolserve.repr" $p._0))) -}}
    {{- else -}}
      {{- toJson (dict "uri" $uri "scheme" "s3" "location" $p._0 "path" (trimAll "/" ($p._1 | default ""))) -}}
    {{- end -}}
  {{- else if not (regexMatch "^[a-z0-9][a-z0-9.-]*(?::[0-9]+)?/[a-z0-9._/-]+(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$" $rest) -}}
    {{- toJson (dict "error" (printf "%s: expected oci://REGISTRY/REPOSITORY:TAG (or @sha256:DIGEST), the modelcar image" $r)) -}}
  {{- else -}}
    {{- toJson (dict "uri" $uri "scheme" "oci" "location" $rest "path" "") -}}
  {{- end -}}
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

{{- /* poolserve.resolved: {spec, runtimes, models}: what render.render works from. Fails, naming the key, on
what poolserve rejects: the cross-key rules (spec.cross_check), then poolserve lint's errors (_lint.tpl). */ -}}
{{- define "poolserve.resolved" -}}
{{- $spec := include "poolserve.config" . | fromJson -}}
{{- $catalog := include "poolserve.config.catalog" . | fromJson -}}
{{- $c := include "poolserve.constants" . | fromJson -}}
{{- $problems := include "poolserve.crossCheck" (dict "spec" $spec "catalog" $catalog "constants" $c) | fromJsonArray -}}
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
{{- $resolved := dict "spec" $spec "runtimes" $runtimes "models" $models -}}
{{- $errors := include "poolserve.kserve.lint" (dict "resolved" $resolved "constants" $c) | fromJsonArray -}}
{{- if $errors -}}
  {{- $more := ternary "" (printf " (and %d more)" (sub (len $errors) 1)) (eq (len $errors) 1) -}}
  {{- fail (printf "%s%s (poolserve lint rejects this config)" (first $errors) $more) -}}
{{- end -}}
{{- toJson $resolved -}}
{{- end }}

{{- /* poolserve.secretLike: spec.secret_like, "true" for an env name that usually holds a secret (HF_TOKEN,
VLLM_API_KEY), "" otherwise (TOKENIZERS_PARALLELISM). */ -}}
{{- define "poolserve.secretLike" -}}
{{- $words := splitList "_" (upper .name | replace "-" "_") -}}
{{- $found := false -}}
{{- range $i, $w := $words -}}
  {{- if has $w $.constants.secret_words }}{{ $found = true }}{{ end -}}
  {{- if and (gt $i 0) (has (printf "%s_%s" (index $words (sub $i 1)) $w) $.constants.secret_pairs) }}{{ $found = true }}{{ end -}}
{{- end -}}
{{- if $found }}true{{ end -}}
{{- end }}
