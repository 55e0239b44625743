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

{{/*
Which roles run where (values "mode"). Each helper renders "true" or
nothing, so `if include …` reads as a condition.
  allInOne:      one Deployment, RUNNER_ROLES=all.
  splitRegistry: the registry Deployment (mode split, registry.enabled).
  splitGateway:  the gateway Deployment (mode split, gateway.enabled).
  gatewayRuns:   the gateway role runs somewhere (either of the two modes).
  splitRoles:    the runner Deployment shares the work, RUNNER_ROLES=runner.
*/}}
{{- define "ext-runner.allInOne" -}}
{{- if eq .Values.mode "all-in-one" }}true{{ end }}
{{- end }}
{{- define "ext-runner.splitRegistry" -}}
{{- if and (ne .Values.mode "all-in-one") .Values.registry.enabled }}true{{ end }}
{{- end }}
{{- define "ext-runner.splitGateway" -}}
{{- if and (ne .Values.mode "all-in-one") .Values.gateway.enabled }}true{{ end }}
{{- end }}
{{- define "ext-runner.gatewayRuns" -}}
{{- if or (include "ext-runner.allInOne" .) (include "ext-runner.splitGateway" .) }}true{{ end }}
{{- end }}
{{- define "ext-runner.splitRoles" -}}
{{- if or (include "ext-runner.splitRegistry" .) (include "ext-runner.splitGateway" .) }}true{{ end }}
{{- end }}

{{/*
The gateway's objects: "<fullname>-gateway", pods labelled
app.kubernetes.io/name "<name>-gateway", so neither the runner's nor the
registry's selectors match them (and theirs do not match the gateway's).
*/}}
{{- define "ext-runner.gateway.fullname" -}}
{{- printf "%s-gateway" (include "ext-runner.fullname" . | trunc 55 | trimSuffix "-") }}
{{- end }}

{{- define "ext-runner.gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-gateway" (include "ext-runner.name" . | trunc 55 | trimSuffix "-") }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ext-runner.gateway.labels" -}}
helm.sh/chart: {{ include "ext-runner.chart" . }}
{{ include "ext-runner.gateway.selectorLabels" . }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: {{ include "ext-runner.name" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* RUNNER_BASE_URL of the gateway pods: the runner's internal Service. */}}
{{- define "ext-runner.runner.url" -}}
{{- printf "http://%s.%s.svc:%d" (include "ext-runner.fullname" .) .Release.Namespace (int .Values.service.port) }}
{{- end }}

{{/* GATEWAY_REGISTRY_URL: this release's registry Service, else gateway.registryUrl. */}}
{{- define "ext-runner.gateway.registryUrl" -}}
{{- if include "ext-runner.splitRegistry" . }}
{{- include "ext-runner.registry.url" . }}
{{- else }}
{{- trimSuffix "/" .Values.gateway.registryUrl }}
{{- end }}
{{- end }}

{{/* GATEWAY_RUNNER_TOKEN's Secret and key: gateway.runnerToken, else the chart's Secret and its service-token key. */}}
{{- define "ext-runner.gateway.runnerTokenSecret" -}}
{{- default (include "ext-runner.secretName" .) .Values.gateway.runnerToken.existingSecret }}
{{- end }}
{{- define "ext-runner.gateway.runnerTokenKey" -}}
{{- default .Values.secret.keys.serviceToken .Values.gateway.runnerToken.key }}
{{- end }}

{{/* GATEWAY_REGISTRY_TOKEN's Secret: gateway.registryToken.existingSecret, else (registry.enabled) the registry's tokens Secret. */}}
{{- define "ext-runner.gateway.registryTokenSecret" -}}
{{- if .Values.gateway.registryToken.existingSecret }}
{{- .Values.gateway.registryToken.existingSecret }}
{{- else if include "ext-runner.splitRegistry" . }}
{{- include "ext-runner.registry.tokensSecret" . }}
{{- end }}
{{- end }}

{{/* The runners' grant JWKS Secret (when not a ConfigMap): gateway.grantKey.jwks.existingSecret, else the private key's. */}}
{{- define "ext-runner.gateway.jwksSecret" -}}
{{- default .Values.gateway.grantKey.existingSecret .Values.gateway.grantKey.jwks.existingSecret }}
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
{{/* Grant keys: the gateway's private key, or the runners' public JWKS (read-only Secret or ConfigMap mounts). */}}
{{- define "ext-runner.grantDir" -}}/etc/ext-runner/grant{{- end }}
{{/* GATEWAY_JWKS_FILE's directory: the end-user token keys. */}}
{{- define "ext-runner.userJwksDir" -}}/etc/ext-runner/user-jwks{{- end }}

{{/*
Settings the chart owns; config.* must not set them. REGISTRY_DATABASE_URL,
REGISTRY_TOKENS and RUNNER_REGISTRY_TOKEN are secrets: they come from
registry.database, registry.tokens and registry.runnerToken (or extraEnv
secretKeyRefs), never from a ConfigMap.
*/}}
{{- define "ext-runner.reservedKeys" -}}
RUNNER_LISTEN RUNNER_PUBLIC_LISTEN PORT RUNNER_DATA_DIR RUNNER_CACHE_DIR RUNNER_MAX_CONCURRENCY RUNNER_MAX_MEMORY_MB RUNNER_CACHE_MAX_BYTES SIGNING_TRUST_BUNDLE RUNNER_SERVICE_TOKEN BUNDLE_STORAGE_ACCESS_KEY_ID BUNDLE_STORAGE_SECRET_ACCESS_KEY RUNNER_SECRETS_KEY RUNNER_SECRETS_KEY_FILE REGISTRY_DATABASE_URL REGISTRY_TOKENS RUNNER_REGISTRY_TOKEN
{{- end }}

{{/*
Settings the chart owns when the gateway runs (gateway.* sets them; the
secrets among them come from Secrets): neither config.* nor gateway.config
may set them.
*/}}
{{- define "ext-runner.gatewayKeys" -}}
RUNNER_ROLES RUNNER_BASE_URL RUNNER_PUBLIC_BASE RUNNER_GRANT_KEYS GATEWAY_REGISTRY_URL GATEWAY_RUNNER_TOKEN GATEWAY_REGISTRY_TOKEN GATEWAY_GRANT_KEY GATEWAY_JWT_SECRET GATEWAY_JWKS_URL GATEWAY_JWKS_FILE
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
{{- if and (not (include "ext-runner.splitRegistry" .)) (contains (printf "//%s" (include "ext-runner.registry.fullname" .)) $validateUrl) (contains "/v1/registry/installs/validate" $validateUrl) }}
{{- fail "config.RUNNER_UI_VALIDATE_URL: the registry's /v1/registry/installs/validate answers 401 without a registry token, and without registry.enabled the chart wires none (RUNNER_REGISTRY_TOKEN), so every UI asset request would be 503; use registry.enabled (it sets this URL and the token), or point it at a service that answers the runner without a token (README \"Helm\")" }}
{{- end }}
{{- if and (or (include "ext-runner.splitRoles" .) (include "ext-runner.allInOne" .)) (hasKey .Values.config "RUNNER_ROLES") }}
{{- fail (printf "config.RUNNER_ROLES: with %s the chart sets RUNNER_ROLES per Deployment (runner, registry, gateway, or all); remove it from config" (ternary "mode all-in-one" "registry.enabled or gateway.enabled" (eq .Values.mode "all-in-one"))) }}
{{- end }}
{{- if or (include "ext-runner.splitRegistry" .) (include "ext-runner.allInOne" .) }}
{{- include "ext-runner.registry.validate" . }}
{{- end }}
{{- if include "ext-runner.gatewayRuns" . }}
{{- include "ext-runner.gateway.validate" . }}
{{- end }}
{{- end }}

{{/*
The registry role (registry.enabled, or mode all-in-one): what the
registry process would refuse at start-up, or what would make its replicas
disagree, fails the render instead.
*/}}
{{- define "ext-runner.registry.validate" -}}
{{- $aio := include "ext-runner.allInOne" . }}
{{- $where := ternary "in mode all-in-one (the registry role runs in every pod)" "when registry.enabled" (eq .Values.mode "all-in-one") }}
{{- $_ := required (printf "registry.database.existingSecret: required %s: the name of a Secret whose key registry.database.key holds REGISTRY_DATABASE_URL=postgres://user:password@host:port/db (the chart's registry runs on PostgreSQL only; an SQLite file on a pod's emptyDir would be one registry per pod, lost with it)" $where) .Values.registry.database.existingSecret }}
{{- if and (not $aio) (not .Values.registry.runnerToken.key) }}
{{- fail "registry.runnerToken.key: required when registry.enabled: RUNNER_REGISTRY_TOKEN (a `runner`-scoped token of REGISTRY_TOKENS, e.g. fleet@runner=…) lets the runner pods poll the registry's revocation list; without it a revoke never reaches a runner pod (a fresh pod's local list is empty), so the kill switch would not work (README \"Helm\")" }}
{{- end }}
{{- if hasKey .Values.config "RUNNER_REVOCATIONS_URL" }}
{{- fail (ternary "config.RUNNER_REVOCATIONS_URL: in mode all-in-one the runner asks the registry in the same process (a revoke applies at once); remove it from config" "config.RUNNER_REVOCATIONS_URL: with registry.enabled the chart points the runners at the registry's Service (/v1/registry/revocations); remove it from config" (eq .Values.mode "all-in-one")) }}
{{- end }}
{{- if contains "{tenant}" (toString .Values.config.BUNDLE_STORAGE_KEY_LAYOUT) }}
{{- fail (printf "config.BUNDLE_STORAGE_KEY_LAYOUT `%s` contains {tenant}: a runner-side layout, which the registry refuses (it publishes one bundle for every tenant)" .Values.config.BUNDLE_STORAGE_KEY_LAYOUT) }}
{{- end }}
{{- if not (hasPrefix "s3://" (toString .Values.config.BUNDLE_STORAGE_URL)) }}
{{- fail (printf "config.BUNDLE_STORAGE_URL `%s`: %s it must be s3://…: http(s) stores are read-only, and a file store (the default) is each pod's own emptyDir, which the other pods cannot read" (toString .Values.config.BUNDLE_STORAGE_URL) $where) }}
{{- end }}
{{- end }}

{{/*
The gateway role (gateway.enabled in mode split, or mode all-in-one): a
gateway that could not authenticate users, reach the registry or sign
grants fails the render, not its pods.
*/}}
{{- define "ext-runner.gateway.validate" -}}
{{- $g := .Values.gateway }}
{{- $aio := include "ext-runner.allInOne" . }}
{{- $owned := splitList " " (include "ext-runner.gatewayKeys" .) }}
{{- range $key, $value := .Values.config }}
{{- if or (has $key $owned) (hasPrefix "GATEWAY_" $key) }}
{{- fail (printf "config.%s: with the gateway the chart sets it from gateway.* (or it belongs in gateway.config); remove it from config" $key) }}
{{- end }}
{{- end }}
{{- $reserved := concat (splitList " " (include "ext-runner.reservedKeys" .)) $owned }}
{{- range $key, $value := $g.config }}
{{- if has $key $reserved }}
{{- fail (printf "gateway.config.%s: set by the chart from other values (gateway.*, secret.*, registry.*); remove it from gateway.config" $key) }}
{{- end }}
{{- end }}
{{- $u := $g.userTokens }}
{{- if and $u.jwksFile.configMap $u.jwksFile.existingSecret }}
{{- fail "gateway.userTokens.jwksFile: set configMap or existingSecret, not both (GATEWAY_JWKS_FILE is one file)" }}
{{- end }}
{{- if not (or $u.jwtSecret.existingSecret $u.jwksUrl $u.jwksFile.configMap $u.jwksFile.existingSecret) }}
{{- fail "gateway.userTokens: the gateway authenticates every end user and has no key to check their tokens with: set gateway.userTokens.jwtSecret.existingSecret (GATEWAY_JWT_SECRET, HS256), gateway.userTokens.jwksUrl (GATEWAY_JWKS_URL) or gateway.userTokens.jwksFile (GATEWAY_JWKS_FILE, ES256/RS256/EdDSA keys)" }}
{{- end }}
{{- if not $g.publicBase }}
{{- fail (printf "gateway.publicBase: required with the gateway: RUNNER_PUBLIC_BASE, the browser-facing origin of the runner's UI listener (the Ingress or LoadBalancer in front of %s-public, e.g. https://ext-ui.example.com); GET /api/ext-ui/{extension} answers iframe URLs on it" (include "ext-runner.fullname" .)) }}
{{- end }}
{{- if not $aio }}
{{- if and .Values.registry.enabled $g.registryUrl }}
{{- fail (printf "gateway.registryUrl: with registry.enabled the gateway asks this release's registry (%s); set one of the two" (include "ext-runner.registry.url" .)) }}
{{- end }}
{{- if not (or .Values.registry.enabled $g.registryUrl) }}
{{- fail "gateway.enabled: the gateway resolves every call at the registry (GATEWAY_REGISTRY_URL) and there is none: set registry.enabled (the chart then points it at <fullname>-registry), or gateway.registryUrl to a registry of your own" }}
{{- end }}
{{- if not $g.registryToken.key }}
{{- fail "gateway.registryToken.key: required when gateway.enabled: GATEWAY_REGISTRY_TOKEN, a `gateway`-scoped token of REGISTRY_TOKENS (e.g. edge@gateway=…), which the gateway presents for install lookups and the execution log" }}
{{- end }}
{{- if not (include "ext-runner.gateway.registryTokenSecret" .) }}
{{- fail "gateway.registryToken.existingSecret: required with gateway.registryUrl: the Secret whose key gateway.registryToken.key holds GATEWAY_REGISTRY_TOKEN, a `gateway`-scoped token of that registry" }}
{{- end }}
{{- if not $g.grantKey.existingSecret }}
{{- fail "gateway.grantKey.existingSecret: required when gateway.enabled: the Secret with the execution grant key (`ext-runner grant keygen --out grant.pem`, then kubectl create secret generic ext-runner-grant --from-file=grant.pem --from-file=grant.jwks.json); the gateway signs every envelope with it (GATEWAY_GRANT_KEY) and the runners accept only envelopes it signed (RUNNER_GRANT_KEYS)" }}
{{- end }}
{{- if and $g.grantKey.jwks.configMap $g.grantKey.jwks.existingSecret }}
{{- fail "gateway.grantKey.jwks: set configMap or existingSecret, not both (RUNNER_GRANT_KEYS reads one JWKS file)" }}
{{- end }}
{{- if and .Values.secret.create (eq (include "ext-runner.gateway.runnerTokenSecret" .) (include "ext-runner.secretName" .)) (eq (include "ext-runner.gateway.runnerTokenKey" .) .Values.secret.keys.serviceToken) (contains "," .Values.secret.serviceToken) }}
{{- fail "gateway.runnerToken: secret.serviceToken lists several tokens, and GATEWAY_RUNNER_TOKEN is one; point gateway.runnerToken at a Secret key that holds one of them" }}
{{- end }}
{{- if not .Values.runner.publicListener.enabled }}
{{- fail "runner.publicListener.enabled: required with gateway.enabled: the iframe URLs the gateway builds (RUNNER_PUBLIC_BASE) load UI assets from the runner's public listener, and the internal port admits only the gateway's pods" }}
{{- end }}
{{- end }}
{{- end }}
