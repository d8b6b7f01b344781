{{/*
Shared names, labels and pod-spec fragments of the Spark chart. Service blocks of values.yaml are always
bound to a variable named $svc (the learner template: $learner) so the chart test can check every
`$svc.<path>` against every service block.
*/}}

{{- define "spark.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "spark.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The Spark services: values key → directory under services/ and whether it serves gRPC. */}}
{{- define "spark.services" -}}
coordinator: {dir: coordinator, grpc: true}
rollout: {dir: rollout, grpc: false}
verifier: {dir: verifier, grpc: false}
rewardSynthesis: {dir: reward-synthesis, grpc: false}
learner: {dir: learner, grpc: true}
{{- end }}

{{/*
Config the chart decides per service (camelCase config keys, rendered like each service's `config` map,
which overrides them): where checkpoints go (the learner's volume; the coordinator names each job's
directory under it), the coordinator's dataset root (its datasets volume), the one directory Generate
paths may name on the rollout workers (the checkpoint mount path, for a ReadWriteMany volume there) and the PolicyService address the learner advertises to rollout workers.
*/}}
{{- define "spark.serviceDefaults" -}}
{{- $store := .Values.objectStore }}
coordinator:
  dataDir: {{ printf "%s/jobs" .Values.learner.persistence.mountPath | quote }}
  datasetDir: {{ .Values.coordinator.datasets.mountPath | quote }}
  {{- if $store.enabled }}
  {{- include "spark.storeConfig" . | nindent 2 }}
  {{- end }}
rollout:
  evalPathRoots: {{ .Values.learner.persistence.mountPath | quote }}
  {{- if $store.enabled }}
  {{- include "spark.storeConfig" . | nindent 2 }}
  {{- end }}
verifier: {}
rewardSynthesis: {}
learner:
  dataDir: {{ .Values.learner.persistence.mountPath | quote }}
  {{- if $store.enabled }}
  {{- include "spark.storeConfig" . | nindent 2 }}
  {{- end }}
  advertiseAddress: {{ printf "%s-learner.%s.svc:%d" (include "spark.fullname" .) .Release.Namespace (int .Values.ports.grpc) | quote }}
  learnerRanks: {{ int .Values.learner.replicas }}
  learnerZero: {{ .Values.learner.group.zero }}
  collectiveTimeoutMs: {{ int .Values.learner.group.collectiveTimeoutMs }}
  groupFormTimeoutMs: {{ int .Values.learner.group.formTimeoutMs }}
{{- end }}

{{/* The object-store config keys of the services that use it: learner and rollout (checkpoints), coordinator
(uploaded datasets). */}}
{{- define "spark.storeConfig" -}}
storeEndpoint: {{ .Values.objectStore.endpoint | quote }}
storeBucket: {{ .Values.objectStore.bucket | quote }}
storePrefix: {{ .Values.objectStore.prefix | quote }}
storeRegion: {{ .Values.objectStore.region | quote }}
storeForcePathStyle: {{ .Values.objectStore.forcePathStyle }}
{{- end }}

{{- define "spark.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "spark.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: spark
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "learner"). */}}
{{- define "spark.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spark.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
Image of one component: (dict "root" $ "svc" $svc). The component's `image` fields override the global
`image` block field by field; the tag defaults to the chart's appVersion.
*/}}
{{- define "spark.image" -}}
{{- $g := .root.Values.image }}
{{- $own := .svc.image | default dict }}
{{- $repo := $own.repository | default $g.repository }}
{{- $tag := $own.tag | default $g.tag | default .root.Chart.AppVersion }}
{{- printf "%s:%s" $repo (toString $tag) }}
{{- end }}

{{- define "spark.imagePullPolicy" -}}
{{- $own := .svc.image | default dict }}
{{- $own.pullPolicy | default .root.Values.image.pullPolicy }}
{{- end }}

{{/* GPU settings of a component block (learner and rollout have `gpu`; the others run on CPUs only). */}}
{{- define "spark.gpuCount" -}}
{{- int (dig "gpu" "count" 0 .) }}
{{- end }}

{{/*
Non-secret settings every service shares (the `-common` ConfigMap's data). Also hashed into every pod's
checksum, so it is defined once here.
*/}}
{{- define "spark.commonConfigData" -}}
SPARK_LOG_LEVEL: {{ .Values.logLevel | quote }}
SPARK_LOCAL_MODE: {{ .Values.localMode | quote }}
SPARK_REDIS_PREFIX: {{ .Values.redis.prefix | quote }}
SPARK_GRPC_HOST: "0.0.0.0"
SPARK_GRPC_PORT: {{ .Values.ports.grpc | quote }}
SPARK_METRICS_HOST: "0.0.0.0"
SPARK_METRICS_PORT: {{ .Values.ports.metrics | quote }}
SPARK_SHUTDOWN_GRACE_MS: {{ mul (sub (int .Values.terminationGracePeriodSeconds) 5) 1000 | quote }}
{{- if .Values.tls.enabled }}
SPARK_TLS_CERT_FILE: /etc/spark/tls/tls.crt
SPARK_TLS_KEY_FILE: /etc/spark/tls/tls.key
{{- if .Values.tls.mutual }}
SPARK_TLS_CA_FILE: /etc/spark/tls/ca.crt
{{- end }}
{{- end }}
{{- if .Values.auth.tokensSecret }}
SPARK_AUTH_TOKENS_FILE: /etc/spark/auth/tokens.yaml
{{- if .Values.auth.serviceTokenSecretKey }}
SPARK_AUTH_SERVICE_TOKEN_FILE: /etc/spark/auth/service-token
{{- end }}
{{- end }}
{{- with .Values.auth.jwt }}
{{- if .jwksUrl }}
SPARK_AUTH_JWKS_URL: {{ .jwksUrl | quote }}
SPARK_AUTH_JWT_ISSUER: {{ .issuer | quote }}
SPARK_AUTH_JWT_AUDIENCE: {{ .audience | quote }}
SPARK_AUTH_JWT_ROLES_CLAIM: {{ .rolesClaim | quote }}
SPARK_AUTH_JWT_NAME_CLAIM: {{ .nameClaim | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* One service's own ConfigMap data: (dict "root" $ "key" "rollout"). Its `config` over the chart's defaults. */}}
{{- define "spark.componentConfigData" -}}
{{- $svc := index .root.Values .key }}
{{- $defaults := index (include "spark.serviceDefaults" .root | fromYaml) .key | default dict }}
{{- $config := merge (deepCopy ($svc.config | default dict)) $defaults }}
{{- range $k, $v := $config }}
SPARK_{{ $k | snakecase | upper }}: {{ $v | toString | quote }}
{{- end }}
{{- end }}

{{/* The chart-held Secret's data (empty when every credential comes from an existing Secret). */}}
{{- define "spark.secretData" -}}
{{- $needToken := and .Values.auth.token (not .Values.auth.existingSecret) }}
{{- $needRedis := or .Values.redis.bundled.enabled (not .Values.redis.existingSecret) }}
{{- if $needToken }}
auth-token: {{ .Values.auth.token | quote }}
{{- end }}
{{- if .Values.redis.bundled.enabled }}
redis-password: {{ .Values.redis.bundled.password | quote }}
redis-url: {{ printf "redis://:%s@%s-redis:6379/0" (.Values.redis.bundled.password | urlquery) (include "spark.fullname" .) | quote }}
redis-auth.conf: {{ printf "requirepass \"%s\"\n" .Values.redis.bundled.password | quote }}
{{- else if $needRedis }}
redis-url: {{ .Values.redis.url | quote }}
{{- end }}
{{- end }}

{{/*
Checksum of everything one component's pods read at start: the shared and its own ConfigMap data, the
chart-held Secret and the names of the Secrets it references: (dict "root" $ "key" "rollout"). Changing a
verifier setting restarts the verifiers only; rotating a chart-held credential restarts every pod.
*/}}
{{- define "spark.configChecksum" -}}
{{- $root := .root }}
{{- list (include "spark.commonConfigData" $root) (include "spark.componentConfigData" .) (include "spark.secretData" $root) (include "spark.authSecretName" $root) (include "spark.redisSecretName" $root) (include "spark.tlsSecretName" $root) | toJson | sha256sum }}
{{- end }}

{{- define "spark.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spark.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "spark.authSecretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-secrets" (include "spark.fullname" .)) }}
{{- end }}

{{- define "spark.redisSecretName" -}}
{{- if and .Values.redis.existingSecret (not .Values.redis.bundled.enabled) }}
{{- .Values.redis.existingSecret }}
{{- else }}
{{- printf "%s-secrets" (include "spark.fullname" .) }}
{{- end }}
{{- end }}

{{- define "spark.redisSecretKey" -}}
{{- if and .Values.redis.existingSecret (not .Values.redis.bundled.enabled) }}
{{- .Values.redis.existingSecretKey }}
{{- else }}
{{- "redis-url" }}
{{- end }}
{{- end }}

{{- define "spark.authSecretKey" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecretKey }}
{{- else }}
{{- "auth-token" }}
{{- end }}
{{- end }}

{{- define "spark.tlsSecretName" -}}
{{- if .Values.tls.certManager.enabled }}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "spark.fullname" .)) }}
{{- else }}
{{- .Values.tls.secretName }}
{{- end }}
{{- end }}

{{- define "spark.hasAuthToken" -}}
{{- if or .Values.auth.token .Values.auth.existingSecret }}true{{ end }}
{{- end }}

{{/*
The container of one service: (dict "root" $ "key" "rollout" "dir" "rollout" "grpc" false "svc" $svc).
Config comes from the shared ConfigMap, the service's own ConfigMap and the Secret.
*/}}
{{- define "spark.container" -}}
{{- $root := .root }}
{{- $svc := .svc }}
- name: {{ .dir }}
  image: {{ include "spark.image" (dict "root" $root "svc" $svc) }}
  imagePullPolicy: {{ include "spark.imagePullPolicy" (dict "root" $root "svc" $svc) }}
  # The image's entrypoint is tini; the service is its argument list (the image's compiled JavaScript).
  args: ["node", "services/{{ .dir }}/src/main.js"]
  envFrom:
    - configMapRef:
        name: {{ include "spark.fullname" $root }}-common
    - configMapRef:
        name: {{ include "spark.fullname" $root }}-{{ .dir }}
  env:
    {{- if include "spark.hasAuthToken" $root }}
    - name: SPARK_AUTH_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ include "spark.authSecretName" $root }}
          key: {{ include "spark.authSecretKey" $root }}
    {{- end }}
    - name: SPARK_REDIS_URL
      valueFrom:
        secretKeyRef:
          name: {{ include "spark.redisSecretName" $root }}
          key: {{ include "spark.redisSecretKey" $root }}
    {{- if and $root.Values.objectStore.enabled $root.Values.objectStore.existingSecret (has .key (list "coordinator" "learner" "rollout")) }}
    {{- /* The AWS SDK's own variables: its default credential chain reads them (storeAccessKeyId stays empty). */}}
    - name: AWS_ACCESS_KEY_ID
      valueFrom:
        secretKeyRef:
          name: {{ $root.Values.objectStore.existingSecret }}
          key: {{ $root.Values.objectStore.accessKeyIdKey }}
    - name: AWS_SECRET_ACCESS_KEY
      valueFrom:
        secretKeyRef:
          name: {{ $root.Values.objectStore.existingSecret }}
          key: {{ $root.Values.objectStore.secretAccessKeyKey }}
    {{- end }}
    {{- /* The native thread pool (kernels/src/backend/threads.rs) sizes itself from SPARK_THREADS, else from
    every core of the node: bound it by the container's CPU limit (the downward API rounds it up). */}}
    - name: SPARK_THREADS
      {{- if gt (int $svc.threads) 0 }}
      value: {{ $svc.threads | quote }}
      {{- else }}
      valueFrom:
        resourceFieldRef:
          containerName: {{ .dir }}
          resource: limits.cpu
          divisor: '1'
      {{- end }}
    {{- if eq .key "learner" }}
    {{- /* The group's peers dial each rank at its pod IP (Gloo's TCP pairs, ephemeral ports). */}}
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    - name: SPARK_COLLECTIVE_HOST
      value: $(POD_IP)
    {{- end }}
    {{- with $svc.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- if .grpc }}
    - name: grpc
      containerPort: {{ $root.Values.ports.grpc }}
      protocol: TCP
    {{- end }}
    - name: metrics
      containerPort: {{ $root.Values.ports.metrics }}
      protocol: TCP
  {{- if and .grpc (not $root.Values.tls.enabled) }}
  {{- /* Kubernetes gRPC probes speak plaintext grpc.health.v1 (anonymous on Spark servers). */}}
  startupProbe:
    grpc:
      port: {{ $root.Values.ports.grpc }}
    periodSeconds: 5
    failureThreshold: 60
  readinessProbe:
    grpc:
      port: {{ $root.Values.ports.grpc }}
    periodSeconds: 10
  livenessProbe:
    grpc:
      port: {{ $root.Values.ports.grpc }}
    periodSeconds: 20
    timeoutSeconds: 5
    failureThreshold: 3
  {{- else }}
  {{- /* Workers (and TLS servers, which a kubelet gRPC probe cannot reach) answer /healthz on the metrics port. */}}
  startupProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 5
    failureThreshold: 60
  readinessProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 10
  livenessProbe:
    httpGet:
      path: /healthz
      port: metrics
    periodSeconds: 20
    timeoutSeconds: 5
    failureThreshold: 3
  {{- end }}
  resources:
    {{- $res := deepCopy ($svc.resources | default dict) }}
    {{- $gpus := int (include "spark.gpuCount" $svc) }}
    {{- if gt $gpus 0 }}
    {{- $gpu := get $svc "gpu" }}
    {{- $_ := set $res "requests" (merge (dict $gpu.resourceName $gpus) ($res.requests | default dict)) }}
    {{- $_ := set $res "limits" (merge (dict $gpu.resourceName $gpus) ($res.limits | default dict)) }}
    {{- end }}
    {{- toYaml $res | nindent 4 }}
  securityContext:
    {{- toYaml $root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if $root.Values.tls.enabled }}
    - name: tls
      mountPath: /etc/spark/tls
      readOnly: true
    {{- end }}
    {{- if $root.Values.auth.tokensSecret }}
    {{- /* A directory mount (no subPath): the kubelet updates it when the Secret changes; the servers re-read it. */}}
    - name: auth-tokens
      mountPath: /etc/spark/auth
      readOnly: true
    {{- end }}
    {{- if eq .key "learner" }}
    - name: checkpoints
      mountPath: {{ $root.Values.learner.persistence.mountPath }}
    - name: dshm
      mountPath: /dev/shm
    {{- end }}
    {{- if eq .key "coordinator" }}
    - name: datasets
      mountPath: {{ $root.Values.coordinator.datasets.mountPath }}
    {{- end }}
{{- end }}

{{/* Pod-level fields shared by every service: (dict "root" $ "svc" $svc). */}}
{{- define "spark.podSpec" -}}
{{- $root := .root }}
{{- $svc := .svc }}
serviceAccountName: {{ include "spark.serviceAccountName" $root }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tolerations := $svc.tolerations | default list }}
{{- if gt (int (include "spark.gpuCount" $svc)) 0 }}
{{- $tolerations = concat $tolerations (dig "gpu" "tolerations" (list) $svc) }}
{{- end }}
{{- with $tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Volumes every pod has: /tmp (scratch space; the root filesystem is read-only), TLS files, the tokens file. */}}
{{- define "spark.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "spark.tlsSecretName" . }}
{{- end }}
{{- if .Values.auth.tokensSecret }}
- name: auth-tokens
  secret:
    secretName: {{ .Values.auth.tokensSecret }}
    items:
      - key: {{ .Values.auth.tokensSecretKey }}
        path: tokens.yaml
      {{- /* The service token as a file, re-read like the tokens file: rotating it needs no restart. */}}
      {{- if .Values.auth.serviceTokenSecretKey }}
      - key: {{ .Values.auth.serviceTokenSecretKey }}
        path: service-token
      {{- end }}
{{- end }}
{{- end }}

{{/*
Bytes of a Kubernetes memory quantity written with a binary or decimal suffix (Ki, Mi, Gi, Ti, k, M, G, T)
or none; fails on anything else (e.g. `2.5Gi`: write `2560Mi`).
*/}}
{{- define "spark.memoryBytes" -}}
{{- $q := toString . }}
{{- $m := regexFind "^[0-9]+" $q }}
{{- if not $m }}
{{- fail (printf "spark: cannot read the memory quantity %q (write an integer with Ki, Mi, Gi, Ti, k, M, G or T)" $q) }}
{{- end }}
{{- $suffix := trimPrefix $m $q }}
{{- $mult := dict "" 1 "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- if not (hasKey $mult $suffix) }}
{{- fail (printf "spark: cannot read the memory quantity %q (write an integer with Ki, Mi, Gi, Ti, k, M, G or T)" $q) }}
{{- end }}
{{- mul (int64 $m) (index $mult $suffix) }}
{{- end }}

{{/* The bundled Redis's maxmemory in bytes: maxmemoryPercent of its memory limit. */}}
{{- define "spark.redisMaxmemory" -}}
{{- $r := .Values.redis.bundled }}
{{- $limit := dig "limits" "memory" "" ($r.resources | default dict) }}
{{- if not $limit }}
{{- fail "spark: redis.bundled.resources.limits.memory is required (maxmemory is a percentage of it)" }}
{{- end }}
{{- div (mul (int64 (include "spark.memoryBytes" $limit)) (int64 $r.maxmemoryPercent)) 100 }}
{{- end }}

{{/* redis.conf of the bundled Redis (the password comes from the Secret's redis-auth.conf, included last). */}}
{{- define "spark.redisConf" -}}
dir /data
appendonly yes
appendfsync everysec
maxmemory {{ include "spark.redisMaxmemory" . }}
maxmemory-policy noeviction
protected-mode no
include /etc/redis/auth/redis-auth.conf
{{- end }}

{{/* Prefix of the `job` label of the release's scrape targets (the ServiceMonitor's job is the Service name). */}}
{{- define "spark.jobPrefix" -}}
{{- .Values.alerts.jobPrefix | default (include "spark.fullname" .) }}
{{- end }}

{{/* The egress rule from a Spark pod to Redis (bundled: its pods; external: networkPolicy.externalRedis). */}}
{{- define "spark.redisEgress" -}}
{{- if .Values.redis.bundled.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "spark.selectorLabels" (dict "root" . "component" "redis") | nindent 10 }}
  ports:
    - port: 6379
      protocol: TCP
{{- else }}
- {{- with .Values.networkPolicy.externalRedis.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  ports:
    {{- range .Values.networkPolicy.externalRedis.ports }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{/*
The alert rules: files/prometheus-rules.yaml with its `${…}` placeholders filled (job names of the release,
its namespace, alerts.* thresholds, the verifier's budget bucket). deploy/generate.ts fills the same
placeholders with the default values (lib/rules.ts); a test checks both renderings agree. Fails on a
placeholder left unfilled.
*/}}
{{- define "spark.alertRules" -}}
{{- $full := include "spark.fullname" . }}
{{- $jp := include "spark.jobPrefix" . }}
{{- $jobs := list }}
{{- $subs := dict "namespace" .Release.Namespace "redisJob" (.Values.alerts.redisJob | default (printf "%s-redis" $jp)) }}
{{- range $key, $meta := (include "spark.services" . | fromYaml) }}
{{- $_ := set $subs (printf "%sJob" $key) (printf "%s-%s" $jp $meta.dir) }}
{{- $jobs = append $jobs (printf "%s-%s" $jp $meta.dir) }}
{{- end }}
{{- $_ := set $subs "sparkJobs" (join "|" (sortAlpha $jobs)) }}
{{- $_ := set $subs "podPattern" (printf "%s-(coordinator|rollout|verifier|reward-synthesis|learner|redis)-.+" $full) }}
{{- $_ := set $subs "volumeClaimPattern" (printf "checkpoints-%s-learner-[0-9]+|data-%s-redis-0" $full $full) }}
{{- $_ := set $subs "verifierBudgetLe" (include "spark.verifierBudgetLe" .) }}
{{- range $k, $v := .Values.alerts }}
{{- $_ := set $subs (printf "alerts.%s" $k) (toString $v) }}
{{- end }}
{{- $text := .Files.Get "files/prometheus-rules.yaml" }}
{{- range $k, $v := $subs }}
{{- $text = replace (printf "${%s}" $k) $v $text }}
{{- end }}
{{- with regexFind "\\$\\{[A-Za-z][A-Za-z0-9.]*\\}" $text }}
{{- fail (printf "spark: files/prometheus-rules.yaml has an unknown placeholder %s" .) }}
{{- end }}
{{- $text }}
{{- end }}

{{/*
The `le` bucket of spark_verifier_verify_seconds at the verifiers' time budget (verifier.config.budgetMs,
default 50 ms): the SparkVerifierTimeouts alert counts verifications above it. Only bucket bounds work.
*/}}
{{- define "spark.verifierBudgetLe" -}}
{{- $ms := toString (dig "config" "budgetMs" 50 .Values.verifier) }}
{{- $buckets := dict "2" "0.002" "10" "0.01" "50" "0.05" "200" "0.2" "1000" "1" }}
{{- if not (hasKey $buckets $ms) }}
{{- fail (printf "spark: verifier.config.budgetMs %s is not a bucket of spark_verifier_verify_seconds (2, 10, 50, 200 or 1000 ms); the SparkVerifierTimeouts alert could not measure it" $ms) }}
{{- end }}
{{- index $buckets $ms }}
{{- end }}
