{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "ext-runner.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name. The "-public" Service suffix must still fit in 63
characters, so names are cut at 56.
*/}}
{{- define "ext-runner.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ext-runner.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ext-runner.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ext-runner.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ext-runner.labels" -}}
helm.sh/chart: {{ include "ext-runner.chart" . }}
{{ include "ext-runner.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ext-runner.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ext-runner.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ext-runner.secretName" -}}
{{- default (include "ext-runner.fullname" .) .Values.secret.name }}
{{- end }}

{{- define "ext-runner.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Memory request and limit in MiB:
RUNNER_MAX_CONCURRENCY × RUNNER_MAX_MEMORY_MB + resources.memoryOverheadMi.
*/}}
{{- define "ext-runner.memoryMi" -}}
{{- add (mul (int .Values.runner.maxConcurrency) (int .Values.runner.maxMemoryMb)) (int .Values.resources.memoryOverheadMi) }}
{{- end }}

{{/* emptyDir sizeLimit of RUNNER_CACHE_DIR in MiB: the cache budget plus headroom. */}}
{{- define "ext-runner.cacheSizeLimitMi" -}}
{{- add (int .Values.cache.maxMiB) (int .Values.cache.headroomMiB) }}
{{- end }}

{{/* Disk the pod writes at most: cache + data + /tmp volumes + 256 MiB for logs (MiB). */}}
{{- define "ext-runner.ephemeralStorageMi" -}}
{{- add (include "ext-runner.cacheSizeLimitMi" . | int) (int .Values.data.sizeLimitMi) (int .Values.tmp.sizeLimitMi) 256 }}
{{- end }}

{{/*
terminationGracePeriodSeconds: preStop sleep + the shutdown grace (rounded up
to whole seconds) + 10 s for the process to flush and exit. Always longer
than --shutdown-grace-ms, so the kubelet's SIGKILL never cuts a drain short.
*/}}
{{- define "ext-runner.terminationGracePeriodSeconds" -}}
{{- add (int .Values.runner.preStopSleepSeconds) (div (add (int64 .Values.runner.shutdownGraceMs) 999) 1000) 10 }}
{{- end }}

{{- define "ext-runner.dataDir" -}}/var/lib/ext-runner{{- end }}
{{- define "ext-runner.cacheDir" -}}/var/cache/ext-runner{{- end }}

{{/* Settings the chart owns; config.* must not set them. */}}
{{- define "ext-runner.reservedKeys" -}}
RUNNER_LISTEN RUNNER_PUBLIC_LISTEN PORT RUNNER_DATA_DIR RUNNER_CACHE_DIR RUNNER_MAX_CONCURRENCY RUNNER_MAX_MEMORY_MB RUNNER_CACHE_MAX_BYTES SIGNING_TRUST_BUNDLE RUNNER_SERVICE_TOKEN BUNDLE_STORAGE_ACCESS_KEY_ID BUNDLE_STORAGE_SECRET_ACCESS_KEY RUNNER_SECRETS_KEY RUNNER_SECRETS_KEY_FILE
{{- end }}

{{/* Checks of values that a schema cannot express; fail the render early. */}}
{{- define "ext-runner.validate" -}}
{{- $reserved := splitList " " (include "ext-runner.reservedKeys" .) }}
{{- range $key, $value := .Values.config }}
{{- if has $key $reserved }}
{{- fail (printf "config.%s: set by the chart from other values (runner.*, cache.*, secret.*); remove it from config" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.runner.publicListener.enabled (eq (int .Values.runner.port) (int .Values.runner.publicListener.port)) }}
{{- fail "runner.publicListener.port must differ from runner.port" }}
{{- end }}
{{- if and .Values.secret.create (lt (len .Values.secret.serviceToken) 16) }}
{{- fail "secret.serviceToken: the runner requires tokens of at least 16 characters" }}
{{- end }}
{{- if and .Values.secret.create (not .Values.secret.trustBundle) }}
{{- fail "secret.trustBundle: required (PEM: PUBLIC KEY and/or CERTIFICATE blocks); SIGNING_TRUST_BUNDLE points at it" }}
{{- end }}
{{- end }}
