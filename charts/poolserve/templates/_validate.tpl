{{- /*
The config's rules that values.schema.json cannot say, and without which the chart would install something
silently wrong: duplicate names, each model's runtime (its task, the runtime it names or the one of its task,
that runtime's device), name lengths with the release namespace, replicas against max_replicas. Each fails with
poolserve's own message, without its file:line. Helm checks the schema (the rules one item can say) before any
template runs; everything else is `poolserve lint -c values.yaml` (docs/reference/rules.md: which rule is where).
*/ -}}

{{- /* poolserve.validateValues: .spec (the config, defaults filled in), .catalog, .constants; the problems as a list
of "key: message", in poolserve's order. */ -}}
{{- define "poolserve.validateValues" -}}
{{- $spec := .spec -}}{{- $c := .constants -}}{{- $ns := $spec.namespace -}}
{{- $out := list -}}
{{- $runtimeIndex := dict -}}{{- $runtimeNames := list -}}
{{- range $i, $rt := $spec.runtimes -}}
  {{- if hasKey $runtimeIndex $rt.name -}}
    {{- $out = append $out (printf "runtimes[%d].name: duplicate runtime name %s" $i (include "poolserve.repr" $rt.name)) -}}
  {{- else -}}
    {{- $runtimeNames = append $runtimeNames $rt.name -}}
  {{- end -}}
  {{- $_ := set $runtimeIndex $rt.name $i -}}
{{- end -}}
{{- $modelNames := dict -}}
{{- range $i, $m := $spec.models -}}
  {{- $at := printf "models[%d]" $i -}}
  {{- $name := include "poolserve.repr" $m.name -}}
  {{- if hasKey $modelNames $m.name }}{{ $out = append $out (printf "%s.name: duplicate model name %s" $at $name) }}{{ end -}}
  {{- $_ := set $modelNames $m.name true -}}
  {{- /* The schema holds the name to KServe's pattern and 48 characters; the namespace is the release's. */ -}}
  {{- $long := add (len $m.name) (len $ns) -}}
  {{- if gt $long (int $c.max_name_plus_namespace) -}}
    {{- $out = append $out (printf "%s.name: %s + namespace %s is %d characters; KServe allows %d (host label <name>-predictor-<namespace> must fit 63)" $at $name (include "poolserve.repr" $ns) $long (int $c.max_name_plus_namespace)) -}}
  {{- end -}}
  {{- if and (eq $spec.runtime_mode "per-model") (hasKey $runtimeIndex $m.name) -}}
    {{- $out = append $out (printf "%s.name: %s clashes with a runtime of the same name in per-model mode" $at $name) -}}
  {{- end -}}
  {{- $entry := get $.catalog (lower $m.model_id) -}}
  {{- $task := $m.task | default (and $entry $entry.task) -}}
  {{- if not $task -}}
    {{- $out = append $out (printf "%s.model_id: %s is not in the catalog: set task: embed or task: score" $at (include "poolserve.repr" $m.model_id)) -}}
    {{- continue -}}
  {{- end -}}
  {{- /* The model's runtime: the one it names, else the first of its task (its only one). */ -}}
  {{- $rtIndex := -1 -}}
  {{- if not (kindIs "invalid" $m.runtime) -}}
    {{- $named := include "poolserve.repr" $m.runtime -}}
    {{- if not (hasKey $runtimeIndex $m.runtime) -}}
      {{- $out = append $out (printf "%s.runtime: runtime %s is not defined under runtimes (defined: %s)" $at $named (join ", " $runtimeNames | default "none")) -}}
    {{- else -}}
      {{- $rtIndex = get $runtimeIndex $m.runtime | int -}}
      {{- $rtTask := (index $spec.runtimes $rtIndex).task -}}
      {{- if ne $rtTask $task -}}
        {{- $out = append $out (printf "%s.runtime: model task is %s but runtime %s serves %s" $at (include "poolserve.repr" $task) $named (include "poolserve.repr" $rtTask)) -}}
      {{- end -}}
    {{- end -}}
  {{- else -}}
    {{- $candidates := list -}}
    {{- range $j, $rt := $spec.runtimes -}}
      {{- if eq $rt.task $task -}}
        {{- $candidates = append $candidates $rt.name -}}
        {{- if lt $rtIndex 0 }}{{ $rtIndex = $j }}{{ end -}}
      {{- end -}}
    {{- end -}}
    {{- if not $candidates -}}
      {{- $out = append $out (printf "%s.task: %s: task %s needs a runtime with task: %s; none under runtimes" $at $m.name (include "poolserve.repr" $task) $task) -}}
    {{- else if gt (len $candidates) 1 -}}
      {{- $out = append $out (printf "%s.runtime: %s: several runtimes serve %s (%s): name one with runtime:" $at $m.name (include "poolserve.repr" $task) (join ", " $candidates)) -}}
    {{- end -}}
  {{- end -}}
  {{- /* A device: cpu runtime takes no GPU or MIG slice (the chart would drop them); a MIG slice is a GPU. */ -}}
  {{- $mig := (include "poolserve.first" (list $m.mig_profile $spec.defaults.mig_profile) | fromJson).v -}}
  {{- if and (ge $rtIndex 0) (eq (index $spec.runtimes (max $rtIndex 0)).device "cpu") -}}
    {{- $rtName := include "poolserve.repr" (index $spec.runtimes $rtIndex).name -}}
    {{- if $m.gpus -}}
      {{- $out = append $out (printf "%s.gpus: runtime %s has device: cpu: its models cannot use GPUs (set gpus: 0, or use a device: gpu runtime)" $at $rtName) -}}
    {{- end -}}
    {{- if $m.mig_profile -}}
      {{- $out = append $out (printf "%s.mig_profile: runtime %s has device: cpu: no MIG slice" $at $rtName) -}}
    {{- end -}}
  {{- else if not (kindIs "invalid" $mig) -}}
    {{- $gpus := (include "poolserve.first" (list $m.gpus $spec.defaults.gpus) | fromJson).v -}}
    {{- if and (not (kindIs "invalid" $gpus)) (eq ($gpus | float64) 0.0) -}}
      {{- $out = append $out (printf "%s.gpus: gpus: 0 with mig_profile %s: a MIG slice is a GPU (unset gpus, or set it to the number of slices)" $at (include "poolserve.repr" $mig)) -}}
    {{- end -}}
  {{- end -}}
  {{- $replicas := (include "poolserve.first" (list $m.replicas $spec.defaults.replicas 1) | fromJson).v -}}
  {{- $maxReplicas := (include "poolserve.first" (list $m.max_replicas $spec.defaults.max_replicas $replicas) | fromJson).v -}}
  {{- if lt ($maxReplicas | float64) ($replicas | float64) -}}
    {{- $out = append $out (printf "%s.max_replicas: max_replicas %d is below replicas %d" $at ($maxReplicas | int64) ($replicas | int64)) -}}
  {{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}
