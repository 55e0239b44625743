{{/*
What the runner, registry and gateway Deployments share, written once: the
ConfigMap's settings, the Secret's variables, the pod and container
security, probes, drain, volumes and placement. Each template takes the
root context, or a dict with "root" and the part that differs ("role":
runner, registry or gateway; in mode all-in-one the runner Deployment is
the one that runs every role).
*/}}

{{/*
ConfigMap data of the runner or the registry Deployment: (dict "root" $
"role" "runner"|"registry"). The registry gets its own listener, no public
listener, one execution slot (it executes nothing; the engine it still
builds stays small) and its own cache budget; everything else, config.*
included, is the same for both, so both pods read the same bundle store and
trust bundle. RUNNER_ROLES is set only when a role runs apart (unset means
runner), or to `all` in mode all-in-one, whose one ConfigMap also carries
the gateway's settings (ext-runner.gateway.settings) and gateway.config.
*/}}
{{- define "ext-runner.configData" -}}
{{- $ := .root }}
{{- $runner := eq .role "runner" }}
{{- $aio := and $runner (include "ext-runner.allInOne" $) }}
{{- $disk := ternary $.Values $.Values.registry $runner }}
RUNNER_LISTEN: {{ printf "0.0.0.0:%d" (int (ternary $.Values.runner.port $.Values.registry.port $runner)) | quote }}
{{- if and $runner $.Values.runner.publicListener.enabled }}
RUNNER_PUBLIC_LISTEN: {{ printf "0.0.0.0:%d" (int $.Values.runner.publicListener.port) | quote }}
{{- end }}
RUNNER_DATA_DIR: {{ include "ext-runner.dataDir" $ | quote }}
RUNNER_CACHE_DIR: {{ include "ext-runner.cacheDir" $ | quote }}
{{- if $runner }}
RUNNER_MAX_CONCURRENCY: {{ $.Values.runner.maxConcurrency | int | toString | quote }}
RUNNER_MAX_MEMORY_MB: {{ $.Values.runner.maxMemoryMb | int | toString | quote }}
{{- else }}
RUNNER_MAX_CONCURRENCY: "1"
{{- end }}
RUNNER_CACHE_MAX_BYTES: {{ printf "%dMiB" (int $disk.cache.maxMiB) | quote }}
SIGNING_TRUST_BUNDLE: {{ printf "%s/%s" (trimSuffix "/" $.Values.trustBundleMountPath) $.Values.secret.keys.trustBundle | quote }}
{{- if $aio }}
{{- /* Every role in one process: revocations, install checks and the gateway's calls stay in-process, grants use a key the process makes. */}}
RUNNER_ROLES: "all"
{{- include "ext-runner.gateway.settings" $ }}
{{- else if include "ext-runner.splitRoles" $ }}
RUNNER_ROLES: {{ .role | quote }}
{{- end }}
{{- if and $runner (include "ext-runner.splitRegistry" $) }}
{{- /* The runners ask the registry's Service, with RUNNER_REGISTRY_TOKEN (ext-runner.runnerRegistryEnv). */}}
RUNNER_REVOCATIONS_URL: {{ printf "%s/v1/registry/revocations" (include "ext-runner.registry.url" $) | quote }}
{{- if eq (toString $.Values.config.RUNNER_UI_VALIDATE_URL) "" }}
RUNNER_UI_VALIDATE_URL: {{ printf "%s/v1/registry/installs/validate" (include "ext-runner.registry.url" $) | quote }}
{{- end }}
{{- end }}
{{- if and $runner (include "ext-runner.splitGateway" $) }}
{{- /* Only envelopes the gateway signed run (ext-runner.grantVolume mounts the public JWKS). */}}
RUNNER_GRANT_KEYS: {{ printf "%s/%s" (include "ext-runner.grantDir" $) $.Values.gateway.grantKey.jwks.key | quote }}
{{- end }}
{{- $settings := deepCopy $.Values.config }}
{{- if $aio }}
{{- $settings = merge $settings (deepCopy $.Values.gateway.config) }}
{{- end }}
{{- range $key, $value := $settings }}
{{- if ne (toString $value) "" }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The gateway's own settings, in its ConfigMap (mode split) or in the one
ConfigMap (mode all-in-one): the iframe base and where end-user token keys
come from. GATEWAY_JWT_SECRET is a secretKeyRef (ext-runner.gateway.userEnv).
*/}}
{{- define "ext-runner.gateway.settings" -}}
{{- $u := .Values.gateway.userTokens }}
RUNNER_PUBLIC_BASE: {{ trimSuffix "/" .Values.gateway.publicBase | quote }}
{{- with $u.jwksUrl }}
GATEWAY_JWKS_URL: {{ . | quote }}
{{- end }}
{{- if or $u.jwksFile.configMap $u.jwksFile.existingSecret }}
GATEWAY_JWKS_FILE: {{ printf "%s/%s" (include "ext-runner.userJwksDir" .) $u.jwksFile.key | quote }}
{{- end }}
{{- end }}

{{/*
ConfigMap data of the gateway Deployment (mode split): its listener, the
runner's and the registry's Services, the grant key's path, the gateway's
settings and gateway.config. Not config.*: the gateway reads no bundle
store, trust bundle or runner limit. One execution slot and a small cache,
like the registry: the process still builds them.
*/}}
{{- define "ext-runner.gateway.configData" -}}
{{- $g := .Values.gateway }}
RUNNER_ROLES: "gateway"
RUNNER_LISTEN: {{ printf "0.0.0.0:%d" (int $g.port) | quote }}
RUNNER_DATA_DIR: {{ include "ext-runner.dataDir" . | quote }}
RUNNER_CACHE_DIR: {{ include "ext-runner.cacheDir" . | quote }}
RUNNER_MAX_CONCURRENCY: "1"
RUNNER_CACHE_MAX_BYTES: {{ printf "%dMiB" (int $g.cache.maxMiB) | quote }}
RUNNER_BASE_URL: {{ include "ext-runner.runner.url" . | quote }}
GATEWAY_REGISTRY_URL: {{ include "ext-runner.gateway.registryUrl" . | quote }}
GATEWAY_GRANT_KEY: {{ printf "%s/%s" (include "ext-runner.grantDir" .) $g.grantKey.key | quote }}
{{- include "ext-runner.gateway.settings" . }}
{{- range $key, $value := $g.config }}
{{- if ne (toString $value) "" }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Variables from the chart's Secret, for both roles. */}}
{{- define "ext-runner.secretEnv" -}}
{{- $secret := include "ext-runner.secretName" . -}}
- name: RUNNER_SERVICE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secret.keys.serviceToken }}
- name: BUNDLE_STORAGE_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secret.keys.bundleStorageAccessKeyId }}
      optional: true
- name: BUNDLE_STORAGE_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secret.keys.bundleStorageSecretAccessKey }}
      optional: true
- name: RUNNER_SECRETS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .Values.secret.keys.secretsKey }}
      optional: true
{{- end }}

{{/* Pod spec fields before the containers, for both roles. */}}
{{- define "ext-runner.podSpecHead" -}}
serviceAccountName: {{ include "ext-runner.serviceAccountName" . }}
automountServiceAccountToken: false
# No <SERVICE>_PORT/_SERVICE_HOST variables: a Service named "runner"
# would inject RUNNER_* names, which the runner refuses at start-up.
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
# > preStop sleep + --shutdown-grace-ms: in-flight executions drain
# before the kubelet's SIGKILL.
terminationGracePeriodSeconds: {{ include "ext-runner.terminationGracePeriodSeconds" . }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- end }}

{{/* The container's image and arguments, for both roles. */}}
{{- define "ext-runner.containerImage" -}}
image: {{ include "ext-runner.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
# The image's entrypoint is `ext-runner serve`.
args:
  - --shutdown-grace-ms={{ int64 .Values.runner.shutdownGraceMs }}
{{- end }}

{{/*
Container resources: (dict "memoryMi" N "cpu" {request, limit} "disk" the
volume sizes "why" a comment on the memory). Memory request = limit.
*/}}
{{- define "ext-runner.resources" -}}
{{- $memory := printf "%sMi" (toString .memoryMi) }}
{{- $disk := printf "%sMi" (include "ext-runner.ephemeralStorageMi" .disk) }}
# {{ .why }}
requests:
  cpu: {{ .cpu.request | quote }}
  memory: {{ $memory }}
  ephemeral-storage: {{ $disk }}
limits:
  memory: {{ $memory }}
  ephemeral-storage: {{ $disk }}
  {{- with .cpu.limit }}
  cpu: {{ . | quote }}
  {{- end }}
{{- end }}

{{/*
Probes, drain, container security and mounts: (dict "root" $ "role" …).
Every role mounts the data, cache and /tmp emptyDirs; the runner and the
registry the trust bundle; the runner (gateway.enabled) the grant JWKS,
the gateway the grant's private key; whichever process runs the gateway
role the end-user JWKS file (gateway.userTokens.jwksFile). All read-only.
*/}}
{{- define "ext-runner.containerRuntime" -}}
{{- $ := .root }}
startupProbe:
  httpGet:
    path: {{ $.Values.probes.startup.path }}
    port: http
  periodSeconds: {{ $.Values.probes.startup.periodSeconds }}
  failureThreshold: {{ $.Values.probes.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: {{ $.Values.probes.liveness.path }}
    port: http
  periodSeconds: {{ $.Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ $.Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ $.Values.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: {{ $.Values.probes.readiness.path }}
    port: http
  periodSeconds: {{ $.Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ $.Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ $.Values.probes.readiness.failureThreshold }}
{{- if gt (int $.Values.runner.preStopSleepSeconds) 0 }}
lifecycle:
  preStop:
    exec:
      command: ["sleep", "{{ int $.Values.runner.preStopSleepSeconds }}"]
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
volumeMounts:
  - name: data
    mountPath: {{ include "ext-runner.dataDir" $ }}
  - name: cache
    mountPath: {{ include "ext-runner.cacheDir" $ }}
  - name: tmp
    mountPath: /tmp
  {{- if ne .role "gateway" }}
  - name: trust
    mountPath: {{ $.Values.trustBundleMountPath }}
    readOnly: true
  {{- end }}
  {{- if include "ext-runner.grantVolume" . }}
  - name: grant
    mountPath: {{ include "ext-runner.grantDir" $ }}
    readOnly: true
  {{- end }}
  {{- if include "ext-runner.userJwksVolume" . }}
  - name: user-jwks
    mountPath: {{ include "ext-runner.userJwksDir" $ }}
    readOnly: true
  {{- end }}
{{- end }}

{{/*
One file of a Secret or a ConfigMap as a volume source: (dict "secret" name
"configMap" name "key" key "mode" file mode); the Secret when both are set.
*/}}
{{- define "ext-runner.fileVolumeSource" -}}
{{- if .secret }}
secret:
  secretName: {{ .secret }}
{{- else }}
configMap:
  name: {{ .configMap }}
{{- end }}
  defaultMode: {{ .mode }}
  items:
    - key: {{ .key }}
      path: {{ .key }}
{{- end }}

{{/*
The "grant" volume of one Deployment, (dict "root" $ "role" …), or nothing:
the gateway's private key (only that key of the Secret, group-readable
only), or the runners' public JWKS (only that key, so the private key never
reaches a runner pod). Mode split with gateway.enabled only: in mode
all-in-one the process makes its own grant key.
*/}}
{{- define "ext-runner.grantVolume" -}}
{{- $ := .root }}
{{- $k := $.Values.gateway.grantKey }}
{{- if include "ext-runner.splitGateway" $ }}
{{- if eq .role "gateway" }}
{{- include "ext-runner.fileVolumeSource" (dict "secret" $k.existingSecret "key" $k.key "mode" "0440") }}
{{- else if eq .role "runner" }}
{{- include "ext-runner.fileVolumeSource" (dict "secret" (ternary "" (include "ext-runner.gateway.jwksSecret" $) (ne $k.jwks.configMap "")) "configMap" $k.jwks.configMap "key" $k.jwks.key "mode" "0444") }}
{{- end }}
{{- end }}
{{- end }}

{{/* The "user-jwks" volume (GATEWAY_JWKS_FILE) of the Deployment that runs the gateway role, or nothing. */}}
{{- define "ext-runner.userJwksVolume" -}}
{{- $ := .root }}
{{- $f := $.Values.gateway.userTokens.jwksFile }}
{{- $gatewayHere := or (eq .role "gateway") (and (eq .role "runner") (include "ext-runner.allInOne" $)) }}
{{- if and $gatewayHere (include "ext-runner.gatewayRuns" $) (or $f.configMap $f.existingSecret) }}
{{- include "ext-runner.fileVolumeSource" (dict "secret" $f.existingSecret "configMap" $f.configMap "key" $f.key "mode" "0444") }}
{{- end }}
{{- end }}

{{/* The pod's volumes: (dict "root" $ "role" … "disk" the volume sizes). */}}
{{- define "ext-runner.podVolumes" -}}
{{- $ := .root }}
- name: data
  emptyDir:
    sizeLimit: {{ printf "%dMi" (int .disk.data.sizeLimitMi) }}
- name: cache
  emptyDir:
    # RUNNER_CACHE_MAX_BYTES ({{ .disk.cache.maxMiB }}MiB) + {{ .disk.cache.headroomMiB }} MiB headroom (downloads and compiles in flight)
    sizeLimit: {{ printf "%sMi" (include "ext-runner.cacheSizeLimitMi" .disk) }}
- name: tmp
  emptyDir:
    sizeLimit: {{ printf "%dMi" (int .disk.tmp.sizeLimitMi) }}
{{- if ne .role "gateway" }}
- name: trust
  secret:
    secretName: {{ include "ext-runner.secretName" $ }}
    defaultMode: 0444
    items:
      - key: {{ $.Values.secret.keys.trustBundle }}
        path: {{ $.Values.secret.keys.trustBundle }}
{{- end }}
{{- with include "ext-runner.grantVolume" . }}
- name: grant
  {{- . | trim | nindent 2 }}
{{- end }}
{{- with include "ext-runner.userJwksVolume" . }}
- name: user-jwks
  {{- . | trim | nindent 2 }}
{{- end }}
{{- end }}

{{/* Spread and scheduling: (dict "root" $ "selectorLabels" the pods' selector labels). */}}
{{- define "ext-runner.podPlacement" -}}
{{- $ := .root }}
{{- if $.Values.topologySpread.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ $.Values.topologySpread.maxSkew }}
    topologyKey: {{ $.Values.topologySpread.topologyKey }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- .selectorLabels | nindent 8 }}
{{- end }}
{{- with $.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
REGISTRY_DATABASE_URL and REGISTRY_TOKENS of the registry pods, from the
Secrets you create (registry.database, registry.tokens): never a literal
value, never the ConfigMap. Neither is optional: the registry refuses to
start without tokens, and the chart's registry runs on PostgreSQL only.
*/}}
{{- define "ext-runner.registryEnv" -}}
- name: REGISTRY_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.registry.database.existingSecret }}
      key: {{ .Values.registry.database.key }}
- name: REGISTRY_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ include "ext-runner.registry.tokensSecret" . }}
      key: {{ .Values.registry.tokens.key }}
{{- end }}

{{/*
RUNNER_REGISTRY_TOKEN of the runner pods (registry.enabled), from
registry.runnerToken's Secret: a `runner`-scoped registry token for the
revocation polls and install checks. Not optional: a runner that cannot
authenticate would never learn a revoke.
*/}}
{{- define "ext-runner.runnerRegistryEnv" -}}
- name: RUNNER_REGISTRY_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "ext-runner.registry.runnerTokenSecret" . }}
      key: {{ .Values.registry.runnerToken.key }}
{{- end }}

{{/*
The gateway pods' secrets (mode split), each a secretKeyRef, none optional:
GATEWAY_RUNNER_TOKEN (one of the runners' service tokens), the same token
as the gateway's own RUNNER_SERVICE_TOKEN (the binary wants one in every
role; the gateway never gets the runners' whole list), and
GATEWAY_REGISTRY_TOKEN (a `gateway`-scoped registry token). No S3
credentials and no secrets key: the gateway reads no bundle and opens no
secret.
*/}}
{{- define "ext-runner.gatewayEnv" -}}
{{- $runnerSecret := include "ext-runner.gateway.runnerTokenSecret" . }}
{{- $runnerKey := include "ext-runner.gateway.runnerTokenKey" . -}}
- name: RUNNER_SERVICE_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $runnerSecret }}
      key: {{ $runnerKey }}
- name: GATEWAY_RUNNER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $runnerSecret }}
      key: {{ $runnerKey }}
- name: GATEWAY_REGISTRY_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "ext-runner.gateway.registryTokenSecret" . }}
      key: {{ .Values.gateway.registryToken.key }}
{{- end }}

{{/* GATEWAY_JWT_SECRET (HS256 end-user tokens) of whichever pod runs the gateway role, when configured. */}}
{{- define "ext-runner.gateway.userEnv" -}}
{{- with .Values.gateway.userTokens.jwtSecret }}
{{- if .existingSecret }}
- name: GATEWAY_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One Deployment: (dict "root" $ "role" "runner"|"registry"|"gateway"). The
runner's (templates/deployment.yaml), the registry's
(templates/registry-deployment.yaml) and the gateway's
(templates/gateway-deployment.yaml) are this one template; what differs is
the name and selector, replicas, ports, ConfigMap, the roles' Secret
variables, extra env, resources, volumes and pod labels/annotations. In
mode all-in-one the runner's is the only one and carries the registry's
and the gateway's variables too.
*/}}
{{- define "ext-runner.deployment" -}}
{{- $ := .root }}
{{- $role := .role }}
{{- $runner := eq $role "runner" }}
{{- $gateway := eq $role "gateway" }}
{{- $aio := and $runner (include "ext-runner.allInOne" $) }}
{{- $r := $.Values.registry }}
{{- $g := $.Values.gateway }}
{{- $name := include "ext-runner.fullname" $ }}
{{- $labels := include "ext-runner.labels" $ }}
{{- $selector := include "ext-runner.selectorLabels" $ }}
{{- $disk := $.Values }}
{{- $settings := $.Values }}
{{- $port := $.Values.runner.port }}
{{- $configData := include "ext-runner.configData" (dict "root" $ "role" "runner") }}
{{- if eq $role "registry" }}
{{- $name = include "ext-runner.registry.fullname" $ }}
{{- $labels = include "ext-runner.registry.labels" $ }}
{{- $selector = include "ext-runner.registry.selectorLabels" $ }}
{{- $disk = $r }}
{{- $settings = $r }}
{{- $port = $r.port }}
{{- $configData = include "ext-runner.configData" (dict "root" $ "role" "registry") }}
{{- else if $gateway }}
{{- $name = include "ext-runner.gateway.fullname" $ }}
{{- $labels = include "ext-runner.gateway.labels" $ }}
{{- $selector = include "ext-runner.gateway.selectorLabels" $ }}
{{- $disk = $g }}
{{- $settings = $g }}
{{- $port = $g.port }}
{{- $configData = include "ext-runner.gateway.configData" $ }}
{{- else if $aio }}
{{- /* One pod publishes too: its /tmp holds the bundles being unpacked. */}}
{{- $disk = dict "cache" $.Values.cache "data" $.Values.data "tmp" (dict "sizeLimitMi" (add (int $.Values.tmp.sizeLimitMi) (int $.Values.allInOne.extraTmpMi))) }}
{{- end }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  {{- if eq $role "registry" }}
  # registry.replicas: fixed (no HorizontalPodAutoscaler).
  replicas: {{ $r.replicas }}
  {{- else if $gateway }}
  {{- if not $g.autoscaling.enabled }}
  replicas: {{ $g.replicas }}
  {{- end }}
  {{- else if not $.Values.autoscaling.enabled }}
  replicas: {{ $.Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- $selector | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # Never below the current capacity during a rollout.
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- $selector | nindent 8 }}
        {{- if not $runner }}
        app.kubernetes.io/component: {{ $role }}
        {{- end }}
        {{- with $settings.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # Roll the pods when their settings change.
        checksum/config: {{ $configData | sha256sum }}
        {{- if $.Values.secret.create }}
        checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") $ | sha256sum }}
        {{- end }}
        {{- with $settings.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "ext-runner.podSpecHead" $ | nindent 6 }}
      containers:
        - name: ext-runner
          {{- include "ext-runner.containerImage" $ | nindent 10 }}
          ports:
            - name: http
              containerPort: {{ $port }}
              protocol: TCP
            {{- if and $runner $.Values.runner.publicListener.enabled }}
            - name: public
              containerPort: {{ $.Values.runner.publicListener.port }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $name }}
          env:
            {{- if $gateway }}
            {{- include "ext-runner.gatewayEnv" $ | nindent 12 }}
            {{- with include "ext-runner.gateway.userEnv" $ }}{{ . | trim | nindent 12 }}{{ end }}
            {{- else }}
            {{- include "ext-runner.secretEnv" $ | nindent 12 }}
            {{- end }}
            {{- if eq $role "registry" }}
            {{- include "ext-runner.registryEnv" $ | nindent 12 }}
            {{- else if $aio }}
            {{- include "ext-runner.registryEnv" $ | nindent 12 }}
            {{- with include "ext-runner.gateway.userEnv" $ }}{{ . | trim | nindent 12 }}{{ end }}
            {{- else if and $runner (include "ext-runner.splitRegistry" $) }}
            {{- include "ext-runner.runnerRegistryEnv" $ | nindent 12 }}
            {{- end }}
            {{- with $settings.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          resources:
            {{- if $gateway }}
            {{- include "ext-runner.resources" (dict "memoryMi" $g.resources.memoryMi "cpu" $g.resources.cpu "disk" $disk "why" "memory = gateway.resources.memoryMi: no executions, no bundles; the requests and responses in flight") | trim | nindent 12 }}
            {{- else if eq $role "registry" }}
            {{- include "ext-runner.resources" (dict "memoryMi" $r.resources.memoryMi "cpu" $r.resources.cpu "disk" $disk "why" "memory = registry.resources.memoryMi: no executions; a bundle being published and the database pool") | trim | nindent 12 }}
            {{- else if $aio }}
            {{- include "ext-runner.resources" (dict "memoryMi" (add (include "ext-runner.memoryMi" $) (int $.Values.allInOne.extraMemoryMi)) "cpu" $.Values.resources.cpu "disk" $disk "why" (printf "memory = RUNNER_MAX_CONCURRENCY (%v) × RUNNER_MAX_MEMORY_MB (%v) + %v MiB overhead + %v MiB for the registry and gateway roles (allInOne.extraMemoryMi)" $.Values.runner.maxConcurrency $.Values.runner.maxMemoryMb $.Values.resources.memoryOverheadMi $.Values.allInOne.extraMemoryMi)) | trim | nindent 12 }}
            {{- else }}
            {{- include "ext-runner.resources" (dict "memoryMi" (include "ext-runner.memoryMi" $) "cpu" $.Values.resources.cpu "disk" $disk "why" (printf "memory = RUNNER_MAX_CONCURRENCY (%v) × RUNNER_MAX_MEMORY_MB (%v) + %v MiB overhead" $.Values.runner.maxConcurrency $.Values.runner.maxMemoryMb $.Values.resources.memoryOverheadMi)) | trim | nindent 12 }}
            {{- end }}
          {{- include "ext-runner.containerRuntime" (dict "root" $ "role" $role) | trim | nindent 10 }}
      volumes:
        {{- include "ext-runner.podVolumes" (dict "root" $ "role" $role "disk" $disk) | trim | nindent 8 }}
      {{- with include "ext-runner.podPlacement" (dict "root" $ "selectorLabels" $selector) }}
      {{- . | trim | nindent 6 }}
      {{- end }}
{{- end }}
