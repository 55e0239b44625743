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

{{/*
The registry's objects: "<fullname>-registry" (cut so that it stays a
63-character DNS label). Its pods carry app.kubernetes.io/name
"<name>-registry", so the runner's selectors (Service, PodDisruptionBudget,
NetworkPolicy, topology spread) never match them, and the runner
Deployment's immutable selector is unchanged.
*/}}
{{- define "ext-runner.registry.fullname" -}}
{{- printf "%s-registry" (include "ext-runner.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "ext-runner.registry.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-registry" (include "ext-runner.name" . | trunc 54 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ext-runner.registry.labels" -}}
helm.sh/chart: {{ include "ext-runner.chart" . }}
{{ include "ext-runner.registry.selectorLabels" . }}
app.kubernetes.io/component: registry
app.kubernetes.io/part-of: {{ include "ext-runner.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret that holds REGISTRY_TOKENS: registry.tokens.existingSecret, else the database's. */}}
{{- define "ext-runner.registry.tokensSecret" -}}
{{- default .Values.registry.database.existingSecret .Values.registry.tokens.existingSecret }}
{{- end }}

{{/* The Secret that holds RUNNER_REGISTRY_TOKEN: registry.runnerToken.existingSecret, else the tokens'. */}}
{{- define "ext-runner.registry.runnerTokenSecret" -}}
{{- default (include "ext-runner.registry.tokensSecret" .) .Values.registry.runnerToken.existingSecret }}
{{- end }}

{{/* In-cluster URL of the registry Service (NOTES.txt, the runners' RUNNER_UI_VALIDATE_URL and RUNNER_REVOCATIONS_URL). */}}
{{- define "ext-runner.registry.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "ext-runner.registry.fullname" .) .Release.Namespace (int .Values.registry.service.port) }}
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

{{/*
The disk helpers take the values that size one Deployment's volumes (.cache,
.data, .tmp): .Values for the runner, .Values.registry for the registry.
*/}}
{{/* emptyDir sizeLimit of RUNNER_CACHE_DIR in MiB: the cache budget plus headroom. */}}
{{- define "ext-runner.cacheSizeLimitMi" -}}
{{- add (int .cache.maxMiB) (int .cache.headroomMiB) }}
{{- end }}

{{/* Disk the pod writes at most: cache + data + /tmp volumes + 256 MiB for logs (MiB). */}}
{{- define "ext-runner.ephemeralStorageMi" -}}
{{- add (include "ext-runner.cacheSizeLimitMi" . | int) (int .data.sizeLimitMi) (int .tmp.sizeLimitMi) 256 }}
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

{{/*
Settings the chart owns; config.* must not set them. REGISTRY_DATABASE_URL,
REGISTRY_TOKENS and RUNNER_REGISTRY_TOKEN are secrets: they come from
registry.database, registry.tokens and registry.runnerToken (or extraEnv
secretKeyRefs), never from a ConfigMap.
*/}}
{{- define "ext-runner.reservedKeys" -}}
RUNNER_LISTEN RUNNER_PUBLIC_LISTEN PORT RUNNER_DATA_DIR RUNNER_CACHE_DIR RUNNER_MAX_CONCURRENCY RUNNER_MAX_MEMORY_MB RUNNER_CACHE_MAX_BYTES SIGNING_TRUST_BUNDLE RUNNER_SERVICE_TOKEN BUNDLE_STORAGE_ACCESS_KEY_ID BUNDLE_STORAGE_SECRET_ACCESS_KEY RUNNER_SECRETS_KEY RUNNER_SECRETS_KEY_FILE REGISTRY_DATABASE_URL REGISTRY_TOKENS RUNNER_REGISTRY_TOKEN
{{- end }}

{{/* Checks of values that a schema cannot express; fail the render early. */}}
{{- define "ext-runner.validate" -}}
{{- $reserved := splitList " " (include "ext-runner.reservedKeys" .) }}
{{- range $key, $value := .Values.config }}
{{- if has $key $reserved }}
{{- fail (printf "config.%s: set by the chart from other values (runner.*, cache.*, secret.*, registry.*); remove it from config" $key) }}
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
{{- $validateUrl := toString .Values.config.RUNNER_UI_VALIDATE_URL }}
{{- if and (not .Values.registry.enabled) (contains (printf "//%s" (include "ext-runner.registry.fullname" .)) $validateUrl) (contains "/v1/registry/installs/validate" $validateUrl) }}
{{- fail "config.RUNNER_UI_VALIDATE_URL: the registry's /v1/registry/installs/validate answers 401 without a registry token, and without registry.enabled the chart wires none (RUNNER_REGISTRY_TOKEN), so every UI asset request would be 503; use registry.enabled (it sets this URL and the token), or point it at a service that answers the runner without a token (README \"Helm\")" }}
{{- end }}
{{- if .Values.registry.enabled }}
{{- include "ext-runner.registry.validate" . }}
{{- end }}
{{- end }}

{{/*
registry.enabled: what the registry process would refuse at start-up, or
what would make its replicas disagree, fails the render instead.
*/}}
{{- define "ext-runner.registry.validate" -}}
{{- $_ := required "registry.database.existingSecret: required when registry.enabled: the name of a Secret whose key registry.database.key holds REGISTRY_DATABASE_URL=postgres://user:password@host:port/db (the registry Deployment runs on PostgreSQL only; an SQLite file on a pod's emptyDir would be one registry per pod)" .Values.registry.database.existingSecret }}
{{- if not .Values.registry.runnerToken.key }}
{{- fail "registry.runnerToken.key: required when registry.enabled: RUNNER_REGISTRY_TOKEN (a `runner`-scoped token of REGISTRY_TOKENS, e.g. fleet@runner=…) lets the runner pods poll the registry's revocation list; without it a revoke never reaches a runner pod (a fresh pod's local list is empty), so the kill switch would not work (README \"Helm\")" }}
{{- end }}
{{- if hasKey .Values.config "RUNNER_REVOCATIONS_URL" }}
{{- fail "config.RUNNER_REVOCATIONS_URL: with registry.enabled the chart points the runners at the registry's Service (/v1/registry/revocations); remove it from config" }}
{{- end }}
{{- if hasKey .Values.config "RUNNER_ROLES" }}
{{- fail "config.RUNNER_ROLES: with registry.enabled the chart sets RUNNER_ROLES per Deployment (runner, registry); remove it from config" }}
{{- end }}
{{- if contains "{tenant}" (toString .Values.config.BUNDLE_STORAGE_KEY_LAYOUT) }}
{{- fail (printf "config.BUNDLE_STORAGE_KEY_LAYOUT `%s` contains {tenant}: a runner-side layout, which the registry refuses (it publishes one bundle for every tenant)" .Values.config.BUNDLE_STORAGE_KEY_LAYOUT) }}
{{- end }}
{{- if not (hasPrefix "s3://" (toString .Values.config.BUNDLE_STORAGE_URL)) }}
{{- fail (printf "config.BUNDLE_STORAGE_URL `%s`: with registry.enabled it must be s3://…: http(s) stores are read-only, and a file store (the default) is each pod's own emptyDir, which the runner pods cannot read" (toString .Values.config.BUNDLE_STORAGE_URL)) }}
{{- end }}
{{- end }}
