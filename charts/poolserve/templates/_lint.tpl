{{- /*
The errors of `poolserve lint` (src/poolserve/lint.py, vllm.check_args and env_problems), so a config
that poolserve lint rejects never installs through Helm. Each is "key: message", with lint's own
message. Not here: the KServe CRD schema check; the API server applies the same CRDs when Helm
installs (and with helm install --dry-run=server).
*/ -}}

{{- /* poolserve.flagProblems: vllm.check_args errors for one model's composed args (runtime args + model args). */ -}}
{{- define "poolserve.flagProblems" -}}
{{- $v := .constants.versions -}}{{- $key := .version_key -}}{{- $ver := .ver -}}{{- $args := .args -}}
{{- $at := dict -}}
{{- range $name, $version := $v }}{{ $_ := set $at $name (include "poolserve.versionKey" $version) }}{{ end -}}
{{- $out := list -}}
{{- if lt $key $at.min_pooling -}}
  {{- $out = append $out (printf "vLLM %s cannot serve BERT-style pooling models (first release: %s)" $ver (join "." $v.min_pooling)) -}}
{{- end -}}
{{- range $i, $a := $args -}}
  {{- if not (regexMatch "^--[a-z0-9][a-z0-9-]*(=.*)?$" $a) }}{{ continue }}{{ end -}}
  {{- $flag := regexReplaceAll "=.*$" $a "" -}}
  {{- $value := "" -}}
  {{- if contains "=" $a -}}
    {{- $value = trimPrefix (printf "%s=" $flag) $a -}}
  {{- else if and (lt (add1 $i) (len $args)) (not (hasPrefix "--" (index $args (add1 $i)))) -}}
    {{- $value = index $args (add1 $i) -}}
  {{- end -}}
  {{- if eq $flag "--task" -}}
    {{- if ge $key $at.task_removed -}}
      {{- $out = append $out (printf "--task was removed in vLLM %s (image has %s): argparse exits 2 with 'unrecognized arguments'; use --runner=pooling" (join "." $v.task_removed) $ver) -}}
    {{- end -}}
  {{- else if and (has $flag (list "--runner" "--convert")) (lt $key $at.runner_flag) -}}
    {{- $out = append $out (printf "%s does not exist before vLLM %s (image has %s); use --task" $flag (join "." $v.runner_flag) $ver) -}}
  {{- else if and (eq $flag "--convert") (eq $value "reward") (ge $key $at.convert_reward_removed) -}}
    {{- $out = append $out (printf "--convert=reward was removed in vLLM %s" (join "." $v.convert_reward_removed)) -}}
  {{- else if and (eq $flag "--override-pooler-config") (ge $key $at.override_pooler_removed) -}}
    {{- $out = append $out (printf "--override-pooler-config was removed in vLLM %s; use --pooler-config" (join "." $v.override_pooler_removed)) -}}
  {{- else if and (eq $flag "--pooler-config") (lt $key $at.pooler_config) -}}
    {{- $out = append $out (printf "--pooler-config needs vLLM >= %s (image has %s)" (join "." $v.pooler_config) $ver) -}}
  {{- end -}}
  {{- if and (has $flag (list "--pooler-config" "--override-pooler-config")) $value (ge $key $at.normalize_removed) -}}
    {{- /* Any JSON value parses inside {"v": ...}; anything else leaves fromJson's Error key. */ -}}
    {{- $parsed := printf "{\"v\": %s}" $value | fromJson -}}
    {{- if or (hasKey $parsed "Error") (ne (len $parsed) 1) -}}
      {{- $out = append $out (printf "%s value is not JSON: %s" $flag (include "poolserve.repr" $value)) -}}
      {{- continue -}}
    {{- end -}}
    {{- $removed := list -}}
    {{- if kindIs "map" $parsed.v -}}
      {{- range list "activation" "normalize" "softmax" }}{{ if hasKey $parsed.v . }}{{ $removed = append $removed . }}{{ end }}{{ end -}}
    {{- end -}}
    {{- if $removed -}}
      {{- $out = append $out (printf "pooler config key(s) %s were removed in vLLM %s; use use_activation" (join ", " $removed) (join "." $v.normalize_removed)) -}}
    {{- end -}}
  {{- end -}}
  {{- if and (eq $flag "--gpu-memory-utilization") $value -}}
    {{- $number := trim $value -}}
    {{- if not (regexMatch "^[-+]?(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][-+]?[0-9]+)?|(?i:inf|infinity|nan))$" $number) -}}
      {{- $out = append $out (printf "not a number: %s" (include "poolserve.repr" $value)) -}}
    {{- else if not (and (gt (float64 $number) 0.0) (le (float64 $number) 1.0)) -}}
      {{- $out = append $out (printf "must be in (0, 1], got %s" $value) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{- /* poolserve.commandProblems: vllm.check_command's errors: the server command for the version, and where the model
is given (`vllm serve MODEL`, the api_server module's --model). */ -}}
{{- define "poolserve.commandProblems" -}}
{{- $c := .constants -}}{{- $v := $c.versions -}}{{- $key := .version_key -}}
{{- $command := .command -}}
{{- $rest := concat (rest $command) .args -}}
{{- $modelFlag := false -}}
{{- range $rest }}{{ if regexMatch "^--model(=.*)?$" . }}{{ $modelFlag = true }}{{ end }}{{ end -}}
{{- $out := list -}}
{{- if and (ge (len $command) 2) (eq (toJson (slice $command 0 2)) (toJson $c.serve_command)) -}}
  {{- $after := rest $rest -}}
  {{- $positional := and $after (not (hasPrefix "-" (first $after))) -}}
  {{- if and $modelFlag (lt $key (include "poolserve.versionKey" $v.serve_entrypoint)) -}}
    {{- $out = append $out (printf "`vllm serve` in vLLM %s refuses --model (ValueError 'provide the model as a positional argument'); it takes the model first" .ver) -}}
  {{- else if and $modelFlag $positional -}}
    {{- $out = append $out "--model next to `vllm serve`'s positional model: vLLM moves --model to the front and rejects the other as an unrecognized argument" -}}
  {{- else if and (not $modelFlag) (not $positional) -}}
    {{- $out = append $out "`vllm serve` needs the model as its first argument: with --served-model-name it refuses to start (vllm#34973), without it serves vLLM's default model" -}}
  {{- end -}}
{{- else if and (ge (len $command) 3) (eq (toJson (slice $command 1 3)) (toJson (rest $c.api_server_command))) -}}
  {{- if not $modelFlag -}}
    {{- $out = append $out "the api_server module takes the model only as --model: it ignores a positional model and serves vLLM's default model" -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{- /* poolserve.placeholderProblems: kserve.compose's check that KServe can fill in every {{ ... }} placeholder
(it templates only ObjectMeta fields; anything else fails the InferenceService with InvalidSpec). */ -}}
{{- define "poolserve.placeholderProblems" -}}
{{- $out := list -}}
{{- range $s := .strings -}}
  {{- range $match := regexFindAll "\\{\\{-?\\s*(.*?)\\s*-?\\}\\}" (toString $s) -1 -}}
    {{- $expr := regexReplaceAll "^\\{\\{-?\\s*(.*?)\\s*-?\\}\\}$" $match "${1}" -}}
    {{- if not (regexMatch "^(\\.(Name|Namespace|UID|Generation|GenerateName)|\\.(Labels|Annotations)\\..*|index\\s+\\.(Labels|Annotations)\\s+\"[^\"]*\")$" $expr) -}}
      {{- $out = append $out (printf "failed to replace placeholder {{%s}}: KServe templates only ObjectMeta fields ({{.Name}}, {{.Namespace}}, {{.Labels.x}}, {{index .Annotations \"a/b\"}})" $expr) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{- /* poolserve.kserve.lint: every error poolserve lint reports for the resolved config (lint._models), in its order. */ -}}
{{- define "poolserve.kserve.lint" -}}
{{- $r := .resolved -}}{{- $c := .constants -}}{{- $spec := $r.spec -}}
{{- $v := $c.versions -}}
{{- $out := list -}}
{{- $totalPods := 0 -}}
{{- range $i, $m := $r.models -}}
  {{- $at := printf "models[%d]" $i -}}
  {{- $ver := join "." $m.vllm_version -}}
  {{- $totalPods = add $totalPods ($m.max_replicas | int) -}}
  {{- $args := list -}}
  {{- range concat $m.runtime.args $m.args }}{{ $args = append $args (replace "{{.Name}}" $m.name .) }}{{ end -}}
  {{- /* The composed container's strings in kserve.compose's order: image, args, env, mounts; the first bad
  placeholder fails the model (later checks would read a container KServe cannot build). */ -}}
  {{- $strings := list ($m.image | default $m.runtime.image) -}}
  {{- $strings = concat $strings $m.runtime.args $m.args (list $spec.cache.hf_home) -}}
  {{- range $m.runtime.env }}{{ $strings = append $strings . }}{{ end -}}
  {{- range $m.env }}{{ $strings = append $strings . }}{{ end -}}
  {{- $strings = append $strings $spec.cache.mount_path -}}
  {{- $placeholders := include "poolserve.placeholderProblems" (dict "strings" $strings) | fromJsonArray -}}
  {{- if $placeholders -}}
    {{- $out = append $out (printf "%s: %s/%s: %s" $at $spec.namespace $m.name (first $placeholders)) -}}
    {{- continue -}}
  {{- end -}}
  {{- range include "poolserve.flagProblems" (dict "args" $args "version_key" $m.version_key "ver" $ver "constants" $c) | fromJsonArray -}}
    {{- $out = append $out (printf "%s: vLLM %s: %s" $at $ver .) -}}
  {{- end -}}
  {{- /* KServe runs the InferenceService's command when it has one (merged whole), else the runtime's. */ -}}
  {{- range include "poolserve.commandProblems" (dict "command" ($m.command | default $m.runtime.command) "args" $args "version_key" $m.version_key "ver" $ver "constants" $c) | fromJsonArray -}}
    {{- $out = append $out (printf "%s: vLLM %s: %s" $at $ver .) -}}
  {{- end -}}
  {{- if hasKey $m.env "PYTHONPATH" -}}
    {{- $out = append $out (printf "%s.env: KServe >= 0.18 webhooks reject a PYTHONPATH env" $at) -}}
  {{- else if hasKey $m.runtime.env "PYTHONPATH" -}}
    {{- $out = append $out (printf "%s: runtime %s: KServe >= 0.18 webhooks reject a PYTHONPATH env" $at $m.runtime.pattern) -}}
  {{- end -}}
  {{- $entry := $m.catalog -}}
  {{- if $entry -}}
    {{- if ne $entry.task $m.task -}}
      {{- $out = append $out (printf "%s.task: %s is a %s (%s model) but the config serves it as %s" $at $m.model_id $entry.architecture $entry.task (include "poolserve.repr" $m.task)) -}}
    {{- end -}}
    {{- if lt $m.version_key (include "poolserve.versionKey" $entry.min_vllm) -}}
      {{- $out = append $out (printf "%s: %s needs vLLM >= %s, image has %s" $at $m.model_id (join "." $entry.min_vllm) $ver) -}}
    {{- end -}}
    {{- range $flag := $entry.required_flags -}}
      {{- $stem := first (splitList "=" $flag) -}}
      {{- $found := false -}}
      {{- range $args }}{{ if eq (first (splitList "=" .)) $stem }}{{ $found = true }}{{ end }}{{ end -}}
      {{- if not $found -}}
        {{- $out = append $out (printf "%s: %s needs %s" $at $m.model_id $flag) -}}
      {{- end -}}
    {{- end -}}
  {{- end -}}
  {{- if and (eq $m.task "score") (lt $m.version_key (include "poolserve.versionKey" $v.task_embed_score)) -}}
    {{- $out = append $out (printf "%s: vLLM %s cannot serve cross-encoders (needs %s)" $at $ver (join "." $v.task_embed_score)) -}}
  {{- end -}}
  {{- range include "poolserve.storageProblems" (dict "model" $m "spec" $spec "constants" $c) | fromJsonArray -}}
    {{- $out = append $out (printf "%s: %s" $at .) -}}
  {{- end -}}
{{- end -}}
{{- /* A ReadWriteOncePod cache: one pod at a time, ever (ReadWriteOnce: the same on other nodes, a warning). */ -}}
{{- $mode := toString $spec.cache.access_mode -}}
{{- if eq $mode "ReadWriteOncePod" -}}
  {{- $scaled := false -}}
  {{- range $i, $m := $r.models -}}
    {{- if gt ($m.max_replicas | int) 1 -}}
      {{- $scaled = true -}}
      {{- $out = append $out (printf "models[%d].max_replicas: max_replicas %d with a %s cache (%s): only one pod can ever mount it" $i ($m.max_replicas | int64) $mode $spec.cache.pvc) -}}
    {{- end -}}
  {{- end -}}
  {{- if and (gt $totalPods 1) (not $scaled) -}}
    {{- $out = append $out (printf "cache.access_mode: %s but up to %d pods mount it: only one pod can ever mount it" $mode $totalPods) -}}
  {{- end -}}
  {{- range $i, $m := $r.models -}}
    {{- if eq (toString $m.deployment_strategy) "RollingUpdate" -}}
      {{- $out = append $out (printf "models[%d].deployment_strategy: deployment_strategy RollingUpdate with a %s cache: the surge pod of each rollout cannot attach the volume from another node; leave it unset (Recreate)" $i $mode) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- /* lint._scaling. (Its KServe webhook checks cannot fail on what the templates render: the cross-key rules keep
replicas <= max_replicas and HPA targets within 1-100, and the classes and metrics come from the schema's enum.) */ -}}
{{- range $i, $m := $r.models -}}
  {{- $a := $m.autoscaling -}}
  {{- if and $a (le ($m.max_replicas | int) ($m.replicas | int)) -}}
    {{- $out = append $out (printf "models[%d].autoscaling: autoscaling on %s but max_replicas (%d) <= replicas (%d): the autoscaler can never add a pod; raise max_replicas" $i $a.metric ($m.max_replicas | int64) ($m.replicas | int64)) -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{- /* poolserve.storageProblems: lint._storage's errors: the composed container's mounts (the runtime's, then the one
KServe adds for a storage_uri) must have distinct paths, and none may cover KServe's model directory. */ -}}
{{- define "poolserve.storageProblems" -}}
{{- $m := .model -}}{{- $s := .constants.storage -}}
{{- $mounts := include "poolserve.runtimeMounts" .spec | fromJsonArray -}}
{{- $uri := $m.storage_uri -}}
{{- $kserveVolumes := list $s.pvc_volume $s.download_volume $s.modelcar_volume -}}
{{- if $uri -}}
  {{- if eq $uri.scheme "oci" -}}
    {{- $mounts = append $mounts (dict "name" $s.modelcar_volume "mountPath" $s.modelcar_dir) -}}
  {{- else -}}
    {{- $mounts = append $mounts (dict "name" (ternary $s.pvc_volume $s.download_volume (eq $uri.scheme "pvc")) "mountPath" $s.model_dir) -}}
  {{- end -}}
{{- end -}}
{{- $out := list -}}
{{- $paths := list -}}{{- $byPath := dict -}}
{{- range $mounts -}}
  {{- $path := printf "/%s" (trimAll "/" (toString .mountPath)) -}}
  {{- if not (hasKey $byPath $path) }}{{ $paths = append $paths $path }}{{ $_ := set $byPath $path list }}{{ end -}}
  {{- $_ := set $byPath $path (append (get $byPath $path) .name) -}}
{{- end -}}
{{- range $path := $paths -}}
  {{- $names := get $byPath $path -}}
  {{- $kserve := false -}}
  {{- range $names }}{{ if has . $kserveVolumes }}{{ $kserve = true }}{{ end }}{{ end -}}
  {{- if and (gt (len $names) 1) (not (and $uri $kserve)) -}}
    {{- $out = append $out (printf "volumes %s are all mounted at %s: the API server refuses the pod (volumeMounts mountPath must be unique)" (join ", " $names) $path) -}}
  {{- end -}}
{{- end -}}
{{- if $uri -}}
  {{- $theirs := ternary $s.modelcar_dir $s.model_dir (eq $uri.scheme "oci") -}}
  {{- range $mounts -}}
    {{- if has .name $kserveVolumes }}{{ continue }}{{ end -}}
    {{- $mine := printf "/%s" (trimAll "/" (toString .mountPath)) -}}
    {{- $why := "" -}}
    {{- if eq $mine $theirs -}}
      {{- $why = printf "the runtime mounts a volume at %s, where KServe mounts the model for %s:// (AddModelMount compares volume names only): the API server refuses the pod, volumeMounts mountPath must be unique" $mine $uri.scheme -}}
    {{- else if or (eq $mine $s.model_dir) (hasPrefix (printf "%s/" $s.model_dir) $mine) -}}
      {{- $why = printf "the runtime mounts a volume at %s, inside %s where KServe puts the model for %s://: it hides part of the model" $mine $s.model_dir $uri.scheme -}}
    {{- end -}}
    {{- if $why -}}
      {{- $out = append $out (printf "storage_uri %s: volume %s: %s" $uri.uri .name $why) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}
