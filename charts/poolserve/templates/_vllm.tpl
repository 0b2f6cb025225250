{{- /*
vLLM command lines per vLLM version, as src/poolserve/vllm/args.py writes them: the ServingRuntime carries
the runtime's args, the InferenceService the model's, and KServe runs runtime args + model args.
The versions at which flags changed come from vllm/args.py through _generated.tpl.
*/ -}}

{{- /* poolserve.json: compact JSON with sorted keys, as json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False) writes it (Go's encoder escapes <, >, & and U+2028/9; Python's does not). */ -}}
{{- define "poolserve.json" -}}
{{- toJson . | replace "\\u003c" "<" | replace "\\u003e" ">" | replace "\\u0026" "&" | replace "\\u2028" "\u2028" | replace "\\u2029" "\u2029" -}}
{{- end }}

{{- /* poolserve.g: a number as Python's f"{x:g}" writes it (0.3 -> 0.3, 1.0 -> 1). */ -}}
{{- define "poolserve.g" -}}
{{- printf "%.6g" (float64 .) -}}
{{- end }}

{{- /* poolserve.taskArgs: vllm.task_args, the flag that selects the pooling runner: --runner=pooling since
0.10.1, --task=embed|score before (removed in 0.13), --task=embedding in 0.6.4. */ -}}
{{- define "poolserve.taskArgs" -}}
{{- $v := .constants.versions -}}
{{- if ge .version_key (include "poolserve.versionKey" $v.runner_flag) -}}
{{- toJson (list "--runner=pooling") -}}
{{- else if ge .version_key (include "poolserve.versionKey" $v.task_embed_score) -}}
{{- toJson (list (printf "--task=%s" .task)) -}}
{{- else -}}
{{- toJson (list "--task=embedding") -}}
{{- end -}}
{{- end }}

{{- /* poolserve.runtimeArgs: vllm.runtime_args, what every model on the runtime shares. */ -}}
{{- define "poolserve.runtimeArgs" -}}
{{- $rt := .runtime -}}
{{- $args := list (printf "--port=%d" (.constants.port | int)) -}}
{{- $args = concat $args (include "poolserve.taskArgs" (dict "task" $rt.task "version_key" $rt.version_key "constants" .constants) | fromJsonArray) -}}
{{- if $rt.dtype }}{{ $args = append $args (printf "--dtype=%s" $rt.dtype) }}{{ end -}}
{{- if not (kindIs "invalid" $rt.gpu_memory_utilization) -}}
  {{- $args = append $args (printf "--gpu-memory-utilization=%s" (include "poolserve.g" $rt.gpu_memory_utilization)) -}}
{{- end -}}
{{- if $rt.enforce_eager }}{{ $args = append $args "--enforce-eager" }}{{ end -}}
{{- toJson (concat $args $rt.extra_args) -}}
{{- end }}

{{- /* poolserve.modelArgs: vllm.model_args, the model and everything model-specific. The model is served under its
Hugging Face id and the InferenceService name (KServe fills in the .Name placeholder). */ -}}
{{- define "poolserve.modelArgs" -}}
{{- $m := .model -}}
{{- /* `vllm serve` takes the model first, in the InferenceService's command (poolserve.modelCommand); the api_server
module only as --model. */ -}}
{{- $args := list -}}
{{- if lt $m.version_key (include "poolserve.versionKey" .constants.versions.serve_entrypoint) -}}
  {{- $args = append $args (printf "--model=%s" (include "poolserve.modelSource" (dict "model" $m "constants" .constants))) -}}
{{- end -}}
{{- $args = concat $args (list "--served-model-name" $m.model_id "{{.Name}}") -}}
{{- if not (kindIs "invalid" $m.max_model_len) }}{{ $args = append $args (printf "--max-model-len=%d" ($m.max_model_len | int64)) }}{{ end -}}
{{- if $m.dtype }}{{ $args = append $args (printf "--dtype=%s" $m.dtype) }}{{ end -}}
{{- if not (kindIs "invalid" $m.gpu_memory_utilization) -}}
  {{- $args = append $args (printf "--gpu-memory-utilization=%s" (include "poolserve.g" $m.gpu_memory_utilization)) -}}
{{- end -}}
{{- if $m.trust_remote_code }}{{ $args = append $args "--trust-remote-code" }}{{ end -}}
{{- if $m.convert }}{{ $args = append $args (printf "--convert=%s" $m.convert) }}{{ end -}}
{{- if $m.hf_overrides }}{{ $args = append $args (printf "--hf-overrides=%s" (include "poolserve.json" $m.hf_overrides)) }}{{ end -}}
{{- if $m.pooler_config -}}
  {{- /* --pooler-config since 0.11.0, --override-pooler-config before. */ -}}
  {{- $flag := ternary "--pooler-config" "--override-pooler-config" (ge $m.version_key (include "poolserve.versionKey" .constants.versions.pooler_config)) -}}
  {{- $args = append $args (printf "%s=%s" $flag (include "poolserve.json" $m.pooler_config)) -}}
{{- end -}}
{{- toJson (concat $args $m.extra_args) -}}
{{- end }}

{{- /* poolserve.modelSource: vllm.model_source, what vLLM loads: the Hugging Face id (through HF_HOME on the cache PVC),
or /mnt/models where KServe puts a storage_uri's model. */ -}}
{{- define "poolserve.modelSource" -}}
{{- ternary .constants.storage.model_dir .model.model_id (not (empty .model.storage_uri)) -}}
{{- end }}

{{- /* poolserve.command: vllm.command, the server command for a version key: `vllm serve` from 0.11.1, the
api_server module before. */ -}}
{{- define "poolserve.command" -}}
{{- $c := .constants -}}
{{- toJson (ternary $c.serve_command $c.api_server_command (ge .version_key (include "poolserve.versionKey" $c.versions.serve_entrypoint))) -}}
{{- end }}

{{- /* poolserve.modelCommand: vllm.model_command, the InferenceService's command as {"v": [...]}, or {} to keep the
runtime's. `vllm serve` refuses --served-model-name before the model (vllm#34973), and KServe appends the
model's args after the runtime's, so the model goes into a command of its own, which replaces the runtime's
whole. An older per-model image on a newer runtime gets the api_server module back. */ -}}
{{- define "poolserve.modelCommand" -}}
{{- $c := .constants -}}{{- $m := .model -}}
{{- $serve := include "poolserve.versionKey" $c.versions.serve_entrypoint -}}
{{- if ge $m.version_key $serve -}}
  {{- toJson (dict "v" (append $c.serve_command (include "poolserve.modelSource" (dict "model" $m "constants" $c)))) -}}
{{- else if ge $m.runtime.version_key $serve -}}
  {{- toJson (dict "v" $c.api_server_command) -}}
{{- else -}}
  {{- "{}" -}}
{{- end -}}
{{- end }}
