{{/*
What the runner and the registry Deployments share, written once: the
ConfigMap's settings, the Secret's variables, the pod and container
security, probes, drain, volumes and placement. Each template takes the
root context, or a dict with "root" and the part that differs.
*/}}

{{/*
ConfigMap data of one role: (dict "root" $ "role" "runner"|"registry").
The registry gets its own listener, no public listener, one execution slot
(it executes nothing; the engine it still builds stays small) and its own
cache budget; everything else, config.* included, is the same for both, so
both pods read the same bundle store and trust bundle. RUNNER_ROLES is set
only when the registry runs apart (unset means runner).
*/}}
{{- define "ext-runner.configData" -}}
{{- $ := .root }}
{{- $runner := eq .role "runner" }}
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
{{- if $.Values.registry.enabled }}
RUNNER_ROLES: {{ .role | quote }}
{{- if $runner }}
{{- /* The runners ask the registry's Service, with RUNNER_REGISTRY_TOKEN (ext-runner.runnerRegistryEnv). */}}
RUNNER_REVOCATIONS_URL: {{ printf "%s/v1/registry/revocations" (include "ext-runner.registry.url" $) | quote }}
{{- if eq (toString $.Values.config.RUNNER_UI_VALIDATE_URL) "" }}
RUNNER_UI_VALIDATE_URL: {{ printf "%s/v1/registry/installs/validate" (include "ext-runner.registry.url" $) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $value := $.Values.config }}
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

{{/* Probes, drain, container security and mounts, for both roles. */}}
{{- define "ext-runner.containerRuntime" -}}
startupProbe:
  httpGet:
    path: {{ .Values.probes.startup.path }}
    port: http
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
livenessProbe:
  httpGet:
    path: {{ .Values.probes.liveness.path }}
    port: http
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet:
    path: {{ .Values.probes.readiness.path }}
    port: http
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
{{- if gt (int .Values.runner.preStopSleepSeconds) 0 }}
lifecycle:
  preStop:
    exec:
      command: ["sleep", "{{ int .Values.runner.preStopSleepSeconds }}"]
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
    mountPath: {{ include "ext-runner.dataDir" . }}
  - name: cache
    mountPath: {{ include "ext-runner.cacheDir" . }}
  - name: tmp
    mountPath: /tmp
  - name: trust
    mountPath: {{ .Values.trustBundleMountPath }}
    readOnly: true
{{- end }}

{{/* The pod's volumes: (dict "root" $ "disk" the volume sizes). */}}
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
- name: trust
  secret:
    secretName: {{ include "ext-runner.secretName" $ }}
    defaultMode: 0444
    items:
      - key: {{ $.Values.secret.keys.trustBundle }}
        path: {{ $.Values.secret.keys.trustBundle }}
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
One Deployment: (dict "root" $ "role" "runner"|"registry"). The runner's
(templates/deployment.yaml) and the registry's
(templates/registry-deployment.yaml) are this one template; what differs is
the name and selector, replicas, ports, ConfigMap, the registry's Secret
variables, extra env, resources, volume sizes and pod labels/annotations.
*/}}
{{- define "ext-runner.deployment" -}}
{{- $ := .root }}
{{- $runner := eq .role "runner" }}
{{- $r := $.Values.registry }}
{{- $name := ternary (include "ext-runner.fullname" $) (include "ext-runner.registry.fullname" $) $runner }}
{{- $labels := ternary (include "ext-runner.labels" $) (include "ext-runner.registry.labels" $) $runner }}
{{- $selector := ternary (include "ext-runner.selectorLabels" $) (include "ext-runner.registry.selectorLabels" $) $runner }}
{{- $disk := ternary $.Values $r $runner }}
{{- $podLabels := ternary $.Values.podLabels $r.podLabels $runner }}
{{- $podAnnotations := ternary $.Values.podAnnotations $r.podAnnotations $runner }}
{{- $extraEnv := ternary $.Values.extraEnv $r.extraEnv $runner }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- $labels | nindent 4 }}
spec:
  {{- if not $runner }}
  # registry.replicas: fixed (no HorizontalPodAutoscaler).
  replicas: {{ $r.replicas }}
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
        app.kubernetes.io/component: registry
        {{- end }}
        {{- with $podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # Roll the pods when their settings change.
        checksum/config: {{ include "ext-runner.configData" (dict "root" $ "role" .role) | sha256sum }}
        {{- if $.Values.secret.create }}
        checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") $ | sha256sum }}
        {{- end }}
        {{- with $podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "ext-runner.podSpecHead" $ | nindent 6 }}
      containers:
        - name: ext-runner
          {{- include "ext-runner.containerImage" $ | nindent 10 }}
          ports:
            - name: http
              containerPort: {{ ternary $.Values.runner.port $r.port $runner }}
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
            {{- include "ext-runner.secretEnv" $ | nindent 12 }}
            {{- if not $runner }}
            {{- include "ext-runner.registryEnv" $ | nindent 12 }}
            {{- else if $.Values.registry.enabled }}
            {{- include "ext-runner.runnerRegistryEnv" $ | nindent 12 }}
            {{- end }}
            {{- with $extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          resources:
            {{- if $runner }}
            {{- include "ext-runner.resources" (dict "memoryMi" (include "ext-runner.memoryMi" $) "cpu" $.Values.resources.cpu "disk" $.Values "why" (printf "memory = RUNNER_MAX_CONCURRENCY (%v) × RUNNER_MAX_MEMORY_MB (%v) + %v MiB overhead" $.Values.runner.maxConcurrency $.Values.runner.maxMemoryMb $.Values.resources.memoryOverheadMi)) | trim | nindent 12 }}
            {{- else }}
            {{- include "ext-runner.resources" (dict "memoryMi" $r.resources.memoryMi "cpu" $r.resources.cpu "disk" $r "why" "memory = registry.resources.memoryMi: no executions; a bundle being published and the database pool") | trim | nindent 12 }}
            {{- end }}
          {{- include "ext-runner.containerRuntime" $ | nindent 10 }}
      volumes:
        {{- include "ext-runner.podVolumes" (dict "root" $ "disk" $disk) | trim | nindent 8 }}
      {{- with include "ext-runner.podPlacement" (dict "root" $ "selectorLabels" $selector) }}
      {{- . | trim | nindent 6 }}
      {{- end }}
{{- end }}
